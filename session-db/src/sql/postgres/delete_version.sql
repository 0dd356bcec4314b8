DELETE FROM {table} WHERE id = $1 AND version = $2
