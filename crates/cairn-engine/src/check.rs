//! Checking evaluated property values against a type's schema, with each
//! problem reported at the most specific node, and filling in defaults.

use indexmap::IndexMap;

use cairn_template::Span;
use cairn_template::Value;
use cairn_template::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use cairn_template::node::Node;

use crate::schema::{
    Prop, PropType, ResourceSchema, parse_document as parse_document_text, parse_duration_ms,
};

/// Problems visible without evaluating anything: unknown and missing keys.
pub fn check_keys(
    schema: &ResourceSchema,
    resource: &str,
    props: Option<&Node>,
    at: Span,
    d: &mut Diagnostics,
) {
    let entries = props.and_then(Node::as_map).unwrap_or_default();
    check_object_keys(
        schema.properties,
        &format!("resource `{resource}` ({})", schema.kind),
        entries,
        at,
        d,
    );
}

fn check_object_keys(
    fields: &[Prop],
    within: &str,
    entries: &[(Node, Node)],
    at: Span,
    d: &mut Diagnostics,
) {
    let names: Vec<&str> = fields.iter().map(|p| p.name).collect();
    for (k, _) in entries {
        let key = k.scalar_text();
        if !names.contains(&key.as_str()) {
            d.push(
                Diagnostic::new(
                    Code::UnknownProperty,
                    format!("unknown property `{key}` in {within}"),
                )
                .at(k.span, "not a property of this type")
                .maybe_help(did_you_mean(&key, &names)),
            );
        }
    }
    for p in fields.iter().filter(|p| p.required) {
        if !entries.iter().any(|(k, _)| k.key_str() == Some(p.name)) {
            d.push(
                Diagnostic::new(
                    Code::MissingProperty,
                    format!("missing required property `{}` in {within}", p.name),
                )
                .at(at, format!("`{}` is required here", p.name))
                .help(format!("`{}` takes {}", p.name, p.ty.describe())),
            );
        }
    }
}

/// Checks one value against a type. `node` is where the value was written
/// (for a value computed by one expression, that expression's node).
pub fn check_value(ty: &PropType, path: &str, v: &Value, node: &Node, d: &mut Diagnostics) {
    let v = v.unmarked();
    if matches!(v, Value::Unknown | Value::Null) {
        return;
    }
    let bad = |d: &mut Diagnostics, detail: Option<String>| {
        d.push(
            Diagnostic::new(
                Code::Type,
                format!(
                    "`{path}` expects {}, found {}",
                    ty.describe(),
                    v.type_name()
                ),
            )
            .at(node.span, format!("expected {}", ty.describe()))
            .maybe_help(detail),
        );
    };
    match ty {
        PropType::Any => {}
        PropType::String | PropType::Ref => {
            if !matches!(v, Value::Str(_)) {
                bad(d, None);
            }
        }
        PropType::Int => {
            if !matches!(v, Value::Int(_)) {
                bad(d, None);
            }
        }
        PropType::Number => {
            if !matches!(v, Value::Int(_) | Value::Float(_)) {
                bad(d, None);
            }
        }
        PropType::Bool => {
            if !matches!(v, Value::Bool(_)) {
                bad(d, None);
            }
        }
        PropType::Duration => match v {
            Value::Int(i) if *i >= 0 => {}
            Value::Str(s) if parse_duration_ms(s).is_some() => {}
            _ => bad(d, None),
        },
        PropType::Cidr => {
            match v {
                Value::Str(s) => {
                    if let Err(e) = s.parse::<ipnet::IpNet>() {
                        d.push(
                        Diagnostic::new(Code::Type, format!("`{path}` is not a valid network: `{s}`"))
                            .at(node.span, format!("{e}"))
                            .help("write a network in CIDR notation such as `10.0.0.0/16` or `fd00::/64`"),
                    );
                    }
                }
                _ => bad(d, None),
            }
        }
        PropType::Enum(allowed) => match v {
            Value::Str(s) if allowed.contains(&s.as_str()) => {}
            Value::Str(s) => {
                d.push(
                    Diagnostic::new(Code::Type, format!("`{path}` does not accept `{s}`"))
                        .at(node.span, format!("expected {}", ty.describe()))
                        .maybe_help(did_you_mean(s, allowed)),
                );
            }
            _ => bad(d, None),
        },
        PropType::List(inner) => match v {
            Value::List(items) => {
                let children = node.as_seq().filter(|c| c.len() == items.len());
                for (i, item) in items.iter().enumerate() {
                    let child = children.map_or(node, |c| &c[i]);
                    check_value(inner, &format!("{path}[{i}]"), item, child, d);
                }
            }
            _ => bad(d, None),
        },
        PropType::Map(inner) => match v {
            Value::Map(m) => {
                for (k, item) in m {
                    let child = node.get(k).unwrap_or(node);
                    check_value(inner, &format!("{path}.{k}"), item, child, d);
                }
            }
            _ => bad(d, None),
        },
        PropType::Object(fields) => match v {
            Value::Map(m) => {
                if let Some(entries) = node.as_map() {
                    check_object_keys(fields, &format!("`{path}`"), entries, node.span, d);
                } else {
                    // Built by an expression: check keys against the value.
                    let names: Vec<&str> = fields.iter().map(|p| p.name).collect();
                    for k in m.keys().filter(|k| !names.contains(&k.as_str())) {
                        d.push(
                            Diagnostic::new(
                                Code::UnknownProperty,
                                format!("unknown property `{k}` in `{path}`"),
                            )
                            .at(node.span, "made by this expression")
                            .maybe_help(did_you_mean(k, &names)),
                        );
                    }
                }
                for f in fields.iter() {
                    if let Some(item) = m.get(f.name) {
                        let child = node.get(f.name).unwrap_or(node);
                        check_value(&f.ty, &format!("{path}.{}", f.name), item, child, d);
                    }
                }
            }
            _ => bad(d, None),
        },
        PropType::Either(a, b) => {
            let mut da = Diagnostics::default();
            check_value(a, path, v, node, &mut da);
            if da.is_empty() {
                return;
            }
            let mut db = Diagnostics::default();
            check_value(b, path, v, node, &mut db);
            if db.is_empty() {
                return;
            }
            // Report against the shape the value resembles.
            d.extend(if matches!(v, Value::Map(_)) { db } else { da });
        }
    }
}

/// Turns documents written as JSON text into the maps they spell (see
/// [`Prop::document`]), reporting text that is not a JSON object where it
/// was written. A document still unknown (built from a value known only
/// after apply) or a secret stays as it is.
pub fn parse_documents(
    schema: &ResourceSchema,
    props: &mut IndexMap<String, Value>,
    node: &Node,
    d: &mut Diagnostics,
) {
    for p in schema.properties.iter().filter(|p| p.document) {
        let Some(v) = props.get_mut(p.name) else {
            continue;
        };
        let at = node.get(p.name).unwrap_or(node);
        match (p.ty, v) {
            (PropType::Map(_), Value::Map(m)) => {
                for (k, item) in m.iter_mut() {
                    let child = at.get(k).unwrap_or(at);
                    parse_document(&format!("{}.{k}", p.name), item, child, d);
                }
            }
            (_, v) => parse_document(p.name, v, at, d),
        }
    }
}

fn parse_document(path: &str, v: &mut Value, node: &Node, d: &mut Diagnostics) {
    let Value::Str(text) = v else {
        return;
    };
    match parse_document_text(text) {
        Ok(j) => *v = Value::from_json(&j),
        Err(why) => d.push(
            Diagnostic::new(
                Code::Type,
                format!("`{path}` is not a policy document: {why}"),
            )
            .at(node.span, "expected a map, or its JSON text")
            .help("write the document as a YAML map, or as JSON text such as `'{\"Version\": \"2012-10-17\", \"Statement\": [...]}'`"),
        ),
    }
}

/// Properties with every schema property present: given, default, or null.
pub fn with_defaults(
    schema: &ResourceSchema,
    props: IndexMap<String, Value>,
) -> IndexMap<String, Value> {
    fill_object(schema.properties, props)
}

fn fill_object(fields: &[Prop], mut given: IndexMap<String, Value>) -> IndexMap<String, Value> {
    let mut out = IndexMap::with_capacity(fields.len());
    for f in fields {
        let v = match given.shift_remove(f.name) {
            Some(v) => fill(&f.ty, v),
            None => f
                .default_value()
                .map(|j| fill(&f.ty, Value::from_json(&j)))
                .unwrap_or(Value::Null),
        };
        out.insert(f.name.to_string(), v);
    }
    // Unknown keys were reported already; keep them so nothing is lost silently.
    out.extend(given);
    out
}

fn fill(ty: &PropType, v: Value) -> Value {
    match (ty, v) {
        (PropType::Object(fields), Value::Map(m)) => Value::Map(fill_object(fields, m)),
        (PropType::List(inner), Value::List(items)) => {
            Value::List(items.into_iter().map(|i| fill(inner, i)).collect())
        }
        (PropType::Either(_, obj @ PropType::Object(_)), Value::Map(m)) => fill(obj, Value::Map(m)),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::portable;
    use cairn_template::FileId;
    use cairn_template::node::parse_yaml;

    fn node(yaml: &str) -> Node {
        parse_yaml(FileId(0), yaml).unwrap()
    }

    #[test]
    fn policy_documents_as_text_become_maps() {
        let schema = crate::schema::lookup("aws.iam_role").unwrap();
        let n = node(concat!(
            "assume_role_policy: '{\"Version\": \"2012-10-17\", \"Statement\": []}'\n",
            "inline_policies:\n",
            "  s3: {Version: '2012-10-17', Statement: []}\n",
            "  logs: '{\"Version\": \"2012-10-17\"}'\n",
            "  bad: '[1, 2]'\n",
        ));
        let mut props = match Value::from_json(&serde_json::json!({
            "assume_role_policy": "{\"Version\": \"2012-10-17\", \"Statement\": []}",
            "inline_policies": {
                "s3": {"Version": "2012-10-17", "Statement": []},
                "logs": "{\"Version\": \"2012-10-17\"}",
                "bad": "[1, 2]",
            },
            "description": "{\"not\": \"a document\"}",
        })) {
            Value::Map(m) => m,
            _ => unreachable!(),
        };
        let mut d = Diagnostics::default();
        parse_documents(schema, &mut props, &n, &mut d);
        let json = Value::Map(props).to_json_revealed().unwrap();
        assert_eq!(json["assume_role_policy"]["Version"], "2012-10-17");
        assert_eq!(
            json["inline_policies"]["s3"]["Statement"],
            serde_json::json!([])
        );
        assert_eq!(
            json["inline_policies"]["logs"],
            serde_json::json!({"Version": "2012-10-17"})
        );
        // Not a document property: text stays text.
        assert!(json["description"].is_string());
        assert_eq!(d.len(), 1, "{d}");
        assert_eq!(
            d.0[0].message,
            "`inline_policies.bad` is not a policy document: a JSON list, not an object"
        );
        assert_eq!(
            d.0[0].span(),
            Some(n.get("inline_policies").unwrap().get("bad").unwrap().span)
        );
    }

    #[test]
    fn unknown_property_suggests_the_nearest_name() {
        let n = node("type: network\nproperties: {cidr: 10.0.0.0/16, internt: true}\n");
        let mut d = Diagnostics::default();
        check_keys(
            portable("network").unwrap(),
            "net",
            n.get("properties"),
            n.span,
            &mut d,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d.0[0].code, Code::UnknownProperty);
        assert_eq!(d.0[0].help.as_deref(), Some("did you mean `internet`?"));
    }

    #[test]
    fn wrong_types_and_bad_cidrs_are_reported() {
        let n = node("v: 10.0.0/33\n");
        let mut d = Diagnostics::default();
        check_value(
            &PropType::Cidr,
            "cidr",
            &Value::Str("10.0.0/33".into()),
            n.get("v").unwrap(),
            &mut d,
        );
        check_value(
            &PropType::Int,
            "port",
            &Value::Str("80".into()),
            n.get("v").unwrap(),
            &mut d,
        );
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn defaults_fill_nested_objects() {
        let schema = portable("load_balancer").unwrap();
        let props = IndexMap::from([(
            "health_check".to_string(),
            Value::Map(IndexMap::from([(
                "path".to_string(),
                Value::Str("/healthz".into()),
            )])),
        )]);
        let filled = with_defaults(schema, props);
        let Value::Map(hc) = &filled["health_check"] else {
            panic!()
        };
        assert_eq!(hc["path"], Value::Str("/healthz".into()));
        assert_eq!(hc["interval"], Value::Str("5s".into()));
        assert_eq!(
            filled["algorithm"],
            Value::Str("weighted_round_robin".into())
        );
    }
}
