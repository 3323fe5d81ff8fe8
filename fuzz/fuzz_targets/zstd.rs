#![no_main]
// Fuzz target: see dockersave::fuzzing::zstd for what it feeds and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dockersave::fuzzing::zstd(data));
