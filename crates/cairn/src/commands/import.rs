//! `cairn import TYPE ID --as NAME [--write]`: adopts a resource that exists
//! on the target into the state, and prints (or adds to the template) the
//! YAML that declares it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value as J, json};

use cairn_engine::import::{
    ImportError, ImportOptions, ImportOutcome, ImportRequest, Imported, import,
};

use super::deploy::{context, owner, target};
use crate::cli::{GlobalArgs, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

pub fn run(
    t: &TemplateArgs,
    kind: &str,
    id: &str,
    name: &str,
    write: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let req = ImportRequest::new(kind, id, name).map_err(|e| match e {
        ImportError::InvalidName(_) => CliError::Usage(format!("--as {e}")),
        other => import_error(other),
    })?;
    // Made in `accept`, before anything is recorded: the declaration and,
    // with --write, the template it went into (or why it could not).
    let mut declared = None;
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let outcome = rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, None)?;
        let opts = ImportOptions {
            owner: owner(),
            lease_ttl: Duration::from_secs(30),
            holder_gone: cairn_engine::holder::holder_is_gone,
            environment: tg.environment.clone(),
            target: tg.target.clone(),
        };
        let mut accept = |imported: &Imported| {
            let made = declare(t, name, imported, write);
            let ok = made.is_ok();
            declared = Some(made);
            ok
        };
        import(&cx, &req, &opts, &mut accept)
            .await
            .map_err(import_error)
    })?;
    let (yaml, written) = match (outcome, declared) {
        (ImportOutcome::Recorded { .. }, Some(Ok(made))) => made,
        (_, Some(Err(e))) => return Err(e),
        _ => return Err(CliError::failure("the import was declined")),
    };
    eprintln!(
        "Imported {} {id} as {name}.{}",
        req.kind(),
        match &written {
            Some(path) => format!(" Added it to {}.", path.display()),
            None => " Add this to the template's resources (or import with --write):".into(),
        }
    );
    if written.is_none() {
        eprint!("{yaml}");
    }
    emit(
        json!({
            "address": name,
            "type": req.kind(),
            "id": id,
            "yaml": yaml,
            "written": written.map(|p| p.display().to_string()),
        }),
        global,
    )?;
    Ok(Status::Success)
}

/// The declaration's YAML, and with `write` the template file it was added to.
fn declare(
    t: &TemplateArgs,
    name: &str,
    imported: &Imported,
    write: bool,
) -> Result<(String, Option<PathBuf>), CliError> {
    let yaml = declaration(
        name,
        &imported.record.kind,
        &imported.declared,
        &imported.withheld,
    );
    let written = if write {
        Some(write_into_template(t, name, &yaml)?)
    } else {
        None
    };
    Ok((yaml, written))
}

/// Refusals of what was asked are usage errors (exit 2); the rest failures.
fn import_error(e: ImportError) -> CliError {
    match e {
        ImportError::UnknownType(_)
        | ImportError::TargetMismatch { .. }
        | ImportError::InvalidName(_)
        | ImportError::AlreadyManaged { .. } => CliError::Usage(e.to_string()),
        other => CliError::failure(other),
    }
}

/// The YAML that declares the resource, indented as a child of `resources:`
/// by the caller.
fn declaration(
    name: &str,
    kind: &str,
    declared: &serde_json::Map<String, J>,
    withheld: &[String],
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
fn write_into_template(t: &TemplateArgs, name: &str, yaml: &str) -> Result<PathBuf, CliError> {
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
    let mut opts = super::template_options::load_options(t);
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
        let decl = declaration(
            "web",
            "server",
            props.as_object().unwrap(),
            &["password".to_string()],
        );
        assert_eq!(
            decl,
            "web:\n  type: server\n  properties:\n    user_data: |\n      #!/bin/sh\n      echo a\n\n      echo b\n    port: \"8080\"\n    \"on\": true\n# web.password is secret and was not written: set it from a secret parameter\n"
        );
        let text = insert_resource("cairn: 1\nresources:\n  a:\n    type: bucket\n", &decl);
        let doc = cairn_template::yaml::from_str(&text).unwrap();
        assert_eq!(doc["resources"]["web"]["properties"], props);
    }
}
