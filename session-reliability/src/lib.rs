//! Test support for `session-reliability` (the tests live in `tests/`).
