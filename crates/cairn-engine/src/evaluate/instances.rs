//! One resource evaluated into its instances (`count`, `for_each`,
//! `condition`), each checked, then published for the expressions after it.

use indexmap::IndexMap;
use minijinja::value::Value as Mj;

use cairn_template::diagnostic::{Code, Diagnostic, did_you_mean};
use cairn_template::expr::{Scope, Session, to_mj};
use cairn_template::model::ResourceDecl;
use cairn_template::node::Node;
use cairn_template::{Span, Value};

use crate::check::{check_value, parse_documents, with_defaults};
use crate::schema::{Kind, ResourceSchema};

use super::checks::{check_firewall_rules, check_target_limits, check_typed};
use super::context::Ctx;
use super::desired::{
    DesiredResource, Instance, InstanceKey, KnownAttributes, LifecycleValues, Mode,
};

/// Evaluates a value that must be known now (count, for_each, condition).
pub(super) fn eval_known<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    node: &'a Node,
    scope: &Mj,
    what: &str,
) -> Option<Value> {
    match session.eval(node, scope) {
        Ok(v) if !v.is_known() => {
            cx.d.push(
                Diagnostic::new(Code::UnknownAtPlan, format!("{what} depends on values known only after apply"))
                    .at(node.span, "cannot be decided before apply")
                    .help("use parameters or variables here, not attributes that a target assigns (ids, addresses)"),
            );
            None
        }
        Ok(v) if v.is_sensitive() && what != "`condition`" => {
            cx.d.push(
                Diagnostic::new(Code::SecretExposed, format!("{what} would print a secret"))
                    .at(node.span, "derived from a secret")
                    .help("instance keys and counts are shown in plans and state; do not derive them from secrets"),
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            cx.d.push(e);
            None
        }
    }
}

pub(super) fn evaluate_resource<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    decl: &'a ResourceDecl,
    schema: &'static ResourceSchema,
    depends_on: Vec<String>,
    known: &dyn KnownAttributes,
) -> DesiredResource {
    let name = decl.name.text.as_str();
    let scope = Scope::value(cx.names.clone(), None, None);
    let mode = if decl.count.is_some() {
        Mode::Count
    } else if decl.for_each.is_some() {
        Mode::ForEach
    } else {
        Mode::Single
    };
    let mut out = DesiredResource {
        name: name.to_string(),
        kind: Kind::of(schema),
        mode,
        data_holding: schema.data_holding,
        depends_on,
        instances: Vec::new(),
    };
    let enabled = match &decl.condition {
        None => true,
        Some(node) => match eval_known(cx, session, node, &scope, "`condition`") {
            Some(v) => match v.as_bool() {
                Some(b) => b,
                None => {
                    cx.d.push(
                        Diagnostic::new(
                            Code::Type,
                            format!("`condition` must be true or false, found {}", v.type_name()),
                        )
                        .at(node.span, "expected true or false"),
                    );
                    false
                }
            },
            None => false,
        },
    };
    // (key, address, index value, each value)
    let mut keys: Vec<(InstanceKey, String, Option<Mj>, Option<Mj>)> = Vec::new();
    if enabled {
        if let Some(node) = &decl.count {
            if let Some(v) = eval_known(cx, session, node, &scope, "`count`") {
                match v.unmarked() {
                    Value::Int(n) if *n >= 0 => {
                        for i in 0..*n {
                            keys.push((
                                InstanceKey::Index(i),
                                format!("{name}[{i}]"),
                                Some(Mj::from(i)),
                                None,
                            ));
                        }
                    }
                    other => cx.d.push(
                        Diagnostic::new(
                            Code::Count,
                            format!(
                                "`count` must be a non-negative integer, found {}",
                                describe(other)
                            ),
                        )
                        .at(node.span, "expected 0, 1, 2, ...")
                        .help("for one instance per key of a map or list, use `for_each`"),
                    ),
                }
            }
        } else if let Some(node) = &decl.for_each {
            if let Some(v) = eval_known(cx, session, node, &scope, "`for_each`") {
                match v.unmarked() {
                    Value::Map(m) => {
                        for (k, val) in m {
                            let each = Mj::from_pairs([
                                ("key", Mj::from(k.as_str())),
                                ("value", to_mj(val)),
                            ]);
                            keys.push((
                                InstanceKey::Key(k.clone()),
                                format!("{name}[{k:?}]"),
                                None,
                                Some(each),
                            ));
                        }
                    }
                    Value::List(items) if items.iter().all(|i| matches!(i, Value::Str(_))) => {
                        let mut seen = std::collections::HashSet::new();
                        for item in items {
                            let k = item.as_str().unwrap_or_default().to_string();
                            if !seen.insert(k.clone()) {
                                continue;
                            }
                            let each = Mj::from_pairs([
                                ("key", Mj::from(k.as_str())),
                                ("value", Mj::from(k.as_str())),
                            ]);
                            keys.push((
                                InstanceKey::Key(k.clone()),
                                format!("{name}[{k:?}]"),
                                None,
                                Some(each),
                            ));
                        }
                    }
                    other => cx.d.push(
                        Diagnostic::new(
                            Code::ForEach,
                            format!(
                                "`for_each` needs a map or a list of strings, found {}",
                                describe(other)
                            ),
                        )
                        .at(node.span, "not a collection of keys")
                        .help("for N alike instances, use `count`"),
                    ),
                }
            }
        } else {
            keys.push((InstanceKey::None, name.to_string(), None, None));
        }
    }

    let props_node: &'a Node = decl.properties.as_ref().unwrap_or(&EMPTY_MAP);
    for (key, address, index, each) in keys {
        let scope = Scope::value(cx.names.clone(), index, each);
        let props = match session.eval(props_node, &scope) {
            Ok(Value::Map(m)) => m,
            Ok(_) => IndexMap::new(),
            Err(e) => {
                cx.d.push(e);
                continue;
            }
        };
        let before = cx.d.len();
        for p in schema.properties {
            if let Some(v) = props.get(p.name) {
                let node = props_node.get(p.name).unwrap_or(props_node);
                check_value(&p.ty, p.name, v, node, &mut cx.d);
            }
        }
        let shapes_fit = cx.d.len() == before;
        check_target_limits(&cx.loaded.env, schema.kind, &props, props_node, &mut cx.d);
        check_firewall_rules(schema.kind, &props, props_node, &mut cx.d);
        let mut props = props;
        parse_documents(schema, &mut props, props_node, &mut cx.d);
        let mut properties = with_defaults(schema, props);
        if shapes_fit {
            // What the shapes allow but the kind's model does not (a port
            // of 0, a duration of `2x`): the same read the targets make.
            check_typed(Kind::of(schema), &properties, props_node, &mut cx.d);
        }
        let mut tags: IndexMap<String, Value> = cx
            .loaded
            .env
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect();
        for (node, value) in [
            (
                decl.tags.as_ref(),
                decl.tags.as_ref().map(|n| session.eval(n, &scope)),
            ),
            (
                props_node.get("tags"),
                properties.shift_remove("tags").map(Ok),
            ),
        ] {
            match value {
                Some(Ok(Value::Map(m))) => {
                    if m.values().any(Value::is_sensitive)
                        && let Some(n) = node
                    {
                        cx.d.push(
                                Diagnostic::new(Code::SecretExposed, "tags would print a secret")
                                    .at(n.span, "derived from a secret")
                                    .help("tags are visible to anyone who can list resources; keep secrets out of them"),
                            );
                    }
                    tags.extend(m);
                }
                Some(Ok(Value::Null)) | None => {}
                Some(Ok(other)) => {
                    if let Some(n) = node {
                        cx.d.push(
                            Diagnostic::new(
                                Code::Type,
                                format!("`tags` must be a map, found {}", other.type_name()),
                            )
                            .at(n.span, "expected a map of strings"),
                        );
                    }
                }
                Some(Err(e)) => cx.d.push(e),
            }
        }
        tags.insert(
            "cairn:deployment".into(),
            Value::Str(cx.loaded.deployment.name.clone()),
        );
        tags.insert("cairn:resource".into(), Value::Str(address.clone()));
        if !schema.taggable {
            tags.clear();
        }
        let lifecycle = evaluate_lifecycle(cx, session, decl, schema, &scope);
        let mut target = IndexMap::new();
        for (t, node) in &decl.target_blocks {
            match session.eval(node, &scope) {
                Ok(v) => {
                    target.insert(t.clone(), v);
                }
                Err(e) => cx.d.push(e),
            }
        }
        out.instances.push(Instance {
            address,
            resource: name.to_string(),
            kind: Kind::of(schema),
            key,
            properties,
            tags,
            lifecycle,
            target,
        });
    }
    publish(cx, &out, schema, known);
    out
}

static EMPTY_MAP: Node = Node {
    kind: cairn_template::node::NodeKind::Map(Vec::new()),
    span: Span {
        file: cairn_template::FileId(0),
        start: 0,
        end: 0,
    },
};

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => format!("`{i}`"),
        Value::Str(s) => format!("the string `{s}`"),
        other => other.type_name().to_string(),
    }
}

pub(super) fn evaluate_lifecycle<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    decl: &'a ResourceDecl,
    schema: &ResourceSchema,
    scope: &Mj,
) -> LifecycleValues {
    let mut lc = LifecycleValues::default();
    for (node, slot, what) in [
        (
            &decl.lifecycle.prevent_destroy,
            &mut lc.prevent_destroy,
            "`prevent_destroy`",
        ),
        (
            &decl.lifecycle.create_before_destroy,
            &mut lc.create_before_destroy,
            "`create_before_destroy`",
        ),
    ] {
        if let Some(node) = node
            && let Some(v) = eval_known(cx, session, node, scope, what)
        {
            match v.as_bool() {
                Some(b) => *slot = b,
                None => cx.d.push(
                    Diagnostic::new(
                        Code::Type,
                        format!("{what} must be true or false, found {}", v.type_name()),
                    )
                    .at(node.span, "expected true or false"),
                ),
            }
        }
    }
    if let Some(node) = &decl.lifecycle.ignore_changes
        && let Some(v) = eval_known(cx, session, node, scope, "`ignore_changes`")
    {
        let names = schema.property_names();
        match v.unmarked() {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = node.as_seq().and_then(|s| s.get(i)).unwrap_or(node);
                    match item.as_str() {
                        Some(p) if names.contains(&p) || p == "tags" => {
                            lc.ignore_changes.push(p.to_string())
                        }
                        Some(p) => cx.d.push(
                            Diagnostic::new(
                                Code::UnknownProperty,
                                format!("`ignore_changes` names an unknown property `{p}`"),
                            )
                            .at(at.span, "not a property of this type")
                            .maybe_help(did_you_mean(p, &names)),
                        ),
                        None => cx.d.push(
                            Diagnostic::new(Code::Type, "`ignore_changes` lists property names")
                                .at(at.span, "expected a property name"),
                        ),
                    }
                }
            }
            other => cx.d.push(
                Diagnostic::new(
                    Code::Type,
                    format!(
                        "`ignore_changes` must be a list of property names, found {}",
                        other.type_name()
                    ),
                )
                .at(node.span, "expected a list"),
            ),
        }
    }
    lc
}

/// Makes a resource's instances visible to later expressions: properties,
/// tags and computed attributes (unknown until the target reports them).
pub(super) fn publish(
    cx: &Ctx<'_>,
    r: &DesiredResource,
    schema: &ResourceSchema,
    known: &dyn KnownAttributes,
) {
    let object = |i: &Instance| -> Value {
        let mut m = i.properties.clone();
        m.insert("tags".into(), Value::Map(i.tags.clone()));
        let attrs = known.attributes(&i.address);
        for a in schema.attributes {
            let v = attrs
                .as_ref()
                .and_then(|k| k.get(a.name).cloned())
                .unwrap_or(Value::Unknown);
            let v = if a.sensitive {
                Value::Sensitive(Box::new(v))
            } else {
                v
            };
            m.insert(a.name.to_string(), v);
        }
        Value::Map(m)
    };
    let value = match r.mode {
        Mode::Single => r.instances.first().map(object).unwrap_or(Value::Null),
        Mode::Count => Value::List(r.instances.iter().map(object).collect()),
        Mode::ForEach => Value::Map(
            r.instances
                .iter()
                .map(|i| {
                    let k = match &i.key {
                        InstanceKey::Key(k) => k.clone(),
                        other => format!("{other:?}"),
                    };
                    (k, object(i))
                })
                .collect(),
        ),
    };
    if let Ok(mut res) = cx.names.resources.write() {
        res.insert(r.name.clone(), to_mj(&value));
    }
}
