//! Output formats and `--query`, implemented once for every command.
//!
//! A command returns a JSON value (its serde result); this module applies
//! the JMESPath query and renders table, json, yaml, tsv or nothing. Tables
//! are derived from the JSON, as the az CLI does, so no command renders its
//! own. Tables are for people: [`cell`] shows times, durations and nested
//! values readably; the other formats keep the machine forms.

pub mod cell;

use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, LineStyle, Table, TableStyle};
use serde_json::Value as J;

use self::cell::{Now, cell, header};
use crate::cli::{Format, GlobalArgs};
use crate::report::CliError;

pub fn default_format(explicit: Option<Format>) -> Format {
    explicit.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        }
    })
}

pub fn apply_query(value: J, query: Option<&str>) -> Result<J, CliError> {
    let Some(q) = query else { return Ok(value) };
    let expr =
        jmespath::compile(q).map_err(|e| CliError::Usage(format!("invalid --query: {e}")))?;
    let data = jmespath::Variable::from_json(&value.to_string())
        .map_err(|e| CliError::Usage(format!("cannot query this result: {e}")))?;
    let result = expr
        .search(data)
        .map_err(|e| CliError::Usage(format!("--query failed: {e}")))?;
    serde_json::to_value(&*result).map_err(|e| CliError::Usage(format!("--query result: {e}")))
}

/// Renders a value in a format; `None` prints nothing. `now` (epoch
/// seconds) is what a table's deadlines are relative to.
pub fn render(value: &J, format: Format, now: Now) -> String {
    match format {
        Format::None => String::new(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Yaml => cairn_template::yaml::to_string(value),
        Format::Tsv => tsv(value),
        Format::Table => table(value, now),
    }
}

/// Applies the query and prints the result on stdout.
pub fn emit(value: J, global: &GlobalArgs) -> Result<(), CliError> {
    emit_as(value, global, default_format(global.output))
}

/// Like [`emit`], in a format a command chose (its own default when `-o`
/// is not given, e.g. JSON for `inventory`, whose JSON is a contract).
pub fn emit_as(value: J, global: &GlobalArgs, format: Format) -> Result<(), CliError> {
    let value = apply_query(value, global.query.as_deref())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let text = render(&value, format, now);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`cairn ... | head`) is not an error.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Failure(e.into())),
        _ => Ok(()),
    }
}

/// A TSV field: scalars as they are, anything nested as compact JSON.
fn scalar(v: &J) -> String {
    match v {
        J::Null => String::new(),
        J::String(s) => s.clone(),
        J::Bool(_) | J::Number(_) => v.to_string(),
        _ => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn tsv(value: &J) -> String {
    let line = |v: &J| -> String {
        match v {
            J::Object(m) => m.values().map(scalar).collect::<Vec<_>>().join("\t"),
            J::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join("\t"),
            other => scalar(other),
        }
    };
    let mut out = String::new();
    match value {
        J::Array(items) => {
            for i in items {
                out.push_str(&line(i));
                out.push('\n');
            }
        }
        J::Null => {}
        other => {
            out.push_str(&line(other));
            out.push('\n');
        }
    }
    out
}

fn new_table() -> Table {
    let mut t = Table::new();
    // Header, a rule under it, and rows: what az and kubectl users expect.
    const STYLE: TableStyle =
        TableStyle::new().header_separator(LineStyle::none().fill('-').junction(' '));
    t.load_style(STYLE)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

fn table(value: &J, now: Now) -> String {
    let text = match value {
        J::Null => return String::new(),
        J::Array(items) if items.iter().all(J::is_object) && !items.is_empty() => {
            let mut columns: Vec<String> = Vec::new();
            for i in items {
                for k in i.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            let mut t = new_table();
            t.set_header(columns.iter().map(|c| header(c)));
            for i in items {
                t.add_row(
                    columns
                        .iter()
                        .map(|c| cell(Some(c), i.get(c).unwrap_or(&J::Null), now)),
                );
            }
            t.to_string()
        }
        J::Array(items) => items
            .iter()
            .map(|i| cell(None, i, now))
            .collect::<Vec<_>>()
            .join("\n"),
        J::Object(m) => {
            let mut t = new_table();
            t.set_header(vec!["Key", "Value"]);
            for (k, v) in m {
                t.add_row(vec![k.clone(), cell(Some(k), v, now)]);
            }
            t.to_string()
        }
        other => cell(None, other, now),
    };
    if text.is_empty() { text } else { text + "\n" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_selects_and_projects() {
        let v = json!({"resources": [{"name": "net", "type": "network"}, {"name": "web", "type": "server"}]});
        let q = apply_query(v, Some("resources[?type=='server'].name")).unwrap();
        assert_eq!(q, json!(["web"]));
    }

    #[test]
    fn bad_query_is_a_usage_error() {
        assert!(matches!(
            apply_query(json!({}), Some("[?")),
            Err(CliError::Usage(_))
        ));
    }

    /// 2026-12-04 23:24:39Z: tables are rendered against a pinned clock.
    const NOW: Now = 1_796_426_679;

    #[test]
    fn every_format_renders() {
        let v = json!([{"name": "net", "count": 1}, {"name": "web", "count": 2}]);
        assert_eq!(render(&v, Format::Tsv, NOW), "net\t1\nweb\t2\n");
        assert!(render(&v, Format::Table, NOW).contains("Name"));
        assert_eq!(render(&v, Format::None, NOW), "");
        assert!(render(&v, Format::Yaml, NOW).contains("- name: net"));
        assert!(render(&json!("zavj67f3en4hc"), Format::Table, NOW) == "zavj67f3en4hc\n");
    }

    /// A run as `cairn history` puts it in its JSON.
    fn runs() -> J {
        json!([
            {
                "serial": 1, "command": "up", "who": "alice@laptop",
                "started_at": NOW - 3 * 86_400, "environment": "dev",
                "outcome": "succeeded", "duration_ms": 1234,
                "changes": {"create": 14, "update": 0, "replace": 0, "delete": 0, "no_op": 0},
                "template_digest": "abcdef012345",
                "parameters": {"db_password": "(secret)", "size": "small"},
            },
            {
                "serial": 2, "command": "up", "who": "bob@ci",
                "started_at": NOW - 600, "environment": "dev",
                "outcome": "failed", "duration_ms": 340,
                "changes": {"create": 1, "update": 2, "replace": 0, "delete": 0, "no_op": 12},
                "template_digest": "0123456789ab",
                "parameters": {},
            },
            {
                "serial": 3, "command": "destroy", "who": "bob@ci",
                "started_at": NOW - 5, "environment": "dev",
                "outcome": "running", "duration_ms": null,
                "changes": {"create": 0, "update": 0, "replace": 0, "delete": 15, "no_op": 0},
                "template_digest": "0123456789ab",
                "parameters": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5},
            },
        ])
    }

    /// Resources as `cairn show` puts them in its JSON.
    fn resources() -> J {
        json!([
            {
                "address": "db", "type": "database", "id": "db-1",
                "properties": {"engine": "postgres", "owner": "app", "owner_password": "(secret)"},
                "attributes": {"endpoint": "127.0.0.9:5432"},
                "tags": {"cairn:deployment": "shop-dev"},
                "depends_on": [], "data_holding": true, "prevent_destroy": false,
            },
            {
                "address": "web[0]", "type": "server", "id": "srv-7",
                "properties": {"image": "nginx", "ports": [80, 443], "env": {"A": "1"}},
                "attributes": {"address": "10.0.0.4", "pid": 4242, "started_at": NOW - 60},
                "tags": {"cairn:deployment": "shop-dev", "team": "web"},
                "depends_on": ["net", "db"], "data_holding": false, "prevent_destroy": false,
            },
        ])
    }

    #[test]
    fn history_table() {
        insta::assert_snapshot!(render(&runs(), Format::Table, NOW));
    }

    #[test]
    fn list_table() {
        let rows = json!([
            {"address": "db", "type": "database", "id": "db-1"},
            {"address": "web[0]", "type": "server", "id": "srv-7"},
        ]);
        insta::assert_snapshot!(render(&rows, Format::Table, NOW));
    }

    #[test]
    fn show_table() {
        insta::assert_snapshot!(render(&resources(), Format::Table, NOW));
    }

    #[test]
    fn show_one_table() {
        insta::assert_snapshot!(render(&resources()[1], Format::Table, NOW));
    }

    #[test]
    fn lock_show_table() {
        let lease = json!({
            "deployment": "shop-dev", "locked": true, "broken": false,
            "owner": "alice@laptop (pid 4242)", "operation": "up", "run_id": "r2",
            "acquired_at": NOW - 32, "expires_at": NOW + 28,
        });
        insta::assert_snapshot!(render(&lease, Format::Table, NOW));
        let lapsed = json!({"deployment": "shop-dev", "locked": true, "expires_at": NOW - 28});
        assert!(render(&lapsed, Format::Table, NOW).contains("2026-12-04 23:24:11Z (28 s ago)"));
    }

    #[test]
    fn machine_formats_keep_epochs_and_milliseconds() {
        let v = json!([{"started_at": NOW, "duration_ms": 1234, "changes": {"create": 1}}]);
        assert_eq!(
            render(&v, Format::Tsv, NOW),
            format!("{NOW}\t1234\t{{\"create\":1}}\n")
        );
        assert!(render(&v, Format::Json, NOW).contains(&format!("\"started_at\": {NOW}")));
        assert!(render(&v, Format::Yaml, NOW).contains(&format!("started_at: {NOW}")));
        let table = render(&v, Format::Table, NOW);
        assert!(table.contains("2026-12-04 23:24:39Z"), "{table}");
        assert!(
            table.contains("1.2 s") && table.contains("1 created"),
            "{table}"
        );
        assert!(!table.contains(&NOW.to_string()), "{table}");
    }
}
