//! cargo-fuzz target `flow_key`: see `palisade_fuzz::flow_key` (fuzz/src/entry.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::flow_key(data));
