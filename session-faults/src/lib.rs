//! Test support for `session-faults` (the tests live in `tests/`).
