//! cargo-fuzz target `packet`: see `palisade_fuzz::packet` (fuzz/src/entry.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::packet(data));
