-- id: SHA-256 of the session key, 64 lower-case hex characters (never the key itself),
-- one byte per character with byte-wise comparison.
-- expires_at: DATETIME(6) holding UTC; unlike TIMESTAMP it does not depend on the
-- connection's time_zone and does not end in 2038.
CREATE TABLE IF NOT EXISTS {table} (
    id         CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payload    LONGBLOB    NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    version    BIGINT      NOT NULL,
    PRIMARY KEY (id),
    INDEX {index} (expires_at)
) ENGINE = InnoDB
