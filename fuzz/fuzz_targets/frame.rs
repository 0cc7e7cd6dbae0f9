//! libFuzzer entry for `pyro_fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::frame(data));
