#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvmscope_fuzz::text_line::run(data));
