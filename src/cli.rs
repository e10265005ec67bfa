//! The command lines of `dockgated` and `dockgatectl`. They live in the library, not in
//! `src/bin`, so that the man pages and shell completions are generated from the very
//! definitions the binaries parse.

pub mod dockgatectl;
pub mod dockgated;
