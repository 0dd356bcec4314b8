UPDATE {table} SET payload = $1, expires_at = $2, version = version + 1
WHERE id = $3 AND version = $4 AND version > 0 AND expires_at > $5
