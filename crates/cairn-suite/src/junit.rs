//! JUnit XML for CI: one `<testsuite>` (the deployment's template), a
//! `<testcase>` per test, `<failure>` or `<skipped>` with the message.

use crate::run::{TestResult, TestStatus, tally};

/// Text and attribute values escaped for XML 1.0; characters XML cannot
/// hold at all (control characters other than tab and newlines) become
/// U+FFFD, so a stray byte in a body cannot break the file.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `path:line:col` as (`path`, line); a location without numbers is all path.
fn split_location(location: &str) -> (&str, u32) {
    let mut parts = location.rsplitn(3, ':');
    let (col, line, path) = (parts.next(), parts.next(), parts.next());
    match (
        col.map(str::parse::<u32>),
        line.map(str::parse::<u32>),
        path,
    ) {
        (Some(Ok(_)), Some(Ok(line)), Some(path)) => (path, line),
        _ => (location, 0),
    }
}

pub fn render(suite: &str, results: &[TestResult], elapsed_s: f64) -> String {
    let t = tally(results);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"cairn test\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{elapsed_s:.3}\">\n",
        results.len(),
        t.failed,
        t.skipped
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{elapsed_s:.3}\">\n",
        escape(suite),
        results.len(),
        t.failed,
        t.skipped
    ));
    for r in results {
        // CI tools read `file` as a path and `line` apart.
        let (file, line) = split_location(&r.location);
        x.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"{}.{}\" file=\"{}\" line=\"{line}\" time=\"{:.3}\"",
            escape(&r.name),
            escape(suite),
            escape(&r.kind),
            escape(file),
            r.duration_ms as f64 / 1000.0
        ));
        let message = escape(r.message.as_deref().unwrap_or_default());
        match r.status {
            TestStatus::Passed => x.push_str("/>\n"),
            TestStatus::Failed => x.push_str(&format!(
                ">\n      <failure message=\"{message}\" type=\"expectation\">{}: {message}</failure>\n    </testcase>\n",
                escape(&r.location)
            )),
            TestStatus::Skipped => x.push_str(&format!(
                ">\n      <skipped message=\"{message}\"/>\n    </testcase>\n"
            )),
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, status: TestStatus, message: Option<&str>) -> TestResult {
        TestResult {
            name: name.into(),
            kind: "http".into(),
            location: "cairn.yaml:3:5".into(),
            status,
            attempts: 1,
            duration_ms: 1500,
            message: message.map(str::to_string),
        }
    }

    #[test]
    fn locations_split_into_file_and_line() {
        assert_eq!(
            split_location("a/b:c/cairn.yaml:87:3"),
            ("a/b:c/cairn.yaml", 87)
        );
        assert_eq!(split_location("cairn.yaml"), ("cairn.yaml", 0));
    }

    #[test]
    fn escapes_what_xml_cannot_hold() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("bell\u{7}"), "bell\u{FFFD}");
    }

    #[test]
    fn one_case_per_test_with_failures_and_skips() {
        let x = render(
            "webapp",
            &[
                r("web", TestStatus::Passed, None),
                r(
                    "db<1>",
                    TestStatus::Failed,
                    Some("expected \"1\", got \"2\""),
                ),
                r("cmd", TestStatus::Skipped, Some("no SSH")),
            ],
            2.0,
        );
        assert!(
            x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(x.contains("<testcase name=\"web\" classname=\"webapp.http\" file=\"cairn.yaml\" line=\"3\" time=\"1.500\"/>"), "{x}");
        assert!(x.contains("name=\"db&lt;1&gt;\""), "{x}");
        assert!(
            x.contains("<failure message=\"expected &quot;1&quot;, got &quot;2&quot;\""),
            "{x}"
        );
        assert!(x.contains("<skipped message=\"no SSH\"/>"), "{x}");
        assert_eq!(x.matches("<testcase").count(), 3);
        assert_eq!(x.matches("</testcase>").count(), 2);
    }
}
