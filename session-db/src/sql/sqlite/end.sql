UPDATE {table} SET version = 0, payload = X'', expires_at = ?1
WHERE id = ?2 AND version = ?3 AND version > 0 AND expires_at > ?4
