//! A template file's text: parsed as YAML and as JSON, read into the
//! document model, every string evaluated, every diagnostic rendered.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        cairn_fuzz::check_document(text);
    }
});
