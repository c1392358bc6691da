//! Regular expressions anchored as Salt's and Ansible's `re.match` are.

/// Regex anchored at the start (`re.match`), with the error's own message
/// (its last line, without the caret drawing).
pub(crate) fn start_anchored(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})")).map_err(|e| match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().trim_start_matches("error: ").to_string())
            .unwrap_or(s),
        other => other.to_string(),
    })
}
