//! An expression: evaluated as `{{ input }}` and, as a template string, as
//! it is; each written bare, double-quoted, single-quoted and as a literal
//! block, so that error spans are mapped through every scalar style.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        cairn_fuzz::check_expression(text);
    }
});
