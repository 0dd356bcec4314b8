#!/usr/bin/env bash
# The fault-injection suites of the test crate (tests/, package session-tests), then the
# full load test (60 s a store).
#
# - tests/servers.rs: private redis-server, PostgreSQL (initdb/postgres as the `postgres`
#   user) and MariaDB (mariadb-install-db/mariadbd) on spare loopback ports, killed and
#   frozen (SIGSTOP) mid-run; needs those binaries, and root for the `postgres` user switch;
# - tests/file_faults.rs: file store with failures after every write step, a simulated
#   and a real full disk, a read-only mount (tmpfs: needs root);
# - tests/file_crash.rs: the writing process aborted after every write step;
# - examples/load.rs: the demo under 64 clients for LOAD_SECONDS (default 60) against
#   SQLite, PostgreSQL (SESSION_TEST_POSTGRES_URL) and Redis (SESSION_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
export SESSION_TEST_POSTGRES_URL=${SESSION_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
export SESSION_TEST_REDIS_URL=${SESSION_TEST_REDIS_URL:-redis://127.0.0.1:6379/}
cargo test -p session-tests --test servers --test file_faults --test file_crash --test load -- --include-ignored
LOAD_SECONDS=${LOAD_SECONDS:-60} cargo run --release -p session-tests --example load -- sqlite postgres redis
