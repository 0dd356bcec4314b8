//! `session-signed-cookie`: part of the session crate family (under construction).
