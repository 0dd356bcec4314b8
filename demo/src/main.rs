//! The LocalLibrary demo (under construction).
fn main() {}
