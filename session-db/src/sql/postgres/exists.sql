SELECT 1 FROM {table} WHERE id = $1 AND version > 0 AND expires_at > $2
