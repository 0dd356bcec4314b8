//! mysql store tests.
