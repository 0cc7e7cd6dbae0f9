//! libFuzzer entry for `pyro_fuzz::patch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::patch(data));
