//! `cairn artifact`, `cairn release` and `cairn releases`: an app of the
//! template built once into a signed artifact, rolled out onto the
//! deployment's servers through the orchestration transports, behind the
//! target's load balancer, with the audit trail in the state store.
//!
//! The signing key is the state's (`signing_keys`, sealed like every other
//! secret), so every environment kept in one state verifies the same
//! artifacts: promotion from dev to prod releases the very digest that ran
//! before. Artifacts live in the app's `store`, by default beside the
//! state (`.cairn/artifacts` in the template's directory).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_engine::backend::{BackendControl, BackendRef};
use cairn_engine::plan::StateAttributes;
use cairn_engine::provider::Provider;
use cairn_engine::run::{LeaseTerms, hold_lease};
use cairn_engine::store::ResourceRecord;
use cairn_orch::{Inventory, Target};
use cairn_release::app::Servers;
use cairn_release::artifact::host_script::{install_command, install_script};
use cairn_release::artifact::store::verify_stored;
use cairn_release::artifact::verify::verify_manifest;
use cairn_release::artifact::{
    self, ArtifactStore, BuildSpec, SigningKey, default_version, open_store,
};
use cairn_release::record::{ReleaseKind, ReleaseOutcome, ReleaseRecord, StoredKey};
use cairn_release::rollout::{self, Backend, Balancer, BatchSize, Host, Payload, Rollout, Stage};
use cairn_release::{AppSpec, ReleaseEvent};
use cairn_state::Store;
use serde_json::{Value as J, json};

use super::connect::Connector;
use super::state::{open_location, state_location};
use crate::cli::{
    ArtifactAction, GlobalArgs, HostArgs, MasterDirArg, ReleaseAction, ReleaseArgs, ReleaseOptions,
    TemplateArgs, Via,
};
use crate::output::emit;
use crate::report::{CliError, Status};

/// Where artifacts go in the deployment's own bucket (`store: bucket:NAME`).
const BUCKET_PREFIX: &str = "cairn/artifacts";

/// The name of the state's key that signs artifacts.
pub(super) const SIGNING_KEY: &str = "artifacts";

/// An app of a deployed template, with where its deployment is.
pub(super) struct AppContext {
    pub app: AppSpec,
    pub template_dir: PathBuf,
    pub deployment: cairn_template::loader::Deployment,
    pub store: Arc<dyn Store>,
    pub records: Vec<ResourceRecord>,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failure)
}

/// Reads the app `name` from the template, its expressions evaluated with
/// what the deployment's state knows (a `load_balancer: "{{ lb.id }}"`
/// needs the deployment to be up).
pub(super) fn load_app(
    t: &TemplateArgs,
    name: &str,
    global: &GlobalArgs,
) -> Result<AppContext, CliError> {
    let (template_dir, deployment) =
        cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    let location = state_location(global, &template_dir)?;
    let store: Arc<dyn Store> = Arc::from(open_location(&location)?);
    let records = store
        .resources(&deployment.name)
        .map_err(CliError::failure)?;
    let mut opts = super::template_options::load_options(t);
    opts.generated = store
        .generated_secrets(&deployment.name)
        .map_err(CliError::failure)?
        .into_iter()
        .collect();
    let loaded = cairn_template::load(&opts)?;
    if !loaded.template.apps.contains_key(name) {
        let known: Vec<&str> = loaded.template.apps.keys().map(String::as_str).collect();
        return Err(CliError::Usage(if known.is_empty() {
            format!(
                "no app `{name}`: the template in {} declares no `apps:`",
                template_dir.display()
            )
        } else {
            format!(
                "no app `{name}` in the template (its apps: {})",
                known.join(", ")
            )
        }));
    }
    let known = StateAttributes::new(&records);
    let desired =
        cairn_engine::evaluate(&loaded, &known).map_err(|diagnostics| CliError::Template {
            sources: loaded.sources.clone(),
            diagnostics,
        })?;
    let value = desired.apps[name].to_json_revealed().unwrap_or(J::Null);
    let app = AppSpec::from_json(name, &value).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(AppContext {
        app,
        template_dir,
        deployment,
        store,
        records,
    })
}

impl AppContext {
    /// The app's artifact store: its `store`, else `.cairn/artifacts` beside
    /// the state; a relative directory is the template directory's.
    async fn artifacts(&self) -> Result<Arc<dyn ArtifactStore>, CliError> {
        if let Some(name) = self
            .app
            .store
            .as_deref()
            .and_then(|s| s.strip_prefix("bucket:"))
        {
            return self.bucket_store(name.trim()).await;
        }
        let url = match &self.app.store {
            Some(s) if s.contains("://") || Path::new(s).is_absolute() => s.clone(),
            Some(s) => {
                let path = s.strip_prefix("file:").unwrap_or(s);
                self.template_dir.join(path).display().to_string()
            }
            None => self
                .template_dir
                .join(".cairn/artifacts")
                .display()
                .to_string(),
        };
        open_store(&url)
            .await
            .map_err(|e| CliError::Usage(format!("artifact store `{url}`: {e}")))
    }

    /// `store: bucket:NAME`: the deployment's own bucket resource `NAME`,
    /// under [`BUCKET_PREFIX`]: the local target's bucket directory, or the
    /// S3 bucket on aws through the target's own settings (region,
    /// profile, endpoint). The bucket must be deployed before a build.
    async fn bucket_store(&self, name: &str) -> Result<Arc<dyn ArtifactStore>, CliError> {
        let deployment = &self.deployment.name;
        let bucket = self
            .records
            .iter()
            .find(|r| r.kind == "bucket" && r.address == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .records
                    .iter()
                    .filter(|r| r.kind == "bucket")
                    .map(|r| r.address.as_str())
                    .collect();
                CliError::Usage(if known.is_empty() {
                    format!(
                        "app `{}` keeps its artifacts in `bucket:{name}`, but deployment {deployment} has no bucket yet: deploy the template first (`cairn up`)",
                        self.app.name
                    )
                } else {
                    format!(
                        "app `{}` keeps its artifacts in `bucket:{name}`, but deployment {deployment} has no bucket `{name}` (its buckets: {})",
                        self.app.name,
                        known.join(", ")
                    )
                })
            })?;
        match self.deployment.target.as_str() {
            "local" => {
                let dir = bucket.attributes["url"]
                    .as_str()
                    .and_then(|u| u.strip_prefix("file://"))
                    .ok_or_else(|| {
                        CliError::failure(format!(
                            "bucket `{name}` of deployment {deployment} has no local directory in its state"
                        ))
                    })?;
                let url = Path::new(dir).join(BUCKET_PREFIX).display().to_string();
                open_store(&url)
                    .await
                    .map_err(|e| CliError::Usage(format!("artifact store `{url}`: {e}")))
            }
            #[cfg(feature = "aws")]
            "aws" => {
                let settings = cairn_aws::AwsSettings::from_environment(
                    self.deployment.region.as_deref(),
                    self.deployment.settings.as_ref(),
                )
                .map_err(|e| CliError::Usage(e.to_string()))?;
                let clients = cairn_aws::Clients::load(&settings)
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                Ok(Arc::new(artifact::store::S3Store::new(
                    clients.s3,
                    bucket.id.clone(),
                    BUCKET_PREFIX,
                )))
            }
            other => Err(CliError::Usage(format!(
                "app `{}`: `bucket:` stores are not supported on target `{other}` in this build",
                self.app.name
            ))),
        }
    }

    /// The state's signing key, made on the first build.
    fn signing_key(&self, create: bool) -> Result<SigningKey, CliError> {
        if let Some(k) = self
            .store
            .signing_key(SIGNING_KEY)
            .map_err(CliError::failure)?
        {
            return SigningKey::from_seed(&k.seed).map_err(CliError::failure);
        }
        if !create {
            return Err(CliError::Usage(
                "this state has no signing key yet: nothing was built with it (`cairn artifact build APP`)"
                    .into(),
            ));
        }
        let key = SigningKey::generate().map_err(CliError::failure)?;
        let kept = self
            .store
            .put_signing_key(
                SIGNING_KEY,
                &StoredKey {
                    public: key.public().to_hex(),
                    seed: key.seed(),
                },
            )
            .map_err(CliError::failure)?;
        SigningKey::from_seed(&kept.seed).map_err(CliError::failure)
    }
}

/// `cairn artifact build|list|show|verify`.
pub fn artifact(action: &ArtifactAction, global: &GlobalArgs) -> Result<Status, CliError> {
    let rt = runtime()?;
    match action {
        ArtifactAction::Build {
            app,
            version,
            template,
        } => {
            let cx = load_app(template, app, global)?;
            let build = cx.app.build.clone().ok_or_else(|| {
                CliError::Usage(format!(
                    "app `{app}` has no `build` (a command, or {{command, dir, output}})"
                ))
            })?;
            let source = cx.template_dir.join(&build.dir);
            let version = version
                .clone()
                .unwrap_or_else(|| default_version(&source, time::OffsetDateTime::now_utc()));
            let key = cx.signing_key(true)?;
            let store = rt.block_on(cx.artifacts())?;
            let mut spec = BuildSpec::new(app, &version, &source, &build.command);
            spec.output = build.output.clone();
            let started = Instant::now();
            let verbose = std::io::stderr().is_terminal();
            let built = artifact::build(&spec, &key, &mut |line| {
                if verbose {
                    eprintln!("  | {line}");
                }
            })
            .map_err(|e| CliError::failure(anyhow::anyhow!("building {app} {version}: {e}")))?;
            let stored = match rt.block_on(store.put(
                app,
                &version,
                &built.manifest_bytes,
                &built.signature,
                &built.archive,
            )) {
                Ok(outcome) => matches!(outcome, artifact::store::PutOutcome::Stored),
                // The same files built again (a rerun of a CI job) are the
                // same version; only other content is refused.
                Err(e @ cairn_release::ReleaseError::VersionExists { .. }) => {
                    let kept = rt
                        .block_on(store.get_manifest(app, &version))
                        .map_err(CliError::failure)?;
                    if kept.manifest.files != built.manifest.files {
                        return Err(CliError::failure(anyhow::anyhow!("{e}")));
                    }
                    false
                }
                Err(e) => return Err(CliError::failure(anyhow::anyhow!("{e}"))),
            };
            emit(
                json!({
                    "app": app,
                    "version": version,
                    "digest": built.digest(),
                    "files": built.manifest.files.len(),
                    "size": built.manifest.archive.size,
                    "store": store.location(),
                    "stored": stored,
                    "duration_ms": started.elapsed().as_millis() as u64,
                }),
                global,
            )?;
            Ok(Status::Success)
        }
        ArtifactAction::List { app, template } => {
            let (template_dir, _) =
                cairn_template::loader::locate_deployment(&template.dir, template.env.as_deref())?;
            // Listing needs the app only for its store; without one named,
            // every app's store is the default one.
            let store = match app {
                Some(a) => rt.block_on(load_app(template, a, global)?.artifacts())?,
                None => rt
                    .block_on(open_store(
                        &template_dir.join(".cairn/artifacts").display().to_string(),
                    ))
                    .map_err(CliError::failure)?,
            };
            let apps = match app {
                Some(a) => vec![a.clone()],
                None => rt.block_on(store.apps()).map_err(CliError::failure)?,
            };
            let mut rows = Vec::new();
            for a in apps {
                for v in rt.block_on(store.list(&a)).map_err(CliError::failure)? {
                    let m = rt
                        .block_on(store.get_manifest(&a, &v))
                        .map_err(CliError::failure)?;
                    rows.push(json!({
                        "app": a,
                        "version": v,
                        "digest": m.digest(),
                        "built_by": m.manifest.built_by,
                        "created_at": m.manifest.created_at,
                        "files": m.manifest.files.len(),
                        "size": m.manifest.archive.size,
                    }));
                }
            }
            emit(J::Array(rows), global)?;
            Ok(Status::Success)
        }
        ArtifactAction::Show {
            app,
            version,
            template,
        } => {
            let cx = load_app(template, app, global)?;
            let store = rt.block_on(cx.artifacts())?;
            let m = rt
                .block_on(store.get_manifest(app, version))
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let mut v = serde_json::to_value(&m.manifest).map_err(CliError::failure)?;
            v["digest"] = J::String(m.digest());
            emit(v, global)?;
            Ok(Status::Success)
        }
        ArtifactAction::Verify {
            app,
            version,
            template,
        } => {
            let cx = load_app(template, app, global)?;
            let key = cx.signing_key(false)?.public();
            let store = rt.block_on(cx.artifacts())?;
            let m = rt
                .block_on(verify_stored(&*store, app, version, &key, None))
                .map_err(|e| CliError::failure(anyhow::anyhow!("{app} {version}: {e}")))?;
            emit(
                json!({"app": app, "version": version, "digest": m.digest(), "verified": true,
                       "files": m.manifest.files.len(), "key": key.to_hex()}),
                global,
            )?;
            Ok(Status::Success)
        }
    }
}

/// `cairn release APP VERSION` and `cairn release rollback APP`.
pub fn release(
    action: Option<&ReleaseAction>,
    args: &ReleaseArgs,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    match action {
        Some(ReleaseAction::Rollback { app, to, args }) => {
            rollback(app, to.as_deref(), args, global)
        }
        None => {
            let (Some(app), Some(version)) = (&args.app, &args.version) else {
                return Err(CliError::Usage(
                    "give the app and the version: cairn release APP VERSION".into(),
                ));
            };
            roll_out(app, version, None, &args.options, global)
        }
    }
}

pub(super) fn template_args(o: &ReleaseOptions) -> TemplateArgs {
    TemplateArgs {
        dir: o.servers.dir.clone(),
        env: o.servers.env.clone(),
        params: o.servers.params.clone(),
        param_files: Vec::new(),
    }
}

/// Back to `to`, else to the version before the environment's current
/// one, from the trail: a version every host still has (`keep`).
fn rollback(
    app: &str,
    to: Option<&str>,
    o: &ReleaseOptions,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let cx = load_app(&template_args(o), app, global)?;
    let trail = cx.store.releases(Some(app)).map_err(CliError::failure)?;
    let here: Vec<&ReleaseRecord> = trail
        .iter()
        .filter(|r| r.environment == cx.deployment.env && r.outcome == ReleaseOutcome::Succeeded)
        .collect();
    let version = match to {
        Some(v) => v.to_string(),
        None => {
            let current = here.first().map(|r| r.version.clone()).ok_or_else(|| {
                CliError::Usage(format!(
                    "{app} has no release in `{}` to roll back from",
                    cx.deployment.env
                ))
            })?;
            here.iter()
                .find(|r| r.version != current)
                .map(|r| r.version.clone())
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "{app} has had only {current} in `{}`: nothing earlier to go back to (give --to VERSION)",
                        cx.deployment.env
                    ))
                })?
        }
    };
    let digest = trail
        .iter()
        .find(|r| r.version == version)
        .map(|r| r.digest.clone())
        .unwrap_or_default();
    roll_out(app, &version, Some(digest), o, global)
}

/// The rollout: `rollback_digest` is set for a rollback (the version is
/// already on the hosts; nothing is staged).
fn roll_out(
    app_name: &str,
    version: &str,
    rollback_digest: Option<String>,
    o: &ReleaseOptions,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let batch = BatchSize::parse(&o.batch).map_err(CliError::Usage)?;
    artifact::check_name("version", version).map_err(|e| CliError::Usage(e.to_string()))?;
    let t = template_args(o);
    let cx = load_app(&t, app_name, global)?;
    let app = cx.app.clone();
    let rt = runtime()?;

    // What is released, checked here before any host is touched.
    let payload = match &rollback_digest {
        Some(digest) => Payload {
            version: version.to_string(),
            digest: digest.clone(),
            stage: None,
        },
        None => rt.block_on(staged_payload(&cx, version))?,
    };

    // Its hosts, in the inventory's order.
    let host_args = host_args(o, &app);
    let loaded = super::hosts::load(&o.servers.dir, o.servers.env.as_deref(), &[], global)?;
    let inv = &loaded.inventory;
    let selected = select_hosts(inv, &app)?;
    let connector = Connector::new(&host_args, loaded.deployment.as_ref())?;
    let hosts: Vec<Host> = selected
        .iter()
        .map(|h| {
            let c = inv.connection(h);
            Host {
                name: c.name.clone(),
                address: c.address.clone().unwrap_or_else(|| c.name.clone()),
                remote: connector.remote(&c),
            }
        })
        .collect();

    let author = {
        let owner = super::deploy::owner();
        format!("{}@{}", owner.user, owner.host)
    };
    let status = rt.block_on(async {
        let tg = super::deploy::target(&t, global).await?;
        let balancer = balancer(
            &tg,
            &app,
            Duration::from_secs(o.drain_timeout.max(1)),
            &cx.records,
        )?;
        // One release (or run) of a deployment at a time.
        let run_cx = super::deploy::context(&tg, None)?;
        let owner = super::deploy::owner();
        let (leased, _lease) = hold_lease(
            &run_cx,
            &LeaseTerms {
                command: "release",
                owner: &owner,
                ttl: Duration::from_secs(30),
                holder_gone: cairn_engine::holder::holder_is_gone,
            },
        )
        .map_err(|e| CliError::failure(anyhow::anyhow!("{e}")))?;

        let mut record = ReleaseRecord {
            id: release_id(),
            app: app_name.to_string(),
            deployment: cx.deployment.name.clone(),
            environment: cx.deployment.env.clone(),
            kind: if rollback_digest.is_some() {
                ReleaseKind::Rollback
            } else {
                ReleaseKind::Release
            },
            version: version.to_string(),
            digest: payload.digest.clone(),
            author: author.clone(),
            started_at: super::deploy::now(),
            finished_at: None,
            outcome: ReleaseOutcome::Running,
            batches: 0,
            max_fail: o.max_fail,
            hosts: Vec::new(),
            events: Vec::new(),
        };
        cx.store.begin_release(&record).map_err(CliError::failure)?;
        let progress = std::io::stderr().is_terminal();
        let finished = rollout::run(Rollout {
            app: app.clone(),
            payload,
            hosts,
            batch,
            max_fail: o.max_fail,
            balancer,
            fence: Arc::new(move || {
                leased
                    .fence
                    .check(&*leased.store, &leased.deployment, &leased.run_id)
                    .err()
            }),
            on_event: Arc::new(move |e: &ReleaseEvent| {
                if progress {
                    let mark = if e.ok { " " } else { "!" };
                    let _ = writeln!(
                        std::io::stderr(),
                        " {mark} {:<8} {:<12} {}",
                        e.step,
                        e.host.as_deref().unwrap_or(""),
                        e.message
                    );
                }
            }),
        })
        .await;
        record.finished_at = Some(super::deploy::now());
        record.outcome = finished.outcome;
        record.batches = finished.batches;
        record.hosts = finished.hosts;
        record.events = finished.events;
        cx.store
            .finish_release(&record)
            .map_err(CliError::failure)?;
        emit(
            serde_json::to_value(&record).map_err(CliError::failure)?,
            global,
        )?;
        Ok::<_, CliError>(if record.outcome == ReleaseOutcome::Succeeded {
            Status::Success
        } else {
            Status::Failure
        })
    })?;
    Ok(status)
}

/// A version of the app as a rollout stages it: its manifest verified
/// here against the state's key, then the install script and the archive
/// that each host verifies again before unpacking.
pub(super) async fn staged_payload(cx: &AppContext, version: &str) -> Result<Payload, CliError> {
    let app_name = cx.app.name.as_str();
    let store = cx.artifacts().await?;
    let stored = store
        .get_manifest(app_name, version)
        .await
        .map_err(|e| CliError::Usage(format!("{e} (see `cairn artifact list {app_name}`)")))?;
    let key = cx.signing_key(false)?.public();
    verify_manifest(&stored.bytes, &stored.signature, &key).map_err(|e| {
        CliError::failure(anyhow::anyhow!(
            "{app_name} {version} in {}: {e}; refusing to release it",
            store.location()
        ))
    })?;
    let script = install_script(
        &cx.app.install,
        version,
        &stored.bytes,
        &stored.signature,
        &key,
    )
    .map_err(CliError::failure)?;
    let dir = tempfile::tempdir().map_err(CliError::failure)?;
    let path = dir.path().join("artifact.tar.zst");
    store
        .fetch_archive(app_name, version, &path)
        .await
        .map_err(CliError::failure)?;
    let archive = std::fs::read(&path).map_err(CliError::failure)?;
    // The script goes first on stdin, then the archive: a manifest of many
    // files makes a script longer than one argument may be.
    let mut input = script.clone().into_bytes();
    input.extend_from_slice(&archive);
    Ok(Payload {
        version: version.to_string(),
        digest: stored.digest(),
        stage: Some(Stage {
            script: install_command(script.len()),
            archive: input.into(),
        }),
    })
}

/// The app's load balancer through the target's provider, when it has one.
pub(super) fn balancer(
    tg: &super::deploy::Target,
    app: &AppSpec,
    drain_timeout: Duration,
    records: &[ResourceRecord],
) -> Result<Option<Arc<dyn Balancer>>, CliError> {
    let Some(lb_id) = &app.load_balancer else {
        return Ok(None);
    };
    if tg.provider.backend_control().is_none() {
        return Err(CliError::Usage(format!(
            "the {} target cannot drain a load balancer's backends",
            tg.target
        )));
    }
    Ok(Some(Arc::new(ProviderBalancer {
        provider: tg.provider.clone(),
        lb_id: lb_id.clone(),
        drain_timeout,
        servers: server_ids(records),
    })))
}

/// The environment's live release of the app: its newest release or
/// rollback that succeeded.
pub(super) fn current_release<'a>(
    trail: &'a [ReleaseRecord],
    environment: &str,
) -> Option<&'a ReleaseRecord> {
    trail
        .iter()
        .find(|r| r.environment == environment && r.outcome == ReleaseOutcome::Succeeded)
}

/// The app's hosts: its target expression or names, from the deployment's
/// servers.
pub(super) fn select_hosts<'a>(
    inv: &'a Inventory,
    app: &AppSpec,
) -> Result<Vec<&'a cairn_orch::Host>, CliError> {
    let hosts: Vec<&cairn_orch::Host> = match &app.servers {
        Servers::Target(expr) => {
            let target = Target::parse(expr)
                .map_err(|e| CliError::Usage(format!("app `{}`: servers: {e}", app.name)))?;
            inv.select(&target)
        }
        Servers::Names(names) => names
            .iter()
            .map(|n| {
                inv.host(n).ok_or_else(|| {
                    CliError::Usage(format!(
                        "app `{}`: no server `{n}` in the deployment",
                        app.name
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if hosts.is_empty() {
        return Err(CliError::Usage(format!(
            "app `{}`: its servers select no host (is the deployment up? see `cairn inventory`)",
            app.name
        )));
    }
    Ok(hosts)
}

/// The connection options as `cairn run` takes them.
pub(super) fn host_args(o: &ReleaseOptions, app: &AppSpec) -> HostArgs {
    HostArgs {
        target: match &app.servers {
            Servers::Target(t) => t.clone(),
            Servers::Names(n) => n.join(","),
        },
        inventory: Vec::new(),
        dir: o.servers.dir.clone(),
        env: o.servers.env.clone(),
        known_hosts: o.servers.known_hosts.clone(),
        user: o.servers.user.clone(),
        private_key: o.servers.private_key.clone(),
        r#become: false,
        become_user: None,
        forks: 256,
        max_fail: None,
        connect_timeout: o.servers.connect_timeout,
        timeout: o.servers.timeout,
        check: false,
        keep_connections: o.keep_connections,
        via: Some(Via::Ssh),
        master: MasterDirArg {
            master_dir: None,
            local: false,
        },
    }
}

/// Servers' provider ids by address, for targets that register servers
/// by id (aws).
fn server_ids(records: &[ResourceRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r.kind == "server")
        .filter_map(|r| {
            let address = r.attributes.get("address")?.as_str()?.to_string();
            Some((address, r.id.clone()))
        })
        .collect()
}

/// The app's balancer through the target's provider.
struct ProviderBalancer {
    provider: Arc<dyn Provider>,
    lb_id: String,
    drain_timeout: Duration,
    servers: Vec<(String, String)>,
}

impl ProviderBalancer {
    fn control(&self) -> Result<&dyn BackendControl, String> {
        self.provider
            .backend_control()
            .ok_or_else(|| "the target cannot drain load balancer backends".to_string())
    }

    fn backend(&self, b: &Backend) -> BackendRef {
        let r = BackendRef::new(b.address.clone(), b.port);
        match self.servers.iter().find(|(a, _)| *a == b.address) {
            Some((_, id)) => r.with_server(id.clone()),
            None => r,
        }
    }
}

#[async_trait]
impl Balancer for ProviderBalancer {
    async fn drain(&self, b: &Backend) -> Result<(), String> {
        let report = self
            .control()?
            .drain(&self.lb_id, &self.backend(b), self.drain_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if report.timed_out {
            tracing::warn!(
                backend = %b.address,
                left = ?report.in_flight_left,
                "drain timed out; requests still in flight are cut by the restart"
            );
        }
        Ok(())
    }

    async fn restore(&self, b: &Backend, within: Duration) -> Result<(), String> {
        // Back only once the balancer sends it traffic again: the next
        // batch must not drain the last hosts that take it.
        cairn_engine::backend::restore_and_wait(
            self.control()?,
            &self.lb_id,
            &self.backend(b),
            within,
            Duration::from_millis(10),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// `cairn releases [APP]`: the trail, newest first.
pub fn releases(app: Option<&str>, dir: &Path, global: &GlobalArgs) -> Result<Status, CliError> {
    let tdir = match cairn_template::loader::locate_deployment(dir, None) {
        Ok((tdir, _)) => tdir,
        Err(_) => dir.to_path_buf(),
    };
    let store = open_location(&state_location(global, &tdir)?)?;
    let trail = store.releases(app).map_err(CliError::failure)?;
    let rows: Vec<J> = trail
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "app": r.app,
                "environment": r.environment,
                "kind": r.kind,
                "version": r.version,
                "digest": r.digest,
                "outcome": r.outcome,
                "author": r.author,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "hosts": r.hosts.len(),
            })
        })
        .collect();
    emit(J::Array(rows), global)?;
    Ok(Status::Success)
}

/// The job id's form (the start time to the microsecond, UTC) with a
/// random tail: two releases may start in the same microsecond on two
/// machines sharing one state.
pub(super) fn release_id() -> String {
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!("{}-{}", cairn_orch::job::new_id(), hex::encode(r))
}
