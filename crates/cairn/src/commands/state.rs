//! Commands that read (or, for `lock break`, fix) the state only.

use std::path::PathBuf;

use serde_json::{Value as J, json};

use cairn_state::{KeySource, Location, Store};
use cairn_template::loader::locate_deployment;

use crate::cli::{ENV_KEY_FILE, GlobalArgs, LockAction, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

/// Where the state lives: `--state`/`CAIRN_STATE` (a path, `sqlite:PATH`
/// or `postgres://…`), else `.cairn/state.db` beside the template.
pub fn state_location(
    global: &GlobalArgs,
    template_dir: &std::path::Path,
) -> Result<Location, CliError> {
    match global.state.as_deref() {
        None => Ok(Location::Sqlite(
            template_dir.join(".cairn").join("state.db"),
        )),
        Some(url) => parse_location(url, "--state"),
    }
}

/// Parses a state URL and, for PostgreSQL, fills in what libpq would: the
/// user (`PGUSER`, else `USER`) and the password (`PGPASSWORD`, else the
/// first matching line of `PGPASSFILE` or `~/.pgpass`). The password is
/// never printed: the location shows without it.
pub fn parse_location(url: &str, flag: &str) -> Result<Location, CliError> {
    let mut location = Location::parse(url).map_err(|e| {
        // The message never holds the password; the URL shown is redacted.
        CliError::Usage(format!("{flag} {}: {e}", redacted(url)))
    })?;
    if let Location::Postgres(pg) = &mut location {
        if pg.user.is_none()
            && let Some(user) = std::env::var("PGUSER")
                .ok()
                .or_else(|| std::env::var("USER").ok())
                .filter(|u| !u.is_empty())
        {
            pg.set_user(user);
        }
        if pg.password().is_none() {
            let password = std::env::var("PGPASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .or_else(|| pgpass(pg));
            pg.set_password(password);
        }
    }
    Ok(location)
}

/// `scheme://user:PASSWORD@host` with the password replaced, for messages
/// about a URL that did not parse.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The password `~/.pgpass` (or `PGPASSFILE`) holds for `url`. As libpq,
/// a file that others may read is ignored, with a warning.
fn pgpass(url: &cairn_state::PgUrl) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = std::fs::metadata(&path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "ignoring the password file: others may read it (chmod 0600 it)"
            );
            return None;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(&path).ok()?;
    cairn_state::pg::pgpass_lookup(&text, url)
}

/// Opens the state at `location`, migrating its schema on first use.
pub fn open_location(location: &Location) -> Result<Box<dyn Store>, CliError> {
    location
        .open(key_source()?)
        .map_err(|e| CliError::Failure(anyhow::anyhow!("opening the state {location}: {e}")))
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
    pub store: Box<dyn Store>,
    pub deployment: String,
}

pub fn open(t: &TemplateArgs, global: &GlobalArgs) -> Result<Opened, CliError> {
    let (dir, deployment) = locate_deployment(&t.dir, t.env.as_deref())?;
    let store = open_location(&state_location(global, &dir)?)?;
    Ok(Opened {
        store,
        deployment: super::template_options::deployment_override().unwrap_or(deployment.name),
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

/// `cairn list --all-deployments`: every deployment in the state (the one
/// `--state` names, else the template's), with its resources and last run.
pub fn list_deployments(t: &TemplateArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let location = match global.state.as_deref() {
        Some(url) => parse_location(url, "--state")?,
        None => {
            let (dir, _) = locate_deployment(&t.dir, t.env.as_deref())?;
            state_location(global, &dir)?
        }
    };
    let store = open_location(&location)?;
    // One query: the last run of each deployment, not its whole history.
    let rows: Vec<J> = store
        .overview()
        .map_err(CliError::failure)?
        .into_iter()
        .map(|d| {
            let last = d.last_run.as_ref();
            json!({
                "deployment": d.name,
                "resources": d.resources,
                "last_run": last.map(|r| r.serial),
                "command": last.map(|r| r.command.clone()),
                "outcome": last.map(|r| r.outcome.clone()),
                "who": last.map(|r| format!("{}@{}", r.user, r.host)),
                "started_at": last.map(|r| r.started_at),
                "locked_by": d.locked_by.map(|o| o.to_string()),
            })
        })
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
