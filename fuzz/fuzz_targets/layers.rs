//! libFuzzer entry for `pyro_fuzz::layers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::layers(data));
