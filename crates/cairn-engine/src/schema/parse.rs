//! Values written as text in a template: JSON documents and durations.

/// Parses a document written as a JSON string (`'{"Version": ...}'`); a
/// document must be a JSON object.
pub fn parse_document(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!(
            "a JSON {}, not an object",
            match other {
                serde_json::Value::Array(_) => "list",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// `30s` → 30_000 ms. Accepts ms, s, m, h and a bare number of seconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_to_objects_only() {
        let d = parse_document(r#"{"Version": "2012-10-17", "Statement": []}"#).unwrap();
        assert_eq!(d["Version"], "2012-10-17");
        assert_eq!(
            parse_document("[1]").unwrap_err(),
            "a JSON list, not an object"
        );
        assert!(
            parse_document("{nope")
                .unwrap_err()
                .starts_with("not JSON: ")
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("3"), Some(3000));
        assert_eq!(parse_duration_ms("x"), None);
    }
}
