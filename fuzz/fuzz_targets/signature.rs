#![no_main]
// Fuzz target: see dockersave::fuzzing::signature for what it feeds and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dockersave::fuzzing::signature(data));
