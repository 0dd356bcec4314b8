SELECT 1 FROM {table} WHERE id = ? AND expires_at > ?
