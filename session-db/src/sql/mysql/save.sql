UPDATE {table} SET payload = ?, expires_at = ?, version = version + 1
WHERE id = ? AND version = ? AND version > 0 AND expires_at > ?
