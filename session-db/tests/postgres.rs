//! postgres store tests.
