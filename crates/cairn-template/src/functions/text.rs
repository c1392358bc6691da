//! String functions: `base64`, `base64_decode`, `to_json`, `from_json`,
//! `format`, `pad_left`, `replace`, `split`, `join`, `substring`.
//!
//! Lengths and indexes count Unicode scalar values (Rust `char`s). ARM counts
//! UTF-16 code units; the two agree except for characters outside the Basic
//! Multilingual Plane (emoji and the like).

use std::sync::Arc;

use base64::Engine as _;
use minijinja::Error;
use minijinja::value::{Rest, Value, ValueKind};

use super::args::{
    expect_int, expect_str, invalid, is_list, list_items, ordinal, type_name, wrong_type,
};

/// The longest string `pad_left` builds, so a typo cannot exhaust memory.
pub const MAX_PAD_LENGTH: i128 = 1 << 20;

/// `base64(value)`: the base64 (standard alphabet, padded) of a string's UTF-8
/// bytes, like ARM's `base64`.
pub fn base64(value: Value) -> Result<String, Error> {
    let bytes = match value.kind() {
        ValueKind::String | ValueKind::Bytes => value.as_bytes().unwrap_or_default(),
        _ => return Err(wrong_type("base64", "the value", "a string", &value)),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `base64_decode(value)`: the string whose UTF-8 bytes `value` encodes, like
/// ARM's `base64ToString`. Whitespace is ignored; padding is optional.
pub fn base64_decode(value: Value) -> Result<String, Error> {
    const F: &str = "base64_decode";
    let s = expect_str(F, "the value", &value)?;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(compact.as_bytes())
        .map_err(|e| invalid(format!("{F}(): the value is not valid base64: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| invalid(format!("{F}(): the decoded bytes are not valid UTF-8 text")))
}

/// `to_json(value)`: the value as compact JSON.
pub fn to_json(value: Value) -> Result<String, Error> {
    if value.is_undefined() {
        return Err(invalid("to_json(): the value is undefined"));
    }
    serde_json::to_string(&value).map_err(|e| {
        invalid(format!(
            "to_json(): the value cannot be written as JSON: {e}"
        ))
    })
}

/// `from_json(text)`: parses JSON text into a value.
pub fn from_json(text: Value) -> Result<Value, Error> {
    const F: &str = "from_json";
    let s = expect_str(F, "the value", &text)?;
    serde_json::from_str::<Value>(s).map_err(|e| invalid(format!("{F}(): invalid JSON: {e}")))
}

/// `replace(s, old, new)`: `s` with every `old` replaced by `new`.
pub fn replace(s: Value, old: Value, new: Value) -> Result<String, Error> {
    const F: &str = "replace";
    let s = expect_str(F, "the string", &s)?;
    let old = expect_str(F, "the old string", &old)?;
    let new = expect_str(F, "the new string", &new)?;
    if old.is_empty() {
        return Err(invalid(format!("{F}(): the old string must not be empty")));
    }
    Ok(s.replace(old, new))
}

/// The delimiters of a `split` call: one string or a list of strings.
fn delimiters(func: &str, delimiter: &Value) -> Result<Vec<String>, Error> {
    if is_list(delimiter) {
        list_items(func, "the delimiter", delimiter)?
            .iter()
            .enumerate()
            .map(|(i, d)| {
                expect_str(func, &format!("the {} delimiter", ordinal(i)), d).map(str::to_owned)
            })
            .collect()
    } else if delimiter.kind() == ValueKind::String {
        Ok(vec![
            expect_str(func, "the delimiter", delimiter)?.to_owned(),
        ])
    } else {
        Err(wrong_type(
            func,
            "the delimiter",
            "a string or a list of strings",
            delimiter,
        ))
    }
}

/// Splits at any of the delimiters, trying them in order at each position
/// (like .NET's `String.Split(string[])`). Empty delimiters are ignored.
fn split_any(s: &str, delims: &[String]) -> Vec<String> {
    let delims: Vec<&str> = delims
        .iter()
        .map(String::as_str)
        .filter(|d| !d.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        if !s.is_char_boundary(i) {
            i += 1;
            continue;
        }
        if let Some(d) = delims.iter().find(|d| s[i..].starts_with(**d)) {
            out.push(s[start..i].to_owned());
            i += d.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(s[start..].to_owned());
    out
}

/// `split(s, delimiter)`: `s` split at `delimiter`, which may be a string or
/// a list of strings (split at any of them), like ARM's `split`.
pub fn split(s: Value, delimiter: Value) -> Result<Vec<String>, Error> {
    const F: &str = "split";
    let s = expect_str(F, "the string", &s)?;
    let delims = delimiters(F, &delimiter)?;
    Ok(split_any(s, &delims))
}

/// The `split` filter: ARM's `split` when the delimiter is a list of
/// strings; otherwise minijinja's builtin `split` (no delimiter splits at
/// whitespace, an optional `maxsplits` limits the splits).
pub fn split_filter(
    s: Value,
    delimiter: Option<Value>,
    maxsplits: Option<i64>,
) -> Result<Value, Error> {
    match delimiter {
        Some(d) if is_list(&d) => {
            if maxsplits.is_some() {
                return Err(invalid(
                    "split: maxsplits is not supported with a list of delimiters",
                ));
            }
            split(s, d).map(Value::from)
        }
        Some(d) if d.is_none() || d.is_undefined() => {
            minijinja::filters::split(&s, None, maxsplits)
        }
        Some(d) => {
            let d: Arc<str> = Arc::from(expect_str("split", "the delimiter", &d)?);
            if d.is_empty() {
                return Err(invalid("split: the delimiter must not be empty"));
            }
            minijinja::filters::split(&s, Some(d), maxsplits)
        }
        None => minijinja::filters::split(&s, None, maxsplits),
    }
}

/// `join(list, delimiter)`: the list's items (strings, numbers or bools)
/// joined with `delimiter`, like ARM's `join`.
pub fn join(list: Value, delimiter: Value) -> Result<String, Error> {
    const F: &str = "join";
    let items = list_items(F, "the first argument", &list)?;
    let delimiter = expect_str(F, "the delimiter", &delimiter)?;
    let mut parts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.kind() {
            ValueKind::String => parts.push(item.as_str().unwrap_or_default().to_owned()),
            ValueKind::Number => parts.push(item.to_string()),
            ValueKind::Bool => parts.push(if item.is_true() { "true" } else { "false" }.into()),
            _ => {
                return Err(invalid(format!(
                    "{F}(): the {} item must be a string, number or bool, got {}",
                    ordinal(i),
                    type_name(item)
                )));
            }
        }
    }
    Ok(parts.join(delimiter))
}

/// `substring(s, start, length=None)`: `length` characters of `s` from
/// `start` (to the end without `length`), like ARM's `substring`. Fails,
/// like ARM, when the range is not inside the string.
pub fn substring(s: Value, start: Value, length: Option<Value>) -> Result<String, Error> {
    const F: &str = "substring";
    let s = expect_str(F, "the string", &s)?;
    let start = expect_int(F, "the start index", &start)?;
    let chars = s.chars().count() as i128;
    if start < 0 {
        return Err(invalid(format!(
            "{F}(): the start index must not be negative, got {start}"
        )));
    }
    if start > chars {
        return Err(invalid(format!(
            "{F}(): the start index {start} is beyond the end of the string (length {chars})"
        )));
    }
    let length = match length {
        None => chars - start,
        Some(v) if v.is_none() => chars - start,
        Some(v) => expect_int(F, "the length", &v)?,
    };
    if length < 0 {
        return Err(invalid(format!(
            "{F}(): the length must not be negative, got {length}"
        )));
    }
    if length > chars - start {
        return Err(invalid(format!(
            "{F}(): the index and length must refer to a location within the string: \
             start {start} + length {length} is beyond the end of the string (length {chars})"
        )));
    }
    // Both are within 0..=chars here.
    Ok(s.chars()
        .skip(start as usize)
        .take(length as usize)
        .collect())
}

/// `pad_left(value, total_length, pad_char=' ')`: `value` (a string or a
/// number) padded on the left with `pad_char` to `total_length` characters,
/// like ARM's `padLeft`. A longer value is returned unchanged.
pub fn pad_left(
    value: Value,
    total_length: Value,
    pad_char: Option<Value>,
) -> Result<String, Error> {
    const F: &str = "pad_left";
    let s = match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Number => value.to_string(),
        _ => return Err(wrong_type(F, "the value", "a string or a number", &value)),
    };
    let total = expect_int(F, "the total length", &total_length)?;
    if total < 0 {
        return Err(invalid(format!(
            "{F}(): the total length must not be negative, got {total}"
        )));
    }
    if total > MAX_PAD_LENGTH {
        return Err(invalid(format!(
            "{F}(): the total length {total} is larger than the limit of {MAX_PAD_LENGTH}"
        )));
    }
    let pad = match pad_char {
        None => ' ',
        Some(p) if p.is_none() => ' ',
        Some(p) => {
            let p = expect_str(F, "the padding character", &p)?;
            let mut chars = p.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    return Err(invalid(format!(
                        "{F}(): the padding character must be exactly one character, got {p:?}"
                    )));
                }
            }
        }
    };
    let len = s.chars().count() as i128;
    if len >= total {
        return Ok(s);
    }
    let mut out: String = std::iter::repeat_n(pad, (total - len) as usize).collect();
    out.push_str(&s);
    Ok(out)
}

// ---------------------------------------------------------------------------
// format

/// One parsed `{index[,alignment][:format]}` item.
struct FormatItem<'a> {
    index: usize,
    alignment: i64,
    spec: &'a str,
}

/// `format(fmt, *args)`: .NET composite formatting, like ARM's `format`:
/// `{0}` is the first argument, `{0,8}` right-aligns it in 8 columns, `{0,-8}`
/// left-aligns it, `{0:N2}` applies a numeric format, and `{{` / `}}` are
/// literal braces.
///
/// Numeric formats (invariant culture): `D`/`d` (integer, minimum digits),
/// `N`/`n` (thousands separators, default 2 decimals), `F`/`f` (fixed,
/// default 2 decimals), `X`/`x` (hexadecimal integer, minimum digits), `P`/`p`
/// (percent, default 2 decimals), `E`/`e` (exponential, default 6 decimals)
/// and `G`/`g` (general). A format on a non-number is ignored, as in .NET.
///
/// Values render as ARM does: strings as they are, bools as `True` / `False`,
/// none as an empty string; lists and maps as compact JSON.
pub fn format(fmt: Value, args: Rest<Value>) -> Result<String, Error> {
    const F: &str = "format";
    let fmt = expect_str(F, "the format string", &fmt)?;
    let mut out = String::with_capacity(fmt.len());
    let bytes = fmt.as_bytes();
    let mut i = 0;
    let mut literal_start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                out.push_str(&fmt[literal_start..i]);
                out.push('{');
                i += 2;
                literal_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                out.push_str(&fmt[literal_start..i]);
                out.push('}');
                i += 2;
                literal_start = i;
            }
            b'}' => {
                return Err(invalid(format!(
                    "{F}(): unexpected '}}' at position {i} of the format string \
                     (write '}}}}' for a literal '}}')"
                )));
            }
            b'{' => {
                out.push_str(&fmt[literal_start..i]);
                let close = fmt[i..].find('}').map(|n| i + n).ok_or_else(|| {
                    invalid(format!(
                        "{F}(): unclosed '{{' at position {i} of the format string \
                         (write '{{{{' for a literal '{{')"
                    ))
                })?;
                let item = parse_format_item(&fmt[i + 1..close], i)?;
                let arg = args.get(item.index).ok_or_else(|| {
                    invalid(format!(
                        "{F}(): the format item {{{}}} refers to argument {}, but only {} \
                         argument{} given",
                        &fmt[i + 1..close],
                        item.index,
                        args.len(),
                        if args.len() == 1 { " was" } else { "s were" }
                    ))
                })?;
                let text = format_value(arg, item.spec)?;
                align(&mut out, &text, item.alignment);
                i = close + 1;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&fmt[literal_start..]);
    Ok(out)
}

fn parse_format_item(inner: &str, pos: usize) -> Result<FormatItem<'_>, Error> {
    let bad = |why: &str| {
        invalid(format!(
            "format(): invalid format item {{{inner}}} at position {pos}: {why}"
        ))
    };
    let (head, spec) = match inner.split_once(':') {
        Some((h, s)) => (h, s),
        None => (inner, ""),
    };
    let (index, alignment) = match head.split_once(',') {
        Some((i, a)) => (i, Some(a)),
        None => (head, None),
    };
    let index = index.trim();
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected an argument number such as {0}"));
    }
    let index: usize = index
        .parse()
        .map_err(|_| bad("the argument number is too large"))?;
    let alignment = match alignment {
        None => 0,
        Some(a) => {
            let a = a.trim();
            let digits = a.strip_prefix('-').unwrap_or(a);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    "the alignment must be an integer such as {0,8} or {0,-8}",
                ));
            }
            let a: i64 = a.parse().map_err(|_| bad("the alignment is too large"))?;
            if a.unsigned_abs() > MAX_PAD_LENGTH as u64 {
                return Err(bad("the alignment is too large"));
            }
            a
        }
    };
    Ok(FormatItem {
        index,
        alignment,
        spec,
    })
}

fn align(out: &mut String, text: &str, alignment: i64) {
    let width = alignment.unsigned_abs() as usize;
    let len = text.chars().count();
    let pad = width.saturating_sub(len);
    if alignment > 0 {
        out.extend(std::iter::repeat_n(' ', pad));
        out.push_str(text);
    } else {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', pad));
    }
}

/// A number argument of `format`.
enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(value: &Value) -> Option<Num> {
    if value.kind() != ValueKind::Number {
        return None;
    }
    if value.is_integer()
        && let Ok(i) = i128::try_from(value.clone())
    {
        return Some(Num::Int(i));
    }
    f64::try_from(value.clone()).ok().map(Num::Float)
}

/// Renders one argument of `format` without a format specifier.
fn plain(value: &Value) -> Result<String, Error> {
    Ok(match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_owned(),
        ValueKind::None | ValueKind::Undefined => String::new(),
        ValueKind::Number => match as_num(value) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => float_general(f),
            None => value.to_string(),
        },
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => serde_json::to_string(value)
            .map_err(|e| invalid(format!("format(): cannot write an argument as JSON: {e}")))?,
        _ => value.to_string(),
    })
}

/// A float in .NET's shortest round-trip style (`1.5`, `2`, `1E+21`).
fn float_general(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "∞" } else { "-∞" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e15).contains(&abs) {
        // Exponential with the shortest mantissa, .NET style: 1E+21, 1.5E-07.
        let s = format!("{f:e}");
        if let Some((mantissa, exp)) = s.split_once('e') {
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            let digits = if exp.abs() < 10 {
                2
            } else {
                2.max(exp.abs().to_string().len())
            };
            return format!("{mantissa}E{sign}{:0digits$}", exp.abs());
        }
    }
    format!("{f}")
}

/// Splits a standard numeric format into its letter and optional precision.
fn parse_spec(spec: &str) -> Option<(char, Option<usize>)> {
    let mut chars = spec.chars();
    let letter = chars.next()?;
    if !letter.is_ascii_alphabetic() {
        return None;
    }
    let rest = chars.as_str();
    if rest.is_empty() {
        return Some((letter, None));
    }
    if rest.len() > 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok().map(|p| (letter, Some(p)))
}

/// Inserts thousands separators into the integer part of a plain decimal.
fn group_thousands(digits: &str) -> String {
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3 + 1);
    for (n, c) in int.chars().enumerate() {
        if n > 0 && (int.len() - n) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&grouped);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// Fixed-point text of a number with `prec` decimals, without a negative
/// zero.
fn fixed(n: &Num, prec: usize) -> String {
    let s = match n {
        Num::Int(i) if prec == 0 => i.to_string(),
        Num::Int(i) => format!("{i}.{}", "0".repeat(prec)),
        Num::Float(f) => format!("{f:.prec$}"),
    };
    match s.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
        _ => s,
    }
}

/// Renders one argument of `format` with a format specifier.
fn format_value(value: &Value, spec: &str) -> Result<String, Error> {
    let spec_trimmed = spec.trim();
    if spec_trimmed.is_empty() {
        return plain(value);
    }
    let Some(num) = as_num(value) else {
        // .NET ignores format strings for values that are not numbers.
        return plain(value);
    };
    let unsupported = || {
        invalid(format!(
            "format(): unsupported format specifier {spec:?} (supported: D, N, F, X, P, E, G, \
             each with an optional precision such as N2)"
        ))
    };
    let (letter, prec) = parse_spec(spec_trimmed).ok_or_else(unsupported)?;
    if let Num::Float(f) = num
        && !f.is_finite()
    {
        return plain(value);
    }
    let integer_only = |letter: char| {
        invalid(format!(
            "format(): the format specifier {letter:?} needs an integer, got {}",
            type_name(value)
        ))
    };
    Ok(match letter {
        'D' | 'd' => {
            let Num::Int(i) = num else {
                return Err(integer_only(letter));
            };
            let digits = i.unsigned_abs().to_string();
            let width = prec.unwrap_or(0);
            let sign = if i < 0 { "-" } else { "" };
            format!("{sign}{digits:0>width$}")
        }
        'X' | 'x' => {
            let Num::Int(i) = num else {
                return Err(integer_only(letter));
            };
            // Negative numbers print as 64-bit two's complement, like .NET's
            // Int64 (ARM integers are 64-bit).
            let hex = match i64::try_from(i) {
                Ok(v) if v < 0 => format!("{:x}", v as u64),
                _ => format!("{:x}", i),
            };
            let hex = if letter == 'X' {
                hex.to_uppercase()
            } else {
                hex
            };
            let width = prec.unwrap_or(0);
            format!("{hex:0>width$}")
        }
        'N' | 'n' => group_thousands(&fixed(&num, prec.unwrap_or(2))),
        'F' | 'f' => fixed(&num, prec.unwrap_or(2)),
        'P' | 'p' => {
            let scaled = match num {
                Num::Int(i) => match i.checked_mul(100) {
                    Some(v) => Num::Int(v),
                    None => Num::Float(i as f64 * 100.0),
                },
                Num::Float(f) => Num::Float(f * 100.0),
            };
            format!("{} %", group_thousands(&fixed(&scaled, prec.unwrap_or(2))))
        }
        'E' | 'e' => {
            let f = match num {
                Num::Int(i) => i as f64,
                Num::Float(f) => f,
            };
            let prec = prec.unwrap_or(6);
            let s = format!("{f:.prec$e}");
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            let e = if letter == 'E' { 'E' } else { 'e' };
            format!("{mantissa}{e}{sign}{:03}", exp.abs())
        }
        'G' | 'g' => plain(value)?,
        _ => return Err(unsupported()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            json("base64('one, two, three')"),
            r#""b25lLCB0d28sIHRocmVl""#
        );
        assert_eq!(
            json("base64_decode('b25lLCB0d28sIHRocmVl')"),
            r#""one, two, three""#
        );
        assert_eq!(json("base64('')"), r#""""#);
        assert_eq!(json("base64_decode('')"), r#""""#);
        assert_eq!(json("base64('é')"), r#""w6k=""#);
        assert_eq!(json("base64_decode('w6k')"), r#""é""#);
        assert_eq!(json("base64_decode(' aG\\nk= ')"), r#""hi""#);
    }

    #[test]
    fn base64_errors() {
        assert!(err("base64(1)").contains("base64(): the value must be a string, got int"));
        assert!(err("base64(x)").contains("undefined"));
        assert!(err("base64_decode('!!!')").contains("not valid base64"));
        assert!(err("base64_decode('/w==')").contains("not valid UTF-8"));
        assert!(err("base64_decode(none)").contains("got none"));
    }

    #[test]
    fn json_round_trip() {
        assert_eq!(
            json("to_json({'b': [1, 2.5, true, none], 'a': 'x'})"),
            r#""{\"b\":[1,2.5,true,null],\"a\":\"x\"}""#
        );
        assert_eq!(
            json(r#"from_json('{"b": [1, 2.5, true, null], "a": {"c": "d"}}')"#),
            r#"{"b":[1,2.5,true,null],"a":{"c":"d"}}"#
        );
        assert_eq!(json("from_json('\"s\"')"), r#""s""#);
        assert_eq!(json("from_json(to_json([1, 'a']))"), r#"[1,"a"]"#);
        assert!(err("from_json('{')").contains("from_json(): invalid JSON"));
        assert!(err("from_json(1)").contains("must be a string"));
        assert!(err("to_json(nope)").contains("undefined"));
        assert_eq!(json("to_json(none)"), r#""null""#);
    }

    #[test]
    fn format_arm_docs_example() {
        assert_eq!(
            json("format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', 8175133)"),
            r#""Hello, User. Formatted number: 8,175,133""#
        );
    }

    #[test]
    fn format_basics() {
        assert_eq!(json("format('{0}-{1}', 'a', 'b')"), r#""a-b""#);
        assert_eq!(json("format('{1}{0}{1}', 'a', 'b')"), r#""bab""#);
        assert_eq!(json("format('{{0}} is {0}', 'x')"), r#""{0} is x""#);
        assert_eq!(json("format('}}{{')"), r#""}{""#);
        assert_eq!(json("format('no items')"), r#""no items""#);
        assert_eq!(json("format('{0}', true)"), r#""True""#);
        assert_eq!(json("format('{0}', false)"), r#""False""#);
        assert_eq!(json("format('[{0}]', none)"), r#""[]""#);
        assert_eq!(json("format('{0}', [1, 'a'])"), r#""[1,\"a\"]""#);
        assert_eq!(json("format('{0}', {'k': 1})"), r#""{\"k\":1}""#);
        assert_eq!(json("format('{0}', 1.5)"), r#""1.5""#);
        assert_eq!(json("format('{0}', 2.0)"), r#""2""#);
        assert_eq!(json("format('é{0}ü', 'ö')"), r#""éöü""#);
        assert_eq!(json("format('{ 0 }', 'x')"), r#""x""#);
    }

    #[test]
    fn format_alignment() {
        assert_eq!(json("format('[{0,5}]', 'ab')"), r#""[   ab]""#);
        assert_eq!(json("format('[{0,-5}]', 'ab')"), r#""[ab   ]""#);
        assert_eq!(json("format('[{0,1}]', 'abc')"), r#""[abc]""#);
        assert_eq!(json("format('[{0,6:N1}]', 1234.56)"), r#""[1,234.6]""#);
        assert_eq!(json("format('[{0,8:N1}]', 1234.56)"), r#""[ 1,234.6]""#);
    }

    #[test]
    fn format_numbers() {
        assert_eq!(json("format('{0:D5}', 42)"), r#""00042""#);
        assert_eq!(json("format('{0:D5}', -42)"), r#""-00042""#);
        assert_eq!(json("format('{0:d}', 42)"), r#""42""#);
        assert_eq!(json("format('{0:N}', 1234567)"), r#""1,234,567.00""#);
        assert_eq!(json("format('{0:N2}', -1234.5)"), r#""-1,234.50""#);
        assert_eq!(json("format('{0:N0}', 999)"), r#""999""#);
        assert_eq!(json("format('{0:N0}', 0)"), r#""0""#);
        assert_eq!(json("format('{0:F3}', 3.14159)"), r#""3.142""#);
        assert_eq!(json("format('{0:F}', 3)"), r#""3.00""#);
        assert_eq!(json("format('{0:F0}', -0.2)"), r#""0""#);
        assert_eq!(json("format('{0:X}', 255)"), r#""FF""#);
        assert_eq!(json("format('{0:x4}', 255)"), r#""00ff""#);
        assert_eq!(json("format('{0:X}', -1)"), r#""FFFFFFFFFFFFFFFF""#);
        assert_eq!(json("format('{0:P}', 0.125)"), r#""12.50 %""#);
        assert_eq!(json("format('{0:P0}', 1)"), r#""100 %""#);
        assert_eq!(json("format('{0:E}', 1234.5)"), r#""1.234500E+003""#);
        assert_eq!(json("format('{0:e2}', 0.000123)"), r#""1.23e-004""#);
        assert_eq!(json("format('{0:G}', 12)"), r#""12""#);
        // A format on a string is ignored, as in .NET.
        assert_eq!(json("format('{0:N2}', 'abc')"), r#""abc""#);
    }

    #[test]
    fn format_errors() {
        assert!(
            err("format('{0}')").contains("refers to argument 0, but only 0 arguments were given")
        );
        assert!(err("format('{1}', 'a')").contains("only 1 argument was given"));
        assert!(err("format('{0')").contains("unclosed '{' at position 0"));
        assert!(err("format('a}b')").contains("unexpected '}' at position 1"));
        assert!(err("format('{}', 1)").contains("expected an argument number"));
        assert!(err("format('{a}', 1)").contains("expected an argument number"));
        assert!(err("format('{-1}', 1)").contains("expected an argument number"));
        assert!(err("format('{0,x}', 1)").contains("alignment must be an integer"));
        assert!(err("format('{0,99999999999}', 1)").contains("alignment is too large"));
        assert!(err("format('{99999999999999999999999}', 1)").contains("too large"));
        assert!(err("format('{0:Q}', 1)").contains("unsupported format specifier"));
        assert!(err("format('{0:N999}', 1)").contains("unsupported format specifier"));
        assert!(err("format('{0:D}', 1.5)").contains("needs an integer"));
        assert!(err("format('{0:X}', 1.5)").contains("needs an integer"));
        assert!(err("format(1)").contains("the format string must be a string"));
        assert!(eval("format()").is_err());
    }

    #[test]
    fn float_general_style() {
        assert_eq!(float_general(1e21), "1E+21");
        assert_eq!(float_general(1.5e-7), "1.5E-07");
        assert_eq!(float_general(0.25), "0.25");
        assert_eq!(float_general(-3.0), "-3");
        assert_eq!(float_general(f64::NAN), "NaN");
    }

    #[test]
    fn pad_left_cases() {
        assert_eq!(json("pad_left('123', 10, '0')"), r#""0000000123""#);
        assert_eq!(json("pad_left(123, 5, '0')"), r#""00123""#);
        assert_eq!(json("pad_left('abc', 5)"), r#""  abc""#);
        assert_eq!(json("pad_left('abcdef', 3, 'x')"), r#""abcdef""#);
        assert_eq!(json("pad_left('é', 3, 'ü')"), r#""üüé""#);
        assert_eq!(json("pad_left('', 0)"), r#""""#);
        assert!(err("pad_left('a', -1)").contains("must not be negative"));
        assert!(err("pad_left('a', 99999999999)").contains("larger than the limit"));
        assert!(err("pad_left('a', 3, 'xy')").contains("exactly one character"));
        assert!(err("pad_left('a', 3, '')").contains("exactly one character"));
        assert!(err("pad_left(['a'], 3)").contains("a string or a number, got list"));
        assert!(err("pad_left('a', '3')").contains("the total length must be an integer"));
    }

    #[test]
    fn replace_cases() {
        assert_eq!(json("replace('123-123-1234', '-', '')"), r#""1231231234""#);
        assert_eq!(json("replace('aaa', 'a', 'bb')"), r#""bbbbbb""#);
        assert_eq!(json("replace('abc', 'x', 'y')"), r#""abc""#);
        assert!(err("replace('abc', '', 'y')").contains("must not be empty"));
        assert!(err("replace('abc', 1, 'y')").contains("the old string must be a string"));
        assert!(err("replace(1, 'a', 'y')").contains("the string must be a string"));
    }

    #[test]
    fn split_cases() {
        assert_eq!(
            json("split('one,two,three', ',')"),
            r#"["one","two","three"]"#
        );
        assert_eq!(
            json("split('one;two,three', [',', ';'])"),
            r#"["one","two","three"]"#
        );
        assert_eq!(json("split('a,,b', ',')"), r#"["a","","b"]"#);
        assert_eq!(json("split('', ',')"), r#"[""]"#);
        assert_eq!(json("split('abc', '')"), r#"["abc"]"#);
        assert_eq!(json("split('a--b-c', ['--', '-'])"), r#"["a","b","c"]"#);
        assert_eq!(json("split('a--b', ['-', '--'])"), r#"["a","","b"]"#);
        assert_eq!(json("split('é,ü', ',')"), r#"["é","ü"]"#);
        assert!(err("split('a', 1)").contains("a string or a list of strings, got int"));
        assert!(err("split('a', [1])").contains("the 1st delimiter must be a string"));
        assert!(err("split(1, ',')").contains("the string must be a string"));
    }

    #[test]
    fn split_filter_cases() {
        assert_eq!(json("'a,b' | split(',')"), r#"["a","b"]"#);
        assert_eq!(json("'a;b,c' | split([',', ';'])"), r#"["a","b","c"]"#);
        assert_eq!(json("' a  b ' | split"), r#"["a","b"]"#);
        assert_eq!(json("'a,b,c' | split(',', 1)"), r#"["a","b,c"]"#);
        assert_eq!(json("'a b' | split(none)"), r#"["a","b"]"#);
        assert!(eval("'a' | split([','], 1)").is_err());
        assert!(eval("'a' | split('')").is_err());
        assert!(eval("'a' | split(1)").is_err());
    }

    #[test]
    fn join_cases() {
        assert_eq!(json("join(['a', 'b', 'c'], ',')"), r#""a,b,c""#);
        assert_eq!(json("join([], ',')"), r#""""#);
        assert_eq!(json("join(['a', 1, true], '-')"), r#""a-1-true""#);
        assert!(err("join('abc', ',')").contains("must be a list, got string"));
        assert!(err("join(['a', ['b']], ',')").contains("the 2nd item must be a string"));
        assert!(err("join(['a'], 1)").contains("the delimiter must be a string"));
    }

    #[test]
    fn substring_cases() {
        assert_eq!(json("substring('one two three', 4, 3)"), r#""two""#);
        assert_eq!(json("substring('hello', 2)"), r#""llo""#);
        assert_eq!(json("substring('hello', 5)"), r#""""#);
        assert_eq!(json("substring('hello', 0, 5)"), r#""hello""#);
        assert_eq!(json("substring('hello', 1, none)"), r#""ello""#);
        assert_eq!(json("substring('héllo', 1, 2)"), r#""él""#);
        assert!(err("substring('hello', -1)").contains("must not be negative"));
        assert!(err("substring('hello', 6)").contains("beyond the end of the string (length 5)"));
        assert!(err("substring('hello', 2, 4)").contains("start 2 + length 4"));
        assert!(err("substring('hello', 1, -1)").contains("the length must not be negative"));
        assert!(err("substring('hello', 'a')").contains("the start index must be an integer"));
        assert!(err("substring(5, 1)").contains("the string must be a string"));
        let huge = substring("abc".into(), 1.into(), Some(Value::from(i128::MAX))).unwrap_err();
        assert!(huge.to_string().contains("beyond the end"));
        assert!(
            err("substring('hello', 9223372036854775807, 9223372036854775807)")
                .contains("beyond the end")
        );
    }
}
