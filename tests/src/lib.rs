//! Cross-store reliability, fault-injection and load tests of the session crate family
//! (not published). The library is what the suites, the load generator and the
//! benchmarks share; the suites live in `tests/`.
//!
//! - [`stores`]: the registry. [`open`] opens any [`Kind`] of store on a namespace of its
//!   own (a table, a Redis key prefix, a temporary directory) and returns it with its
//!   clean-up; the typed openers it is made of serve the benchmarks and the load run.
//! - [`server`]: private database servers a fault test starts, kills, freezes and
//!   restarts ([`Server`]).
//! - [`counting`]: a store wrapper counting the operations that reach a store.
//!
//! | Suite | What it shows |
//! |---|---|
//! | `tests/model.rs` | random `create`/`load`/`save`/`touch`/`delete`/`clear_expired` sequences agree with an in-memory model on every store (a token-snapshot model for the cookie store) |
//! | `tests/lost_update.rs` | 50 tasks × 20 read-modify-write requests on one session through `SessionManager` lose no write; the same with `Session::update` ends at 1,000 with zero failed requests; a logout racing saves is final |
//! | `tests/http_hostile.rs` | hostile, dead, tossed and rotated cookies and hostile configuration at the HTTP layer (`session-tower` + axum) |
//! | `tests/servers.rs` | Redis, PostgreSQL and MariaDB stores on private servers killed and frozen (SIGSTOP) mid-run: every operation fails as unreachable within its limit, no session reads as absent, the store works again afterwards |
//! | `tests/file_faults.rs` | the file store with a failure after every write step, a simulated and a real full disk, a read-only directory |
//! | `tests/file_crash.rs` | the file store's writing process aborted after every write step |
//! | `tests/load.rs` | the demo under 64 clients (`examples/load.rs`, see `LOAD.md`) for `LOAD_SECONDS` (default 5) against SQLite, PostgreSQL and Redis |
//!
//! Embedded stores (memory, moka, SQLite in memory and on file, file, cached moka over
//! SQLite, signed and encrypted cookies) run in the default `cargo test -p
//! session-tests`. PostgreSQL, MySQL/MariaDB, Redis, Redis Cluster and cached Redis over
//! PostgreSQL need `SESSION_TEST_POSTGRES_URL`, `SESSION_TEST_MYSQL_URL`,
//! `SESSION_TEST_REDIS_URL` and `SESSION_TEST_REDIS_CLUSTER_URLS`, and `-- --include-ignored`;
//! run that way without them, they fail with a message naming the missing variable. The
//! private-server tests need `redis-server`, `initdb`/`postgres` (and the `postgres`
//! user), `mariadb-install-db`/`mariadbd`; the mounts of `file_faults` need root.

pub mod counting;
pub mod server;
pub mod stores;

pub use counting::{Counting, Counts, is_conflict};
pub use server::Server;
pub use stores::{COOKIE_SECRET, Kind, Namespace, Opened, Service, open};
