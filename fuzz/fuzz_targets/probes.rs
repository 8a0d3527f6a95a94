//! cargo-fuzz target `probes`: see `palisade_fuzz::probes` (fuzz/src/entry.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::probes(data));
