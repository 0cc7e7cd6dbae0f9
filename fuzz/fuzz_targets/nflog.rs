//! libFuzzer entry for `pyro_fuzz::nflog`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyro_fuzz::nflog(data));
