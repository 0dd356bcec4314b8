//! Cross-store reliability and security tests for the session crate family (not
//! published; the tests live in `tests/`).
//!
//! | Suite | What it shows |
//! |---|---|
//! | `tests/model.rs` | random `create`/`load`/`save`/`touch`/`delete`/`clear_expired` sequences agree with an in-memory model on every store (a token-snapshot model for the cookie store) |
//! | `tests/lost_update.rs` | 50 tasks × 20 read-modify-write requests on one session through `SessionManager` lose no write; the same with `Session::update` ends at 1,000 with zero failed requests; a logout racing saves is final |
//! | `tests/http_hostile.rs` | hostile, dead, tossed and rotated cookies and hostile configuration at the HTTP layer (`session-tower` + axum) |
//!
//! Embedded stores (memory, moka, SQLite in memory and on file, file, cached moka over
//! SQLite, signed and encrypted cookies) run in the default `cargo test -p
//! session-reliability`. PostgreSQL, MySQL/MariaDB, Redis, Redis Cluster and cached Redis over
//! PostgreSQL need `SESSION_TEST_POSTGRES_URL`, `SESSION_TEST_MYSQL_URL`,
//! `SESSION_TEST_REDIS_URL` and `SESSION_TEST_REDIS_CLUSTER_URLS`, and `-- --include-ignored`; run that way without them, they
//! fail with a message naming the missing variable.
