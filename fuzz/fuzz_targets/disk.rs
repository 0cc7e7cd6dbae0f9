//! libFuzzer entry for `pyro_fuzz::disk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::disk(data));
