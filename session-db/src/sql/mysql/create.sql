INSERT INTO {table} (id, payload, expires_at, version) VALUES (?, ?, ?, 1)
