DELETE FROM {table} WHERE rowid IN (
    SELECT rowid FROM {table} WHERE expires_at <= ?1 LIMIT ?2
)
