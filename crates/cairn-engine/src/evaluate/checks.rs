//! What the schema and the target decide about an instance: unknown types,
//! types of another target, typed properties, target limits, firewall rules.

use indexmap::IndexMap;

use cairn_template::Value;
use cairn_template::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean, suggest};
use cairn_template::model::ResourceDecl;
use cairn_template::node::Node;

use crate::schema::{Kind, portable_kinds, target_kinds};

pub(super) fn unknown_type(r: &ResourceDecl) -> Diagnostic {
    let kind = &r.kind.text;
    let mut d = Diagnostic::new(Code::UnknownType, format!("unknown resource type `{kind}`"))
        .at(r.kind.span, "not a resource type");
    if let Some((target, name)) = kind.split_once('.') {
        let specific = target_kinds();
        // Compared without the shared `aws.`, which alone would look close.
        let siblings: Vec<&str> = specific
            .iter()
            .filter_map(|k| k.strip_prefix(target)?.strip_prefix('.'))
            .collect();
        let near = suggest(name, siblings.iter().copied());
        let help = near.map(|n| format!("did you mean `{target}.{n}`?")).unwrap_or_else(|| {
            format!(
                "`{target}.*` types are target-specific; this cairn knows {}, and the portable types: {}",
                specific
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                portable_kinds().join(", ")
            )
        });
        d = d.help(help);
    } else {
        let mut kinds = portable_kinds();
        kinds.extend(target_kinds());
        d = d.maybe_help(did_you_mean(kind, &kinds));
    }
    d
}

/// Values of a `kind` resource that the environment's target refuses
/// ([`crate::schema::limits`]), each at the node it was written at (or
/// the closest one there is, for a default).
pub(super) fn check_target_limits(
    env: &cairn_template::environment::Environment,
    kind: &str,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    let json: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.to_json_revealed()?)))
        .collect();
    for b in crate::schema::limits::check(&env.target, kind, &serde_json::Value::Object(json)) {
        let node = node_at(props_node, &b.path);
        d.push(
            Diagnostic::new(
                Code::TargetLimit,
                format!(
                    "{} (environment `{}` deploys to {})",
                    b.message, env.name, env.target
                ),
            )
            .at(node.span, format!("the {} target refuses this", env.target)),
        );
    }
}

/// The node a breach's path leads to, or the deepest one on the way (a
/// default, or a list an expression made, has no node of its own).
pub(super) fn node_at<'n>(props_node: &'n Node, path: &[crate::schema::limits::Step]) -> &'n Node {
    use crate::schema::limits::Step;
    let mut node = props_node;
    for step in path {
        let next = match step {
            Step::Key(k) => node.get(k),
            Step::Index(i) => node.as_seq().and_then(|items| items.get(*i)),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

/// Reads the properties of a kind with a typed model
/// ([`crate::schema::typed`]) as every target will, and reports a fault at
/// the value it names. Values not known yet are left out and read again
/// once they are; a fault that may come from leaving them out is not one.
pub(super) fn check_typed(
    kind: Kind,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    use crate::schema::typed::{At, PropError};
    use crate::schema::{balancer, credentials, database, dns, network, server, storage};
    // Every kind is named: a new one must say how it is read, or this does
    // not compile. A firewall's rules are read rule by rule
    // (`schema::firewall::read_rule`, through `limits`); target-specific
    // kinds are checked by their target.
    let read: fn(&serde_json::Value) -> Result<(), PropError> = match kind {
        Kind::Network => |p| network::Network::read(p).map(|_| ()),
        Kind::Subnet => |p| network::Subnet::read(p).map(|_| ()),
        Kind::IpAddress => |p| network::IpAddress::read(p).map(|_| ()),
        Kind::Server => |p| server::Server::read(p).map(|_| ()),
        Kind::LoadBalancer => |p| balancer::LoadBalancer::read(p).map(|_| ()),
        Kind::DnsZone => |p| dns::DnsZone::read(p).map(|_| ()),
        Kind::DnsRecord => |p| dns::DnsRecord::read(p).map(|_| ()),
        Kind::Database => |p| database::Database::read(p).map(|_| ()),
        Kind::Bucket => |p| storage::Bucket::read(p).map(|_| ()),
        Kind::Volume => |p| storage::Volume::read(p).map(|_| ()),
        Kind::Snapshot => |p| storage::Snapshot::read(p).map(|_| ()),
        Kind::Image => |p| storage::Image::read(p).map(|_| ()),
        Kind::Secret => |p| credentials::Secret::read(p).map(|_| ()),
        Kind::KeyPair => |p| credentials::KeyPair::read(p).map(|_| ()),
        Kind::Firewall | Kind::AwsIamRole | Kind::AwsIamInstanceProfile => return,
    };
    let mut unknown = Vec::new();
    let json: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .filter_map(|(k, v)| match v.to_json_revealed() {
            Some(j) => Some((k.clone(), j)),
            None => {
                unknown.push(k.as_str());
                None
            }
        })
        .collect();
    let Err(e) = read(&serde_json::Value::Object(json)) else {
        return;
    };
    let about_unknown = match e.path.first() {
        Some(At::Key(k)) => unknown.contains(&k.as_str()),
        _ => !unknown.is_empty(),
    };
    if about_unknown {
        return;
    }
    let mut node = props_node;
    for step in &e.path {
        let next = match step {
            At::Key(k) => node.get(k),
            At::Index(i) => node.as_seq().and_then(|items| items.get(*i)),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    d.push(
        Diagnostic::new(
            Code::Constraint,
            format!("{} `{}`: {}", kind, e.path_text(), e.message),
        )
        .at(node.span, "this value"),
    );
}

/// A firewall's rules, checked the same way for every target
/// ([`crate::schema::firewall`]), each fault at its rule's key.
pub(super) fn check_firewall_rules(
    kind: &str,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    use crate::schema::firewall::{Direction, check};
    if kind != "firewall" {
        return;
    }
    let lists: Vec<(Direction, Option<serde_json::Value>)> = Direction::BOTH
        .iter()
        .map(|dir| {
            (
                *dir,
                props.get(dir.list()).and_then(Value::to_json_revealed),
            )
        })
        .collect();
    let lists: Vec<(Direction, Option<&serde_json::Value>)> =
        lists.iter().map(|(dir, v)| (*dir, v.as_ref())).collect();
    for b in check(&lists) {
        d.push(
            Diagnostic::new(Code::Constraint, b.message)
                .at(node_at(props_node, &b.path).span, "this rule"),
        );
    }
}

/// A target-specific type in an environment of another target: the
/// template can deploy only to that one.
pub(super) fn target_mismatch(
    r: &ResourceDecl,
    only: &str,
    env: &cairn_template::environment::Environment,
) -> Diagnostic {
    let kind = &r.kind.text;
    Diagnostic::new(
        Code::TargetMismatch,
        format!(
            "`{kind}` deploys only to the {only} target; environment `{}` deploys to {}",
            env.name, env.target
        ),
    )
    .at(r.kind.span, format!("a type of the {only} target"))
    .help(format!(
        "deploy this template with an environment whose `target: {only}`, or use portable types only"
    ))
}
