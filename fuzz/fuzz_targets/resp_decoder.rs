//! libFuzzer target: see `ringkv::fuzzing::resp_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv::fuzzing::resp_decoder(data));
