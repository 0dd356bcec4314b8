SELECT payload, expires_at, version FROM {table} WHERE id = ?1 AND expires_at > ?2
