-- id: SHA-256 of the session key, 64 lower-case hex characters (never the key itself).
-- VARCHAR rather than CHAR(64): bpchar is no faster in PostgreSQL, and a text parameter
-- compared with a bpchar column would not use the primary key index. COLLATE "C" makes
-- comparisons plain byte comparisons.
CREATE TABLE IF NOT EXISTS {table} (
    id         VARCHAR(64) COLLATE "C" NOT NULL PRIMARY KEY,
    payload    BYTEA       NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    version    BIGINT      NOT NULL
)
