//! libFuzzer entry for `pyro_fuzz::paths`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::paths(data));
