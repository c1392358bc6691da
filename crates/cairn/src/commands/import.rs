//! `cairn import TYPE ID --as NAME [--write]`: adopts a resource that exists
//! on the target into the state, and prints (or adds to the template) the
//! YAML that declares it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as J, json};

use cairn_engine::provider::ReadRequest;
use cairn_engine::schema::{ResourceSchema, lookup, target_of};
use cairn_engine::store::{ResourceRecord, RunRecord, StateStore};

use super::deploy::{now, owner, target};
use crate::cli::{GlobalArgs, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn run(
    t: &TemplateArgs,
    kind: &str,
    id: &str,
    name: &str,
    write: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let Some(schema) = lookup(kind) else {
        let mut kinds = cairn_engine::schema::portable_kinds();
        kinds.extend(cairn_engine::schema::target_kinds());
        return Err(CliError::Usage(format!(
            "`{kind}` is not a resource type; types: {}",
            kinds.join(", ")
        )));
    };
    if !valid_name(name) {
        return Err(CliError::Usage(format!(
            "--as {name}: a resource name is letters, digits and _, not starting with a digit"
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let value = rt.block_on(async {
        let tg = target(t, global).await?;
        if let Some(only) = target_of(schema.kind)
            && only != tg.target
        {
            return Err(CliError::Usage(format!(
                "`{}` exists only on the {only} target; this environment deploys to {}",
                schema.kind, tg.target
            )));
        }
        let run_id = format!("import-{}", std::process::id());
        tg.store
            .acquire_lease(
                &tg.deployment,
                &owner(),
                &run_id,
                "import",
                Duration::from_secs(30),
                now(),
            )
            .map_err(CliError::failure)?;
        let result = adopt(&tg, schema, id, name, write, t, &run_id).await;
        let _ = tg.store.release_lease(&tg.deployment, &run_id);
        result
    })?;
    emit(value, global)?;
    Ok(Status::Success)
}

async fn adopt(
    tg: &super::deploy::Target,
    schema: &'static ResourceSchema,
    id: &str,
    name: &str,
    write: bool,
    t: &TemplateArgs,
    run_id: &str,
) -> Result<J, CliError> {
    let known = tg
        .store
        .resources(&tg.deployment)
        .map_err(CliError::failure)?;
    if let Some(r) = known.iter().find(|r| r.address == name || r.id == id) {
        return Err(CliError::Usage(format!(
            "the state of {} already has {} ({}); import adopts what cairn does not manage yet",
            tg.deployment, r.address, r.id
        )));
    }
    let live = tg
        .provider
        .read(ReadRequest {
            deployment: tg.deployment.clone(),
            address: name.to_string(),
            kind: schema.kind.to_string(),
            id: id.to_string(),
        })
        .await
        .map_err(|e| CliError::failure(format!("reading {} {id}: {e}", schema.kind)))?
        .ok_or_else(|| {
            CliError::failure(format!(
                "the {} target has no {} with id {id}",
                tg.target, schema.kind
            ))
        })?;

    // Split what the target reports into the record's public and secret
    // parts, keeping only what the type declares.
    let mut properties = serde_json::Map::new();
    let mut secrets = BTreeMap::new();
    let mut declared = serde_json::Map::new();
    let mut withheld = Vec::new();
    for p in schema.properties {
        let v = live.properties.get(p.name).cloned().unwrap_or(J::Null);
        if p.sensitive {
            secrets.insert(format!("properties.{}", p.name), v);
            withheld.push(p.name);
            continue;
        }
        let default = p.default.and_then(|d| serde_json::from_str::<J>(d).ok());
        if !v.is_null() && Some(&v) != default.as_ref() {
            declared.insert(p.name.to_string(), v.clone());
        }
        properties.insert(p.name.to_string(), v);
    }
    let mut attributes = serde_json::Map::new();
    if let J::Object(a) = &live.attributes {
        for (k, v) in a {
            if schema.attribute(k).is_some_and(|x| x.sensitive) {
                secrets.insert(format!("attributes.{k}"), v.clone());
            } else {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    let record = ResourceRecord {
        address: name.to_string(),
        kind: schema.kind.to_string(),
        id: id.to_string(),
        properties: J::Object(properties),
        attributes: J::Object(attributes),
        secrets,
        // As the target has them: the next `up` adds this deployment's tags.
        tags: live.tags.clone(),
        depends_on: Vec::new(),
        data_holding: schema.data_holding,
        prevent_destroy: false,
        create_before_destroy: false,
    };
    let yaml = declaration(name, schema.kind, &declared, &withheld);

    let written = if write {
        Some(write_into_template(t, name, &yaml)?)
    } else {
        None
    };
    tg.store
        .put_resource(&tg.deployment, &record)
        .map_err(CliError::failure)?;
    record_in_history(tg, run_id, &record)?;
    eprintln!(
        "Imported {} {id} as {name}.{}",
        schema.kind,
        match &written {
            Some(path) => format!(" Added it to {}.", path.display()),
            None => " Add this to the template's resources (or import with --write):".into(),
        }
    );
    if written.is_none() {
        eprint!("{yaml}");
    }
    Ok(json!({
        "address": name,
        "type": schema.kind,
        "id": id,
        "yaml": yaml,
        "written": written.map(|p| p.display().to_string()),
    }))
}

/// The YAML that declares the resource, indented as a child of `resources:`
/// by the caller.
fn declaration(
    name: &str,
    kind: &str,
    declared: &serde_json::Map<String, J>,
    withheld: &[&str],
) -> String {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), J::String(kind.into()));
    if !declared.is_empty() {
        body.insert("properties".into(), J::Object(declared.clone()));
    }
    let doc = json!({ name: body });
    let mut text = cairn_template::yaml::to_string(&doc);
    for p in withheld {
        text.push_str(&format!(
            "# {name}.{p} is secret and was not written: set it from a secret parameter\n"
        ));
    }
    text
}

/// Adds the declaration under `resources:` in the template file, after
/// checking that the template still loads with it.
fn write_into_template(
    t: &TemplateArgs,
    name: &str,
    yaml: &str,
) -> Result<std::path::PathBuf, CliError> {
    let path = cairn_template::loader::template_path(&t.dir)
        .map_err(|d| CliError::Usage(d.message.clone()))?;
    if path.extension().is_some_and(|e| e == "json") {
        return Err(CliError::Usage(format!(
            "--write edits YAML templates and {} is JSON; import without --write and add the printed declaration by hand",
            path.display()
        )));
    }
    let original = std::fs::read_to_string(&path)
        .map_err(|e| CliError::failure(format!("reading {}: {e}", path.display())))?;
    let updated = insert_resource(&original, yaml);
    let mut opts = super::load_options(t);
    opts.template_text = Some(updated.clone());
    match cairn_template::load(&opts) {
        Ok(loaded) if loaded.template.resources.contains_key(name) => {}
        Ok(_) => {
            return Err(CliError::failure(format!(
                "could not place {name} under `resources:` in {}; add the printed declaration by hand",
                path.display()
            )));
        }
        Err(e) => {
            return Err(CliError::Template {
                sources: e.sources,
                diagnostics: e.diagnostics,
            });
        }
    }
    std::fs::write(&path, updated)
        .map_err(|e| CliError::failure(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// The template text with `declaration` added as the last child of the
/// top-level `resources:` block (which is created when missing).
fn insert_resource(template: &str, declaration: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let top_level = |l: &str| {
        !l.is_empty() && !l.starts_with(' ') && !l.starts_with('\t') && !l.starts_with('#')
    };
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("resources:") && top_level(l))
    else {
        let mut out = template.trim_end().to_string();
        out.push_str("\nresources:\n");
        out.push_str(&indent(declaration, 2));
        return out;
    };
    let rest = lines[start]["resources:".len()..].trim();
    let end = lines[start + 1..]
        .iter()
        .position(|l| top_level(l))
        .map_or(lines.len(), |i| start + 1 + i);
    let width = lines[start + 1..end]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(2, |l| l.len() - l.trim_start().len());
    // Insert after the block's last non-blank line.
    let mut at = end;
    while at > start + 1 && lines[at - 1].trim().is_empty() {
        at -= 1;
    }
    let mut out: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        // An inline map (`resources: {a: ...}`) cannot take a block child;
        // the caller's check of the result refuses it.
        if i == start && rest == "{}" {
            out.push("resources:".into());
        } else {
            out.push((*l).to_string());
        }
        if i + 1 == at {
            out.push(indent(declaration, width).trim_end().to_string());
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn indent(text: &str, width: usize) -> String {
    let pad = " ".repeat(width);
    text.lines()
        .map(|l| {
            // An empty line stays one: it may be part of a literal block.
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

fn record_in_history(
    tg: &super::deploy::Target,
    run_id: &str,
    record: &ResourceRecord,
) -> Result<(), CliError> {
    let at = now();
    let mut run = RunRecord {
        serial: 0,
        deployment: tg.deployment.clone(),
        run_id: run_id.to_string(),
        command: "import".into(),
        owner: owner(),
        environment: tg.environment.clone(),
        target: tg.target.clone(),
        started_at: at,
        finished_at: Some(at),
        template_digest: String::new(),
        template_files: BTreeMap::new(),
        parameters: json!({}),
        plan: json!({"import": {"address": record.address, "type": record.kind, "id": record.id}}),
        outcome: "succeeded".into(),
        duration_ms: Some(0),
        outputs: J::Null,
    };
    let serial = tg.store.begin_run(&run).map_err(CliError::failure)?;
    run.serial = serial;
    tg.store
        .finish_run(&tg.deployment, serial, &run)
        .map_err(CliError::failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &str = "db:\n  type: bucket\n";

    #[test]
    fn adds_under_resources_before_the_next_section() {
        let t = "cairn: 1\nresources:\n    net:\n      type: network\n\noutputs:\n  a: b\n";
        assert_eq!(
            insert_resource(t, DECL),
            "cairn: 1\nresources:\n    net:\n      type: network\n    db:\n      type: bucket\n\noutputs:\n  a: b\n"
        );
    }

    #[test]
    fn adds_at_the_end_and_creates_resources_when_missing() {
        assert_eq!(
            insert_resource("cairn: 1\nresources:\n  a:\n    type: bucket\n", DECL),
            "cairn: 1\nresources:\n  a:\n    type: bucket\n  db:\n    type: bucket\n"
        );
        assert_eq!(
            insert_resource("cairn: 1\n", DECL),
            "cairn: 1\nresources:\n  db:\n    type: bucket\n"
        );
        assert_eq!(
            insert_resource("cairn: 1\nresources: {}\n", DECL),
            "cairn: 1\nresources:\n  db:\n    type: bucket\n"
        );
    }

    #[test]
    fn a_declaration_reads_back_where_it_is_inserted() {
        let props =
            json!({"user_data": "#!/bin/sh\necho a\n\necho b\n", "port": "8080", "on": true});
        let decl = declaration("web", "server", props.as_object().unwrap(), &["password"]);
        assert_eq!(
            decl,
            "web:\n  type: server\n  properties:\n    user_data: |\n      #!/bin/sh\n      echo a\n\n      echo b\n    port: \"8080\"\n    \"on\": true\n# web.password is secret and was not written: set it from a secret parameter\n"
        );
        let text = insert_resource("cairn: 1\nresources:\n  a:\n    type: bucket\n", &decl);
        let doc = cairn_template::yaml::from_str(&text).unwrap();
        assert_eq!(doc["resources"]["web"]["properties"], props);
    }

    #[test]
    fn names_are_identifiers() {
        assert!(valid_name("assets_2"));
        assert!(!valid_name("2x"));
        assert!(!valid_name("web[0]"));
        assert!(!valid_name(""));
    }
}
