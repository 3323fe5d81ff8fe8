#![no_main]
// Fuzz target: see dockersave::fuzzing::tar_roundtrip for what it feeds and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dockersave::fuzzing::tar_roundtrip(data));
