//! palisade's fuzz entry points. The code lives in `entry.rs` so that the root
//! package's stable test (tests/fuzz_regressions.rs) replays fuzz/regressions/ through
//! exactly the functions the cargo-fuzz targets call.

mod entry;

pub use entry::*;
