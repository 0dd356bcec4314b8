-- id: SHA-256 of the session key, 64 lower-case hex characters (never the key itself).
-- expires_at: Unix milliseconds (UTC); SQLite has no timestamp type, and an INTEGER
-- compares and indexes fastest.
CREATE TABLE IF NOT EXISTS {table} (
    id         TEXT    NOT NULL PRIMARY KEY,
    payload    BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
) STRICT
