SELECT 1 FROM {table} WHERE id = ? AND version > 0 AND expires_at > ?
