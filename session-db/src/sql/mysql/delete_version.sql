DELETE FROM {table} WHERE id = ? AND version = ?
