//! `cairn state apply TARGET FILE`: a state file applied to each host as
//! one job. Per host: its facts are read (when the file's Jinja may use
//! them), the file is rendered with them and the host's variables, then its
//! states run in order (cairn-orch's `state`).

use std::path::Path;

use cairn_orch::agent::JobKind;
use cairn_orch::module::{self, RunContext};
use cairn_orch::state::{RenderContext, StateErrorKind, StateFile};
use serde_json::{Map, Value as J, json};

use super::jobs::{JobSpec, job};
use crate::cli::{GlobalArgs, HostArgs};
use crate::report::{CliError, Status};

/// `cairn state apply TARGET FILE`.
pub fn state_apply(
    hosts: &HostArgs,
    file: &Path,
    vars: &[String],
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    apply(hosts, file, vars, global)
}

pub fn apply(
    hosts: &HostArgs,
    file: &Path,
    vars: &[String],
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the state file {}: {e}",
            file.display()
        ))
    })?;
    let user_vars = module::parse_kv(vars).map_err(|e| CliError::Usage(e.to_string()))?;
    // A file that cannot parse or names an unknown module fails here, with
    // its place, before any host is touched (rendered with no facts: a
    // fact that is missing renders empty, as Jinja's undefined does).
    let probe = RenderContext::new("(check)").vars(user_vars.clone());
    // A file whose Jinja needs a host's facts cannot render here; each host
    // then reports it at its place.
    match StateFile::parse(file, &source, &probe).and_then(|f| f.prepare(&module::load).map(drop)) {
        Err(e) if e.kind() != StateErrorKind::Render => return Err(CliError::Usage(render(&e))),
        _ => {}
    }
    let spec = JobSpec {
        kind: "state apply",
        function: file.display().to_string(),
        args: json!({"file": file.display().to_string(), "vars": user_vars.clone()}),
    };
    let path = file.to_path_buf();
    let (agent_source, agent_vars) = (source.clone(), user_vars.clone());
    let file_name = file.display().to_string();
    let agent_job = move |ctx: &RunContext, host_vars: Map<String, J>| {
        let mut vars = host_vars;
        vars.extend(agent_vars.clone());
        JobKind::State {
            file_name: file_name.clone(),
            source: agent_source.clone(),
            vars,
            check: ctx.check,
            become_user: ctx.become_user.clone(),
        }
    };
    job(
        hosts,
        spec,
        global,
        move |remote, ctx, host_vars| {
            let (path, source, user_vars) = (path.clone(), source.clone(), user_vars.clone());
            async move {
                let mut vars = host_vars;
                vars.extend(user_vars);
                cairn_orch::job::apply_state_file(&*remote, &path, &source, vars, &ctx).await
            }
        },
        agent_job,
    )
}

/// A state file error with its source snippet, as template errors are shown.
fn render(e: &cairn_orch::state::StateError) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut out, e).is_err() || out.is_empty() {
        return e.to_string();
    }
    // The first lines repeat the code and the message the caller prints.
    let snippet: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains('×'))
        .skip(1)
        .collect();
    format!("{e}\n{}", snippet.join("\n"))
}
