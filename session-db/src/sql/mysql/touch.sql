UPDATE {table} SET expires_at = ? WHERE id = ? AND expires_at > ?
