//! cargo-fuzz target `manifest`: see `palisade_fuzz::manifest` (fuzz/src/entry.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::manifest(data));
