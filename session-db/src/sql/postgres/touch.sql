UPDATE {table} SET expires_at = $1 WHERE id = $2 AND version > 0 AND expires_at > $3
