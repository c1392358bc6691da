//! What the families share: reading arguments, naming their types, and the
//! errors for arguments that are wrong.

use std::borrow::Cow;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// An `InvalidOperation` error with the given message.
pub(crate) fn invalid(msg: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// A short, user-facing name for a value's type.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "undefined",
        ValueKind::None => "none",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "number",
        ValueKind::String => "string",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "map",
        _ => "object",
    }
}

/// The error for an argument of the wrong type.
pub(crate) fn wrong_type(func: &str, what: &str, expected: &str, got: &Value) -> Error {
    if got.is_undefined() {
        invalid(format!(
            "{func}(): {what} is undefined (expected {expected})"
        ))
    } else {
        invalid(format!(
            "{func}(): {what} must be {expected}, got {}",
            type_name(got)
        ))
    }
}

/// The argument as a string slice, or a clear error.
pub(crate) fn expect_str<'a>(func: &str, what: &str, value: &'a Value) -> Result<&'a str, Error> {
    match value.kind() {
        ValueKind::String => value
            .as_str()
            .ok_or_else(|| wrong_type(func, what, "a string", value)),
        _ => Err(wrong_type(func, what, "a string", value)),
    }
}

/// The argument as an integer, or a clear error. Floats with an integral
/// value (`3.0`) are accepted; fractions are not.
pub(crate) fn expect_int(func: &str, what: &str, value: &Value) -> Result<i128, Error> {
    if value.kind() != ValueKind::Number {
        return Err(wrong_type(func, what, "an integer", value));
    }
    if let Ok(v) = i128::try_from(value.clone()) {
        return Ok(v);
    }
    if let Ok(v) = u128::try_from(value.clone()) {
        // Only values above i128::MAX get here.
        return Err(invalid(format!("{func}(): {what} {v} is too large")));
    }
    if let Ok(f) = f64::try_from(value.clone()) {
        if f.is_finite() && f.fract() == 0.0 {
            // Integral but outside i64 (otherwise try_from above succeeded).
            if f.abs() < 1.7e38 {
                // `as` saturates; the bound keeps it exact enough and in range.
                return Ok(f as i128);
            }
            return Err(invalid(format!("{func}(): {what} {f} is too large")));
        }
        return Err(invalid(format!(
            "{func}(): {what} must be an integer, got {f}"
        )));
    }
    Err(wrong_type(func, what, "an integer", value))
}

/// Whether the value is a list (a sequence or another iterable that is not a
/// map or string).
pub(crate) fn is_list(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// Whether the value is a map.
pub(crate) fn is_map(value: &Value) -> bool {
    value.kind() == ValueKind::Map
}

/// The items of a list value.
pub(crate) fn list_items(func: &str, what: &str, value: &Value) -> Result<Vec<Value>, Error> {
    if !is_list(value) {
        return Err(wrong_type(func, what, "a list", value));
    }
    let iter = value
        .try_iter()
        .map_err(|_| wrong_type(func, what, "a list", value))?;
    Ok(iter.collect())
}

/// The key/value pairs of a map value, in order.
pub(crate) fn map_pairs(
    func: &str,
    what: &str,
    value: &Value,
) -> Result<Vec<(Value, Value)>, Error> {
    if !is_map(value) {
        return Err(wrong_type(func, what, "a map", value));
    }
    let keys = value
        .try_iter()
        .map_err(|_| wrong_type(func, what, "a map", value))?;
    let mut pairs = Vec::new();
    for key in keys {
        let item = value.get_item(&key).unwrap_or_default();
        pairs.push((key, item));
    }
    Ok(pairs)
}

/// The ordinal ("1st", "2nd", ...) of a 0-based argument index, for messages.
pub(crate) fn ordinal(index: usize) -> String {
    let n = index + 1;
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal(0), "1st");
        assert_eq!(ordinal(1), "2nd");
        assert_eq!(ordinal(2), "3rd");
        assert_eq!(ordinal(3), "4th");
        assert_eq!(ordinal(10), "11th");
        assert_eq!(ordinal(20), "21st");
    }

    #[test]
    fn expect_int_edges() {
        assert_eq!(expect_int("f", "x", &Value::from(3.0)).unwrap(), 3);
        assert!(expect_int("f", "x", &Value::from(3.5)).is_err());
        assert!(expect_int("f", "x", &Value::from(f64::NAN)).is_err());
        assert!(expect_int("f", "x", &Value::from(f64::INFINITY)).is_err());
        assert!(expect_int("f", "x", &Value::from(1e300)).is_err());
        assert!(expect_int("f", "x", &Value::from("3")).is_err());
        assert!(expect_int("f", "x", &Value::from(u128::MAX)).is_err());
        assert_eq!(
            expect_int("f", "x", &Value::from(i128::MIN)).unwrap(),
            i128::MIN
        );
        assert!(expect_int("f", "x", &Value::UNDEFINED).is_err());
    }
}
