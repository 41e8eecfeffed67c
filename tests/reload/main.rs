//! reload tests (see the modules).

#[path = "../all/util.rs"]
mod util;
