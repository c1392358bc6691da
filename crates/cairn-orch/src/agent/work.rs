//! The jobs an agent runs on its host: the same modules and states as
//! over SSH, on [`LocalHost`], and which files they manage (for the
//! agent's watch, [`super::watch`]).

use std::path::Path;
use std::time::Duration;

use super::protocol::{JobKind, now_ms};
use crate::job::{self, HostResult};
use crate::module::{self, RunContext};
use crate::transport::local::LocalHost;

/// Runs a job on this host, as `id`, until `deadline` (unix ms).
pub async fn run_job(id: &str, kind: JobKind, deadline: u64) -> HostResult {
    run_job_managing(id, kind, deadline).await.0
}

/// What files a job manages (the paths of its `file` modules, none in a
/// dry run) and the state file they come from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Manages {
    pub paths: Vec<String>,
    pub state: Option<String>,
}

fn is_file_module(name: &str) -> bool {
    name == "file" || name.starts_with("file.")
}

/// The path a `file` module's arguments name.
fn file_path(args: &module::Args) -> Option<String> {
    ["path", "name", "dest"]
        .iter()
        .find_map(|k| args.get(*k).and_then(|v| v.as_str()).map(str::to_string))
}

/// [`run_job`], and what files it manages.
pub async fn run_job_managing(id: &str, kind: JobKind, deadline: u64) -> (HostResult, Manages) {
    let left = Duration::from_millis(deadline.saturating_sub(now_ms()).max(1000));
    let host = LocalHost::new(id).with_timeout(left);
    match kind {
        JobKind::Module {
            name,
            args,
            check,
            become_user,
        } => {
            let manages = Manages {
                paths: (is_file_module(&name) && !check)
                    .then(|| file_path(&args))
                    .flatten()
                    .into_iter()
                    .collect(),
                state: None,
            };
            let ctx = RunContext {
                check,
                become_user,
                watch_fired: false,
            };
            let r = match module::load(&name, &args) {
                Ok(m) => job::module_result(id, m.run(&host, &ctx).await),
                Err(e) => job::failed(id, e.to_string()),
            };
            (r, manages)
        }
        JobKind::State {
            file_name,
            source,
            vars,
            check,
            become_user,
        } => {
            let ctx = RunContext {
                check,
                become_user,
                watch_fired: false,
            };
            // The loader sees every state's module and arguments as
            // rendered: the file states' paths are what the file manages.
            let seen = std::sync::Mutex::new(Vec::new());
            let loader = |name: &str, args: &module::Args| {
                if is_file_module(name)
                    && let Some(p) = file_path(args)
                {
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(p);
                }
                module::load(name, args)
            };
            let r = job::apply_state_file_with(
                &host,
                Path::new(&file_name),
                &source,
                vars,
                &ctx,
                &loader,
            )
            .await;
            let mut paths = seen.into_inner().unwrap_or_else(|p| p.into_inner());
            if check {
                paths.clear();
            }
            (
                r,
                Manages {
                    paths,
                    state: Some(file_name),
                },
            )
        }
    }
}
