//! Commands that read (or, for `lock break`, fix) the state only.

use std::path::PathBuf;

use serde_json::{Value as J, json};

use cairn_engine::store::StateStore;
use cairn_state::{KeySource, SqliteStore};
use cairn_template::loader::locate_deployment;

use crate::cli::{ENV_KEY_FILE, GlobalArgs, LockAction, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

/// Where the state lives: `--state`/`CAIRN_STATE`, else `.cairn/state.db`
/// beside the template.
pub fn state_path(
    global: &GlobalArgs,
    template_dir: &std::path::Path,
) -> Result<PathBuf, CliError> {
    match global.state.as_deref() {
        None => Ok(template_dir.join(".cairn").join("state.db")),
        Some(url) => {
            let path = url.strip_prefix("sqlite:").unwrap_or(url);
            if url.contains("://") {
                return Err(CliError::Usage(format!(
                    "--state {url}: only SQLite state (`sqlite:PATH` or a path) is supported"
                )));
            }
            Ok(PathBuf::from(path))
        }
    }
}

/// `CAIRN_KEY_FILE`, else `~/.config/cairn/key`.
pub fn key_source() -> Result<KeySource, CliError> {
    if let Some(p) = std::env::var_os(ENV_KEY_FILE) {
        return Ok(KeySource::File(PathBuf::from(p)));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        CliError::Usage(format!(
            "set HOME or {ENV_KEY_FILE} to say where the state key lives"
        ))
    })?;
    Ok(KeySource::File(
        PathBuf::from(home).join(".config/cairn/key"),
    ))
}

pub struct Opened {
    pub store: SqliteStore,
    pub deployment: String,
}

pub fn open(t: &TemplateArgs, global: &GlobalArgs) -> Result<Opened, CliError> {
    let (dir, deployment) = locate_deployment(&t.dir, t.env.as_deref())?;
    let path = state_path(global, &dir)?;
    let store = SqliteStore::open(&path, key_source()?).map_err(|e| {
        CliError::Failure(anyhow::anyhow!("opening the state {}: {e}", path.display()))
    })?;
    Ok(Opened {
        store,
        deployment: deployment.name,
    })
}

pub fn list(t: &TemplateArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let o = open(t, global)?;
    let rows: Vec<J> = o
        .store
        .resources(&o.deployment)
        .map_err(CliError::failure)?
        .iter()
        .map(|r| json!({"address": r.address, "type": r.kind, "id": r.id}))
        .collect();
    emit(J::Array(rows), global)?;
    Ok(Status::Success)
}

pub fn show(
    t: &TemplateArgs,
    address: Option<&str>,
    reveal: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let o = open(t, global)?;
    let mut rows = Vec::new();
    for r in o
        .store
        .resources(&o.deployment)
        .map_err(CliError::failure)?
    {
        if address.is_some_and(|a| a != r.address) {
            continue;
        }
        let mut properties = r.properties.clone();
        let mut attributes = r.attributes.clone();
        for (path, value) in &r.secrets {
            let (target, name) = match path.split_once('.') {
                Some(("properties", n)) => (&mut properties, n),
                Some(("attributes", n)) => (&mut attributes, n),
                _ => continue,
            };
            if let J::Object(m) = target {
                let shown = if reveal {
                    value.clone()
                } else {
                    J::String("(secret)".into())
                };
                m.insert(name.to_string(), shown);
            }
        }
        rows.push(json!({
            "address": r.address,
            "type": r.kind,
            "id": r.id,
            "properties": properties,
            "attributes": attributes,
            "tags": r.tags,
            "depends_on": r.depends_on,
            "data_holding": r.data_holding,
            "prevent_destroy": r.prevent_destroy,
        }));
    }
    if let Some(a) = address {
        let one = rows.pop().ok_or_else(|| {
            CliError::Usage(format!("{a} is not in the state of {}", o.deployment))
        })?;
        emit(one, global)?;
    } else {
        emit(J::Array(rows), global)?;
    }
    Ok(Status::Success)
}

pub fn output(
    t: &TemplateArgs,
    name: Option<&str>,
    reveal: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let o = open(t, global)?;
    let (public, secrets) = o.store.outputs(&o.deployment).map_err(CliError::failure)?;
    let mut all = match public {
        J::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if reveal {
        for (k, v) in secrets {
            all.insert(k, v);
        }
    }
    match name {
        None => emit(J::Object(all), global)?,
        Some(n) => {
            let v = all.remove(n).ok_or_else(|| {
                CliError::Usage(format!(
                    "no output `{n}` in {} (has it been deployed?)",
                    o.deployment
                ))
            })?;
            emit(v, global)?;
        }
    }
    Ok(Status::Success)
}

pub fn history(t: &TemplateArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let o = open(t, global)?;
    let rows: Vec<J> = o
        .store
        .runs(&o.deployment)
        .map_err(CliError::failure)?
        .iter()
        .map(|r| {
            let summary = r.plan.get("summary").cloned().unwrap_or(J::Null);
            json!({
                "serial": r.serial,
                "command": r.command,
                "who": format!("{}@{}", r.owner.user, r.owner.host),
                "started_at": r.started_at,
                "environment": r.environment,
                "outcome": r.outcome,
                "duration_ms": r.duration_ms,
                "changes": summary,
                "template_digest": r.template_digest.chars().take(12).collect::<String>(),
                "parameters": r.parameters,
            })
        })
        .collect();
    emit(J::Array(rows), global)?;
    Ok(Status::Success)
}

pub fn lock(action: &LockAction, global: &GlobalArgs) -> Result<Status, CliError> {
    let (t, breaking) = match action {
        LockAction::Show(t) => (t, false),
        LockAction::Break(t) => (t, true),
    };
    let o = open(t, global)?;
    let lease = if breaking {
        o.store
            .break_lease(&o.deployment)
            .map_err(CliError::failure)?
    } else {
        o.store.lease(&o.deployment).map_err(CliError::failure)?
    };
    let value = match lease {
        None => json!({"deployment": o.deployment, "locked": false}),
        Some(l) => json!({
            "deployment": o.deployment,
            "locked": !breaking,
            "broken": breaking,
            "owner": l.owner.to_string(),
            "operation": l.operation,
            "run_id": l.run_id,
            "acquired_at": l.acquired_at,
            "expires_at": l.expires_at,
        }),
    };
    emit(value, global)?;
    Ok(Status::Success)
}
