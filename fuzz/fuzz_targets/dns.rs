//! libFuzzer entry for `pyro_fuzz::dns`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::dns(data));
