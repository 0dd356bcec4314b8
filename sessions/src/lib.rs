//! `sessions`: part of the session crate family (under construction).
