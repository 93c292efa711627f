#![no_main]

libfuzzer_sys::fuzz_target!(init: zhiban_fuzz::let_caught_panics_unwind(), |data: &[u8]| {
    zhiban_fuzz::sync_message(data)
});
