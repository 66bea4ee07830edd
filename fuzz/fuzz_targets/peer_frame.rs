//! libFuzzer target: see `ringkv::fuzzing::peer_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv::fuzzing::peer_frame(data));
