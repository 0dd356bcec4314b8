UPDATE {table} SET expires_at = ? WHERE id = ? AND version > 0 AND expires_at > ?
