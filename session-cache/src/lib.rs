//! `session-cache`: part of the session crate family (under construction).
