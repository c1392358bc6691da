//! `cairn run`, `cairn state apply` and `cairn jobs`: a job over the hosts
//! a target selects, recorded in the state store, printed with the shared
//! output formats.
//!
//! What is printed is the job record (`-o json|yaml`, `--query`); a table
//! shows its hosts, one row each. The exit code is 1 when any host failed,
//! was unreachable or was not started.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_orch::agent::{self, AdminReply, AdminRequest, JobKind};
use cairn_orch::job::{self, HostResult, JobRecord};
use cairn_orch::module::{self, Module, ModuleError, RunContext};
use cairn_orch::{Remote, Target};
use cairn_state::Store;
use serde_json::{Map, Value as J, json};

use super::connect::{Connector, seconds};
use super::hosts;
use super::state::{open_location, state_location};
use crate::cli::{Format, GlobalArgs, HostArgs, JobsAction, RunArgs, Via};
use crate::output::{default_format, emit};
use crate::report::{CliError, Status};

/// `cairn run TARGET -- COMMAND` or `cairn run TARGET MODULE k=v...`.
pub fn run(args: &RunArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let (name, module_args, function) = match (&args.module, args.command.is_empty()) {
        (None, false) => {
            let cmd = args.command.join(" ");
            let mut a = module::Args::new();
            a.insert("cmd".into(), J::String(cmd.clone()));
            ("cmd".to_string(), a, cmd)
        }
        (Some(m), true) => {
            let a = module::parse_kv(&args.args).map_err(usage)?;
            (
                m.clone(),
                a,
                format!("{m} {}", args.args.join(" ")).trim().to_string(),
            )
        }
        (Some(_), false) => {
            return Err(CliError::Usage(
                "give a module with its key=value arguments, or a command after `--`, not both"
                    .into(),
            ));
        }
        (None, true) => {
            return Err(CliError::Usage(
                "nothing to run: give a command after `--` (cairn run web -- uptime) or a module \
                 (cairn run web file path=/etc/motd content=hi)"
                    .into(),
            ));
        }
    };
    // Arguments are checked before any host is touched.
    let module: Arc<dyn Module> = Arc::from(module::load(&name, &module_args).map_err(usage)?);
    let spec = JobSpec {
        kind: "run",
        function,
        args: J::Object(module_args.clone()),
    };
    let agent_args = module_args;
    job(
        &args.hosts,
        spec,
        global,
        move |remote, ctx, _vars| {
            let module = module.clone();
            async move { job::module_result(remote.name(), module.run(&*remote, &ctx).await) }
        },
        move |ctx, _vars| JobKind::Module {
            name: name.clone(),
            args: agent_args.clone(),
            check: ctx.check,
            become_user: ctx.become_user.clone(),
        },
    )
}

/// What a job runs, for its record.
pub struct JobSpec {
    pub kind: &'static str,
    pub function: String,
    pub args: J,
}

/// Selects the hosts, connects, runs `work` on each (bounded by `--forks`,
/// stopped by `--max-fail`), records the job before and after, and prints it.
///
/// A host reached through its agent (`--via agent`, or `auto` when its
/// agent is connected) is not given to `work`: the master is asked, on its
/// admin socket, to send the agent the job `agent_job` describes; the
/// agent runs the same module or state code on itself and its result comes
/// back as the same [`HostResult`].
pub fn job<W, Fut, A>(
    args: &HostArgs,
    spec: JobSpec,
    global: &GlobalArgs,
    work: W,
    agent_job: A,
) -> Result<Status, CliError>
where
    W: Fn(Arc<dyn Remote>, RunContext, Map<String, J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HostResult> + Send + 'static,
    A: Fn(&RunContext, Map<String, J>) -> JobKind + Send + Sync + 'static,
{
    let target = Target::parse(&args.target).map_err(|e| CliError::Usage(e.to_string()))?;
    let loaded = hosts::load(&args.dir, args.env.as_deref(), &args.inventory, global)?;
    let inv = &loaded.inventory;
    let selected: Vec<_> = inv
        .select(&target)
        .into_iter()
        .map(|h| inv.connection(h))
        .collect();
    if selected.is_empty() {
        return Err(CliError::Usage(format!(
            "no host matches `{}` (the inventory has {} host(s); see `cairn inventory`)",
            args.target,
            inv.hosts().count()
        )));
    }
    let store = open_store(&loaded.state_dir, global)?;
    let connector = Connector::new(args, loaded.deployment.as_ref())?;
    let become_user = args
        .become_user
        .clone()
        .or_else(|| args.r#become.then(|| "root".to_string()));
    let mut record = JobRecord {
        id: job::new_id(),
        kind: spec.kind.to_string(),
        target: args.target.clone(),
        function: spec.function,
        args: spec.args,
        check: args.check,
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        started_at: super::deploy::now(),
        finished_at: None,
        hosts: vec![],
    };
    store.save_job(&record).map_err(CliError::failure)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failure)?;
    let master = super::agents::master_for(
        &args.master,
        loaded.deployment.as_ref().map(|d| d.target.as_str()),
    )?;
    let master_dir = Arc::new(master.dir.clone());
    // A server of the local cloud's deployment: its agent's id is the
    // server's resource id (names repeat across deployments).
    let agent_id = |h: &cairn_orch::Host| -> String {
        let from_deployment = h.sources.iter().any(|s| s.starts_with("deployment:"));
        match h.vars.get("cairn_id").and_then(J::as_str) {
            Some(id) if master.local && from_deployment => id.to_string(),
            _ => h.name.clone(),
        }
    };
    // The local cloud's servers run agents: no SSH needed by default.
    let via = args
        .via
        .unwrap_or(if master.local { Via::Auto } else { Via::Ssh });
    let via_agent: HashSet<String> = match via {
        Via::Ssh => HashSet::new(),
        Via::Agent | Via::Auto => {
            let wanted: HashSet<String> = selected.iter().map(&agent_id).collect();
            let connected = match master.local {
                // Agents of servers just made connect a moment after `up`.
                true => runtime.block_on(local_agents_connected(&master_dir, &wanted)),
                false => runtime.block_on(agent::ask(&master_dir, &AdminRequest::Connected)),
            };
            match connected {
                Ok(AdminReply::Connected { ids }) if via == Via::Auto => ids.into_iter().collect(),
                Ok(_) => wanted,
                Err(agent::AdminError::NotRunning(_)) if via == Via::Auto => HashSet::new(),
                Err(e) => {
                    return Err(CliError::Usage(format!(
                        "--via agent: {}",
                        super::agents::master_error(&master, e)
                    )));
                }
            }
        }
    };
    let work = Arc::new(work);
    let agent_job = Arc::new(agent_job);
    let job_id = record.id.clone();
    let timeout_ms = seconds(args.timeout).as_millis() as u64;
    let check = args.check;
    let results = runtime.block_on(async {
        // Every agent host of the job on one admin connection.
        let batch = (!via_agent.is_empty()).then(|| agent::Batch::start(&master_dir));
        let hosts: Vec<Named> = selected
            .iter()
            .map(|h| Named {
                name: h.name.clone(),
                agent: agent_id(h),
                remote: (!via_agent.contains(&agent_id(h))).then(|| connector.remote(h)),
                become_user: become_user
                    .clone()
                    .or_else(|| (h.r#become == Some(true)).then(|| "root".to_string())),
                vars: inv.effective_vars(h),
            })
            .collect();
        job::execute(
            hosts,
            args.forks,
            args.max_fail,
            |h: Named| {
                let work = work.clone();
                let agent_job = agent_job.clone();
                let (batch, job_id) = (batch.clone(), job_id.clone());
                async move {
                    let started = Instant::now();
                    let ctx = RunContext {
                        check,
                        become_user: h.become_user,
                        watch_fired: false,
                    };
                    let name = h.name;
                    let mut r = match h.remote {
                        Some(remote) => work(remote, ctx, h.vars).await,
                        None => {
                            let req = AdminRequest::Run {
                                job_id,
                                host: h.agent,
                                kind: agent_job(&ctx, h.vars),
                                timeout_ms,
                            };
                            let batch = batch.expect("a batch when a host is via its agent");
                            match batch.run(req).await {
                                Ok(AdminReply::Result { result }) => result,
                                Ok(other) => {
                                    job::failed(&name, format!("the master said {other:?}"))
                                }
                                Err(e) => job::unreachable(&name, e.to_string()),
                            }
                        }
                    };
                    r.host = name;
                    r.duration_ms = started.elapsed().as_millis() as u64;
                    r
                }
            },
            |r| tracing::info!(host = %r.host, status = r.status.as_str(), "host done"),
        )
        .await
    });
    // Connections close with the runtime, before the record is written.
    drop(runtime);
    record.hosts = results;
    record.finished_at = Some(super::deploy::now());
    store.save_job(&record).map_err(CliError::failure)?;
    print_job(&record, global)?;
    Ok(if record.tally().any_failed() {
        Status::Failure
    } else {
        Status::Success
    })
}

/// The local cloud's connected agents, once every one of `wanted` whose
/// key the cloud accepted is among them, or after 3 s: the cloud enrols a
/// server's agent when it makes the server, and the agent connects a
/// moment later (about 0.1 to 0.3 s), so a `run` right after `up` would
/// find it not there yet. A server whose agent never connects costs the
/// 3 s once, and is then unreachable (or, with auto, reached over SSH).
async fn local_agents_connected(
    dir: &Path,
    wanted: &HashSet<String>,
) -> Result<AdminReply, agent::AdminError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let enrolled: HashSet<String> = match agent::ask(dir, &AdminRequest::Keys).await? {
        AdminReply::Keys { keys } => keys
            .into_iter()
            .filter(|k| k.status == agent::KeyStatus::Accepted && wanted.contains(&k.id))
            .map(|k| k.id)
            .collect(),
        _ => HashSet::new(),
    };
    loop {
        let reply = agent::ask(dir, &AdminRequest::Connected).await?;
        let all = match &reply {
            AdminReply::Connected { ids } => enrolled.iter().all(|id| ids.contains(id)),
            _ => true,
        };
        if all || Instant::now() >= deadline {
            return Ok(reply);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A host for [`job::execute`], which names hosts by `AsRef<str>`.
struct Named {
    name: String,
    /// Its agent's id (its name, or a local server's resource id).
    agent: String,
    /// `None`: through its agent.
    remote: Option<Arc<dyn Remote>>,
    become_user: Option<String>,
    vars: Map<String, J>,
}

impl AsRef<str> for Named {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// The job record; on a table without `--query`, its hosts one per row
/// (the id on stderr, so the table stays the data).
fn print_job(record: &JobRecord, global: &GlobalArgs) -> Result<(), CliError> {
    let format = default_format(global.output);
    if format == Format::Table && global.query.is_none() {
        let t = record.tally();
        eprintln!(
            "job {}: {} host(s): {} changed, {} ok, {} failed, {} unreachable, {} skipped{}",
            record.id,
            record.hosts.len(),
            t.changed,
            t.ok,
            t.failed,
            t.unreachable,
            t.skipped,
            if record.check { " (dry run)" } else { "" }
        );
        return emit(J::Array(record.hosts.iter().map(row).collect()), global);
    }
    emit(
        serde_json::to_value(record).map_err(CliError::failure)?,
        global,
    )
}

/// A host's row: what people read first, the whole result in `-o json`.
fn row(h: &HostResult) -> J {
    let mut output = String::new();
    if let Some(e) = &h.error {
        output.push_str(e);
        output.push('\n');
    }
    let summary = h.detail.get("summary").and_then(J::as_str).unwrap_or("");
    let is_cmd = h.detail.get("rc").is_some();
    if !summary.is_empty() && !is_cmd {
        output.push_str(summary);
        output.push('\n');
    }
    for s in h
        .detail
        .get("states")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
    {
        let get = |k: &str| s.get(k).and_then(J::as_str).unwrap_or("");
        let said = s
            .pointer("/outcome/summary")
            .and_then(J::as_str)
            .or_else(|| s.get("error").and_then(J::as_str))
            .unwrap_or("");
        output.push_str(&format!("{}: {} {said}\n", get("id"), get("result")));
        push_diffs(&mut output, s.pointer("/outcome/diff"));
    }
    push_diffs(&mut output, h.detail.get("diff"));
    output.push_str(&h.stdout);
    output.push_str(&h.stderr);
    json!({
        "host": h.host,
        "status": h.status.as_str(),
        "rc": h.rc,
        "duration_ms": h.duration_ms,
        "output": output.trim_end(),
    })
}

fn push_diffs(output: &mut String, diffs: Option<&J>) {
    for d in diffs.and_then(J::as_array).into_iter().flatten() {
        if let Ok(d) = serde_json::from_value::<module::Diff>(d.clone()) {
            output.push_str(&d.render());
            output.push('\n');
        }
    }
}

/// `cairn jobs [list|show ID]`.
pub fn jobs(action: Option<&JobsAction>, global: &GlobalArgs) -> Result<Status, CliError> {
    match action {
        None => list(Path::new("."), 20, global),
        Some(JobsAction::List { limit, dir }) => list(dir, *limit, global),
        Some(JobsAction::Show { id, dir }) => {
            let store = open_store(&state_dir(dir)?, global)?;
            let job = store
                .job(id)
                .map_err(CliError::failure)?
                .ok_or_else(|| CliError::Usage(format!("no job {id} (see `cairn jobs list`)")))?;
            print_job(&job, global)?;
            Ok(Status::Success)
        }
    }
}

fn list(dir: &Path, limit: usize, global: &GlobalArgs) -> Result<Status, CliError> {
    let store = open_store(&state_dir(dir)?, global)?;
    let jobs = store.jobs(limit).map_err(CliError::failure)?;
    emit(
        serde_json::to_value(jobs).map_err(CliError::failure)?,
        global,
    )?;
    Ok(Status::Success)
}

/// A directory holding a template stores its jobs beside its deployment's
/// state; any other directory in its own `.cairn/state.db`.
fn state_dir(dir: &Path) -> Result<std::path::PathBuf, CliError> {
    match cairn_template::loader::locate_deployment(dir, None) {
        Ok((tdir, _)) => Ok(tdir),
        Err(_) => Ok(dir.to_path_buf()),
    }
}

fn open_store(dir: &Path, global: &GlobalArgs) -> Result<Box<dyn Store>, CliError> {
    open_location(&state_location(global, dir)?)
}

fn usage(e: ModuleError) -> CliError {
    CliError::Usage(e.to_string())
}
