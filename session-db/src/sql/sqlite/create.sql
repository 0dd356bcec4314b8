INSERT INTO {table} (id, payload, expires_at, version) VALUES (?1, ?2, ?3, 1)
ON CONFLICT (id) DO NOTHING
