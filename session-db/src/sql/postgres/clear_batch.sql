DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table} WHERE expires_at <= $1 LIMIT $2
)
