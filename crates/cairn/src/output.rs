//! Output formats and `--query`, implemented once for every command.
//!
//! A command returns a JSON value (its serde result); this module applies
//! the JMESPath query and renders table, json, yaml, tsv or nothing. Tables
//! are derived from the JSON, as the az CLI does, so no command renders its
//! own.

use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, LineStyle, Table, TableStyle};
use serde_json::Value as J;

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

/// Renders a value in a format; `None` prints nothing.
pub fn render(value: &J, format: Format) -> String {
    match format {
        Format::None => String::new(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml::to_string(value).unwrap_or_default(),
        Format::Tsv => tsv(value),
        Format::Table => table(value),
    }
}

/// Applies the query and prints the result on stdout.
pub fn emit(value: J, global: &GlobalArgs) -> Result<(), CliError> {
    let value = apply_query(value, global.query.as_deref())?;
    let text = render(&value, default_format(global.output));
    let mut out = std::io::stdout().lock();
    // A closed pipe (`cairn ... | head`) is not an error.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Failure(e.into())),
        _ => Ok(()),
    }
}

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

fn table(value: &J) -> String {
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
                t.add_row(columns.iter().map(|c| scalar(i.get(c).unwrap_or(&J::Null))));
            }
            t.to_string()
        }
        J::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join("\n"),
        J::Object(m) => {
            let mut t = new_table();
            t.set_header(vec!["Key", "Value"]);
            for (k, v) in m {
                t.add_row(vec![k.clone(), scalar(v)]);
            }
            t.to_string()
        }
        other => scalar(other),
    };
    if text.is_empty() { text } else { text + "\n" }
}

/// `instance_count` → `Instance Count`, as az prints column names.
fn header(key: &str) -> String {
    key.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
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

    #[test]
    fn every_format_renders() {
        let v = json!([{"name": "net", "count": 1}, {"name": "web", "count": 2}]);
        assert_eq!(render(&v, Format::Tsv), "net\t1\nweb\t2\n");
        assert!(render(&v, Format::Table).contains("Name"));
        assert_eq!(render(&v, Format::None), "");
        assert!(render(&v, Format::Yaml).contains("- name: net"));
        assert!(render(&json!("zavj67f3en4hc"), Format::Table) == "zavj67f3en4hc\n");
    }
}
