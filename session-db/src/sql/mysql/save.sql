UPDATE {table} SET payload = ?, expires_at = ?, version = version + 1
WHERE id = ? AND version = ? AND expires_at > ?
