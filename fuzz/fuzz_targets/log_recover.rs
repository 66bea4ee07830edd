//! libFuzzer target: see `ringkv::fuzzing::log_recover`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv::fuzzing::log_recover(data));
