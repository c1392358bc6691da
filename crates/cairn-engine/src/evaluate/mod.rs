//! Evaluating a loaded template into the desired resources: references are
//! checked and become graph edges, declarations are evaluated in dependency
//! order, `count`/`for_each`/`condition` expand resources into instances, and
//! every instance is checked against its type's schema.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use indexmap::IndexMap;

use cairn_template::Value;
use cairn_template::diagnostic::{Code, Diagnostic, Diagnostics};
use cairn_template::expr::{Evaluator, Scope, to_mj};
use cairn_template::loader::Loaded;

use crate::check::check_keys;
use crate::graph::DeclKind;
use crate::schema::{Kind, ResourceSchema, target_of};

mod checks;
mod context;
mod desired;
mod instances;
mod references;

pub use desired::{
    Desired, DesiredResource, Instance, InstanceKey, KnownAttributes, LifecycleValues, Mode,
    NoAttributes, OutputValue,
};

use checks::{target_mismatch, unknown_type};
use context::{Ctx, Names};
use instances::evaluate_resource;
use references::{build_graph, resource_dependencies};

/// Evaluates a loaded template. Reports every error it can find.
pub fn evaluate(loaded: &Loaded, known: &dyn KnownAttributes) -> Result<Desired, Diagnostics> {
    let template = &loaded.template;
    let ev = Evaluator::new(&loaded.functions);
    let mut session = ev.session(&loaded.sources);
    let names = Arc::new(Names {
        params: to_mj(&Value::Map(loaded.params.values.clone())),
        deployment: to_mj(&loaded.deployment.to_value()),
        vars: RwLock::new(to_mj(&Value::Map(IndexMap::new()))),
        resources: RwLock::new(HashMap::new()),
    });
    let mut cx = Ctx {
        loaded,
        template,
        names,
        d: Diagnostics::default(),
    };

    // Types first: references to a resource of unknown type cannot be checked.
    let mut schemas: HashMap<&str, &'static ResourceSchema> = HashMap::new();
    for (name, r) in &template.resources {
        // The one place a type string becomes a kind.
        match Kind::parse(&r.kind.text).map(Kind::schema) {
            Some(s) => {
                if let Some(only) = target_of(s.kind)
                    && only != loaded.env.target
                {
                    cx.d.push(target_mismatch(r, only, &loaded.env));
                }
                schemas.insert(name, s);
                let at = r.properties.as_ref().map_or(r.name.span, |p| p.span);
                check_keys(s, name, r.properties.as_ref(), at, &mut cx.d);
            }
            None => cx.d.push(unknown_type(r)),
        }
    }

    let graph = build_graph(&mut cx, &mut session, &ev, &schemas);
    let order = match graph.order() {
        Ok(o) => o,
        Err(cycles) => {
            cx.d.0.extend(cycles);
            let mut d = cx.d;
            d.sort();
            return Err(d);
        }
    };
    if !cx.d.is_empty() {
        // Reference errors make evaluation errors that only repeat them.
        let mut d = cx.d;
        d.sort();
        return Err(d);
    }

    let mut variables = IndexMap::new();
    let mut resources = IndexMap::new();
    let mut outputs = IndexMap::new();
    let mut apps = IndexMap::new();
    let mut tests = IndexMap::new();
    let scope = Scope::value(cx.names.clone(), None, None);
    for id in &order {
        match id.kind {
            DeclKind::Variable => {
                let (_, node) = &template.variables[&id.name];
                let v = match session.eval(node, &scope) {
                    Ok(v) => v,
                    Err(e) => {
                        cx.d.push(e);
                        Value::Unknown
                    }
                };
                variables.insert(id.name.clone(), v);
                // Kept converted from our values, so unknown and secret marks survive.
                if let Ok(mut vars) = cx.names.vars.write() {
                    *vars = to_mj(&Value::Map(variables.clone()));
                }
            }
            DeclKind::Resource => {
                let decl = &template.resources[&id.name];
                let Some(schema) = schemas.get(id.name.as_str()) else {
                    continue;
                };
                let depends_on = resource_dependencies(&graph, id);
                let r = evaluate_resource(&mut cx, &mut session, decl, schema, depends_on, known);
                resources.insert(id.name.clone(), r);
            }
            DeclKind::Output => {
                let decl = &template.outputs[&id.name];
                match session.eval(&decl.value, &scope) {
                    Ok(value) => {
                        if value.is_sensitive() && !decl.secret {
                            cx.d.push(
                                Diagnostic::new(
                                    Code::SecretExposed,
                                    format!("output `{}` would print a secret", id.name),
                                )
                                .at(decl.value.span, "this value is derived from a secret")
                                .help(format!(
                                    "declare it as `{}: {{value: ..., secret: true}}` so that it is stored encrypted and shown only on request",
                                    id.name
                                )),
                            );
                        }
                        outputs.insert(
                            id.name.clone(),
                            OutputValue {
                                value,
                                secret: decl.secret,
                                description: decl.description.clone(),
                            },
                        );
                    }
                    Err(e) => cx.d.push(e),
                }
            }
            DeclKind::App => {
                let decl = &template.apps[&id.name];
                match session.eval(&decl.body, &scope) {
                    Ok(value) => {
                        apps.insert(id.name.clone(), value);
                    }
                    Err(e) => cx.d.push(e),
                }
            }
            DeclKind::Test => {
                let decl = &template.tests[&id.name];
                match session.eval(&decl.body, &scope) {
                    Ok(value) => {
                        tests.insert(id.name.clone(), value);
                    }
                    Err(e) => cx.d.push(e),
                }
            }
        }
    }
    // Keep the template's order for people; evaluation used the graph's.
    let mut ordered = IndexMap::new();
    for name in template.resources.keys() {
        if let Some(r) = resources.swap_remove(name) {
            ordered.insert(name.clone(), r);
        }
    }
    let Ctx { d, names, .. } = cx;
    d.into_result(Desired {
        deployment: loaded.deployment.clone(),
        variables,
        resources: ordered,
        outputs,
        apps,
        tests,
        graph,
        scope: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_template::{LoadOptions, load};

    const ROLE_TEMPLATE: &str = r#"cairn: 1
resources:
  app_role:
    type: aws.iam_role
    properties:
      assume_role_policy: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
      inline_policies:
        logs: {Version: "2012-10-17", Statement: []}
  app_profile:
    type: aws.iam_instance_profile
    properties:
      role: "{{ app_role.id }}"
"#;

    /// A template directory with `dev` (local) and `aws` environments.
    fn dir(template: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cairn-eval-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("env")).unwrap();
        std::fs::write(dir.join("cairn.yaml"), template).unwrap();
        std::fs::write(dir.join("env/dev.yaml"), "target: local\n").unwrap();
        std::fs::write(dir.join("env/aws.yaml"), "target: aws\nregion: us-east-1\n").unwrap();
        dir
    }

    fn evaluate_in(dir: &std::path::Path, env: &str) -> (Loaded, Result<Desired, Diagnostics>) {
        let mut opts = LoadOptions::new(dir);
        opts.env = Some(env.into());
        let loaded = load(&opts).unwrap_or_else(|e| panic!("{e}"));
        let r = evaluate(&loaded, &NoAttributes);
        (loaded, r)
    }

    /// Each diagnostic as `CODE LINE:COL: MESSAGE` (the file left out).
    fn code_line_col(loaded: &Loaded, d: &Diagnostics) -> Vec<String> {
        d.iter()
            .map(|d| {
                let at = loaded.sources.location(d.span().unwrap());
                let line_col = at.rsplitn(3, ':').take(2).collect::<Vec<_>>();
                format!(
                    "{} {}:{}: {}",
                    d.code.as_str(),
                    line_col[1],
                    line_col[0],
                    d.message
                )
            })
            .collect()
    }

    #[test]
    fn a_value_the_target_refuses_is_an_error_at_it_for_that_target_only() {
        let dir = dir(r#"cairn: 1
resources:
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      backend_port: 8080
      health_check:
        path: /healthz
        interval: 2s
        timeout: 1s
"#);
        let (_, local) = evaluate_in(&dir, "dev");
        assert!(local.is_ok(), "the local balancer takes 2s");
        let (loaded, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("ELB refuses a 2s interval");
        let found = code_line_col(&loaded, &d);
        assert_eq!(
            found,
            [
                "cairn::target_limit 10:19: health_check.interval 2s: ELB checks every 5s to 300s (environment `aws` deploys to aws)",
                "cairn::target_limit 11:18: health_check.timeout 1s: ELB wants 2s or more and less than the interval (2s) (environment `aws` deploys to aws)",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn typed_models_refuse_a_value_at_it_and_wait_for_unknown_ones() {
        let dir = dir(r#"cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.0.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.0.1.0/24}}
  web: {type: server, count: 2, properties: {image: debian-12, subnet: "{{ sub.id }}"}}
  lb:
    type: load_balancer
    properties:
      listen: {port: 70000}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
  zone: {type: dns_zone, properties: {name: example.test}}
  www:
    type: dns_record
    properties: {zone: "{{ zone.id }}", name: www, type: A, values: ["{{ lb.address }}"]}
"#);
        for env in ["dev", "aws"] {
            let (loaded, r) = evaluate_in(&dir, env);
            let d = r.expect_err("a port of 70000");
            let found = code_line_col(&loaded, &d);
            // The backends and the record's zone and value are not known
            // yet: nothing is said about them.
            assert_eq!(
                found,
                [
                    "cairn::constraint 9:22: load_balancer `listen.port`: 70000 is not a port number (1 to 65535)"
                ],
                "{env}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_target_specific_type_is_refused_by_another_target_at_its_type() {
        let dir = dir(ROLE_TEMPLATE);
        let (loaded, r) = evaluate_in(&dir, "dev");
        let d = r.expect_err("dev deploys to local: refused");
        let found: Vec<String> = d
            .iter()
            .map(|d| {
                format!(
                    "{} {}: {}",
                    d.code.as_str(),
                    loaded.sources.location(d.span().unwrap()),
                    d.message
                )
            })
            .collect();
        let file = loaded.sources.get(d.0[0].span().unwrap().file).name.clone();
        assert!(file.ends_with("cairn.yaml"), "{file}");
        assert_eq!(
            found,
            [
                format!(
                    "cairn::target_mismatch {file}:4:11: `aws.iam_role` deploys only to the aws target; environment `dev` deploys to local"
                ),
                format!(
                    "cairn::target_mismatch {file}:10:11: `aws.iam_instance_profile` deploys only to the aws target; environment `dev` deploys to local"
                ),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_aws_target_accepts_its_types_with_documents_as_maps() {
        let dir = dir(ROLE_TEMPLATE);
        let (_, r) = evaluate_in(&dir, "aws");
        let desired = r.unwrap_or_else(|d| panic!("{d}"));
        let role = &desired.resources["app_role"];
        assert_eq!(role.kind, "aws.iam_role");
        let p = Value::Map(role.instances[0].properties.clone())
            .to_json_revealed()
            .unwrap();
        // The JSON text became the map it spells; defaults are filled in.
        assert_eq!(
            p["assume_role_policy"]["Statement"][0]["Action"],
            "sts:AssumeRole"
        );
        assert_eq!(p["inline_policies"]["logs"]["Version"], "2012-10-17");
        assert_eq!(p["managed_policies"], serde_json::json!([]));
        assert_eq!(
            desired.resources["app_profile"].depends_on,
            ["app_role".to_string()]
        );
        assert!(role.instances[0].tags.contains_key("cairn:deployment"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn target_specific_types_have_their_property_checks() {
        let dir = dir(
            "cairn: 1\nresources:\n  r:\n    type: aws.iam_role\n    properties:\n      assume_role_policy: {}\n      managed_policy: []\n",
        );
        let (_, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["unknown property `managed_policy` in resource `r` (aws.iam_role)"],
            "{d}"
        );
        assert_eq!(
            d.0[0].help.as_deref(),
            Some("did you mean `managed_policies`?")
        );
        let _ = std::fs::remove_dir_all(&dir);

        let dir = self::dir(
            "cairn: 1\nresources:\n  r:\n    type: aws.iam_role\n    properties:\n      assume_role_policy: '[1]'\n      managed_policies: [7]\n",
        );
        let (loaded, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        let found: Vec<String> = d
            .iter()
            .map(|d| {
                format!(
                    "{}: {}",
                    loaded.sources.location(d.span().unwrap()),
                    d.message
                )
            })
            .collect();
        let file = loaded.sources.get(d.0[0].span().unwrap().file).name.clone();
        assert_eq!(
            found,
            [
                format!(
                    "{file}:6:27: `assume_role_policy` is not a policy document: a JSON list, not an object"
                ),
                format!("{file}:7:26: `managed_policies[0]` expects a string, found an integer"),
            ],
            "{d}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_target_types_are_suggested() {
        let dir = dir("cairn: 1\nresources:\n  r:\n    type: aws.iam_rol\n");
        let (_, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        assert_eq!(d.0[0].help.as_deref(), Some("did you mean `aws.iam_role`?"));
        let dir2 = self::dir("cairn: 1\nresources:\n  r:\n    type: aws.route_table\n");
        let (_, r) = evaluate_in(&dir2, "aws");
        let help = r.err().unwrap().0[0].help.clone().unwrap();
        assert!(
            help.starts_with("`aws.*` types are target-specific; this cairn knows `aws.iam_role`, `aws.iam_instance_profile`, and the portable types: network, "),
            "{help}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }
}
