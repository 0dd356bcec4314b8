UPDATE {table} SET version = 0, payload = '', expires_at = ?
WHERE id = ? AND version = ? AND version > 0 AND expires_at > ?
