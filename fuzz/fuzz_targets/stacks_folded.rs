#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvmscope_fuzz::stacks_folded::run(data));
