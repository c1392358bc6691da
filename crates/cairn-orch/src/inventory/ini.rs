//! Ansible's INI inventory format (the `ini` inventory plugin):
//!
//! ```ini
//! bastion ansible_host=192.0.2.1      # before any section: ungrouped
//! [web]
//! web[01:03].example.test ansible_user=deploy
//! db.example.test:2222                # host:port
//! [web:vars]
//! http_port=8080
//! [prod:children]
//! web
//! ```
//!
//! As Ansible documents, a value on a host line is read as a Python
//! literal (`8080` a number, `True` a boolean, `'x'` a string, otherwise
//! the text), and a value in a `:vars` section is a string.

use serde_json::Value as J;

use super::error::InventoryError;
use super::host::Host;
use super::merge::Inventory;
use super::range;

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub fn parse(path: &str, text: &str) -> Result<Inventory, InventoryError> {
    let mut inv = Inventory::new();
    let mut section = Section::Hosts("ungrouped".into());
    for (n, line) in text.lines().enumerate() {
        let err = |col: usize, message: String| InventoryError::Syntax {
            path: path.to_string(),
            line: n + 1,
            column: line[..col.min(line.len())].chars().count() + 1,
            message,
        };
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if body.is_empty() || body.starts_with('#') || body.starts_with(';') {
            continue;
        }
        if let Some(header) = section_header(body) {
            let Some(inner) = header.strip_prefix('[').and_then(|b| b.strip_suffix(']')) else {
                return Err(err(
                    indent,
                    "a section header is `[name]`, `[name:vars]` or `[name:children]`".into(),
                ));
            };
            let inner = inner.trim();
            section = match inner.split_once(':') {
                None if !inner.is_empty() => Section::Hosts(inner.to_string()),
                Some((g, "vars")) if !g.is_empty() => Section::Vars(g.to_string()),
                Some((g, "children")) if !g.is_empty() => Section::Children(g.to_string()),
                Some((_, kind)) if !kind.is_empty() && kind != "vars" && kind != "children" => {
                    return Err(err(
                        indent,
                        format!("unknown section kind `:{kind}` (expected `:vars` or `:children`)"),
                    ));
                }
                _ => return Err(err(indent, "a section needs a group name".into())),
            };
            inv.group_mut(match &section {
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => g,
            });
            continue;
        }
        match &section {
            Section::Vars(g) => {
                let Some((k, v)) = body.split_once('=') else {
                    return Err(err(
                        indent,
                        "expected key=value in a `:vars` section".into(),
                    ));
                };
                let k = k.trim();
                if k.is_empty() {
                    return Err(err(indent, "a variable needs a name before `=`".into()));
                }
                inv.group_mut(g)
                    .vars
                    .insert(k.to_string(), J::String(unquote(v.trim()).to_string()));
            }
            Section::Children(g) => {
                let child = body.split_whitespace().next().unwrap_or(body);
                if child == g {
                    return Err(err(indent, format!("group `{g}` cannot be its own child")));
                }
                inv.add_child(g, child);
            }
            Section::Hosts(g) => {
                let tokens = tokenize(line).map_err(|(col, m)| err(col, m))?;
                let Some(&(first_at, ref first)) = tokens.first() else {
                    continue;
                };
                let (pattern, port) = host_port(first);
                let names = range::expand(pattern).map_err(|m| err(first_at, m))?;
                let mut vars = Vec::new();
                for (at, tok) in &tokens[1..] {
                    let Some((k, v)) = tok.split_once('=') else {
                        return Err(err(
                            *at,
                            format!("expected key=value after the host name, found `{tok}`"),
                        ));
                    };
                    if k.is_empty() {
                        return Err(err(*at, "a variable needs a name before `=`".into()));
                    }
                    vars.push((*at, k.to_string(), literal(v)));
                }
                for name in names {
                    let mut h = Host::new(name);
                    if g != "ungrouped" {
                        h.groups.push(g.clone());
                    }
                    if let Some(p) = port {
                        h.port = Some(p);
                    }
                    for (at, k, v) in &vars {
                        h.set_var(k, v.clone()).map_err(|m| err(*at, m))?;
                    }
                    h.sources.push(path.to_string());
                    inv.add_host(h);
                }
            }
        }
    }
    Ok(inv)
}

/// `[web]` (a comment may follow) is a section header; a line starting
/// with `[` that goes on after its last `]` is a host range
/// (`[01:03].example.test`).
fn section_header(body: &str) -> Option<&str> {
    if !body.starts_with('[') {
        return None;
    }
    let header = body[..body.find(['#', ';']).unwrap_or(body.len())].trim_end();
    (header.ends_with(']') || !header.contains(']')).then_some(header)
}

/// `host:port` when what follows the only `:` is a number (an IPv6 address
/// has several).
fn host_port(token: &str) -> (&str, Option<u16>) {
    match token.split_once(':') {
        Some((h, p)) if !p.contains(':') && !h.is_empty() => match p.parse::<u16>() {
            Ok(port) => (h, Some(port)),
            Err(_) => (token, None),
        },
        _ => (token, None),
    }
}

/// Shell-like words with their byte offsets: quotes group, `#` at a word's
/// start begins a comment.
fn tokenize(line: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' || c == ';' {
            break;
        }
        let start = i;
        let mut word = String::new();
        while let Some(&(j, c)) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' || c == '\'' {
                // Quotes stay in the word: `literal` reads them.
                word.push(c);
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    word.push(q);
                    if q == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err((j, format!("unclosed {c}")));
                }
            } else {
                word.push(c);
            }
        }
        out.push((start, word));
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// A host-line value as Python's `ast.literal_eval` would read it, else
/// the text.
fn literal(v: &str) -> J {
    match v {
        "True" => return J::Bool(true),
        "False" => return J::Bool(false),
        "None" => return J::Null,
        _ => {}
    }
    if let Ok(n) = v.parse::<i64>() {
        return J::from(n);
    }
    if v.contains(['.', 'e', 'E'])
        && let Ok(f) = v.parse::<f64>()
        && f.is_finite()
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-')
    {
        return J::from(f);
    }
    let unq = unquote(v);
    if unq.len() != v.len() {
        return J::String(unq.to_string());
    }
    if (v.starts_with('[') || v.starts_with('{'))
        && let Ok(j) = serde_json::from_str::<J>(v)
    {
        return j;
    }
    J::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::literal;

    #[test]
    fn literals() {
        assert_eq!(literal("8080"), json!(8080));
        assert_eq!(literal("1.5"), json!(1.5));
        assert_eq!(literal("True"), json!(true));
        assert_eq!(literal("None"), json!(null));
        assert_eq!(literal("'a b'"), json!("a b"));
        assert_eq!(literal("yes"), json!("yes"));
        assert_eq!(literal("[1,2]"), json!([1, 2]));
        assert_eq!(literal("1.2.3.4"), json!("1.2.3.4"));
        assert_eq!(literal("inf"), json!("inf"));
    }
}
