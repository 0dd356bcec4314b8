SELECT payload, expires_at, version FROM {table} WHERE id = ? AND expires_at > ?
