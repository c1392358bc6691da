//! The rollout on a real host: this machine's shell (cairn-orch's local
//! transport), a real service (python3's HTTP server) on a loopback port,
//! real signals to stop it, real HTTP for the health gate.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cairn_orch::TransportError;
use cairn_orch::remote::{Exec, Output, Remote};
use cairn_orch::transport::local::LocalHost;
use cairn_release::app::AppSpec;
use cairn_release::record::{HostOutcome, ReleaseOutcome};
use cairn_release::rollout::{self, BatchSize, Finished, Host, Payload, Rollout, Stage};
use serde_json::json;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An app serving `releases/V/index.html` on a loopback port; `health`
/// is the path the gate asks for.
fn app(install: &Path, port: u16, health: &str) -> AppSpec {
    AppSpec::from_json(
        "hello",
        &json!({
            "install": install.to_str().unwrap(),
            "service": {
                "command": "exec sh ./serve",
                "stop_timeout": "5s",
            },
            "port": port,
            "health": {"path": health, "timeout": "10s", "interval": "100ms"},
            "servers": ["local"],
            "keep": 2,
        }),
    )
    .unwrap()
}

/// Stages version `v` the way an artifact would: a script that reads the
/// files on stdin (a tar made here) into `releases/V`.
fn payload(install: &Path, v: &str, tree: &[(&str, &str)]) -> Payload {
    let dir = tempfile::tempdir().unwrap();
    // Every release brings its own start script, as an artifact would.
    std::fs::write(
        dir.path().join("serve"),
        "exec python3 -m http.server \"$PORT\" --bind \"$CAIRN_ADDRESS\"\n",
    )
    .unwrap();
    for (name, body) in tree {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let tar = std::process::Command::new("tar")
        .args(["-c", "-C"])
        .arg(dir.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success());
    Payload {
        version: v.into(),
        digest: format!("digest-{v}"),
        stage: Some(Stage {
            script: format!(
                // Its own staging directory, and an install that finds the
                // version there already is one: two hosts may share this
                // machine's directory.
                "set -eu\nmkdir -p {i}/releases/.{v}.$$\ncd {i}\ntar -x -C releases/.{v}.$$\n\
                 mv -T releases/.{v}.$$ releases/{v} 2>/dev/null || {{ [ -d releases/{v} ] && rm -rf releases/.{v}.$$; }}\n",
                i = install.display()
            ),
            archive: tar.stdout.into(),
        }),
    }
}

fn rollout(app: &AppSpec, payload: Payload, install: &Path) -> Rollout {
    let _ = install;
    let host = LocalHost::new("local");
    Rollout {
        app: app.clone(),
        payload,
        hosts: vec![Host {
            name: "local".into(),
            address: "127.0.0.1".into(),
            remote: Arc::new(host),
        }],
        batch: BatchSize::Hosts(1),
        max_fail: 0,
        balancer: None,
        on_event: Arc::new(|_| {}),
        fence: Arc::new(|| None),
    }
}

fn get(port: u16) -> String {
    let out = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "2"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stop(install: &Path) {
    // The test's own service goes with it.
    if let Ok(pid) = std::fs::read_to_string(install.join(".cairn/service.pid")) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", pid.trim())])
            .status();
    }
}

/// A temporary directory, an install path in it ("srv") and an app there
/// on a free loopback port whose health check asks for `health`.
fn local_app(health: &str) -> (tempfile::TempDir, PathBuf, u16, AppSpec) {
    let dir = tempfile::tempdir().unwrap();
    let install = dir.path().join("srv");
    let port = free_port();
    let a = app(&install, port, health);
    (dir, install, port, a)
}

/// Rolls version `v` of `tree` out to this machine.
async fn release(a: &AppSpec, install: &Path, v: &str, tree: &[(&str, &str)]) -> Finished {
    rollout::run(rollout(a, payload(install, v, tree), install)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_switch_roll_back_on_a_failed_health_check_and_prune() {
    let (_dir, install, port, a) = local_app("/index.html");

    let v1 = release(&a, &install, "v1", &[("index.html", "v1")]).await;
    assert_eq!(v1.outcome, ReleaseOutcome::Succeeded, "{:?}", v1.events);
    assert_eq!(get(port), "v1");
    assert_eq!(v1.hosts[0].from_version, None);

    let v2 = release(&a, &install, "v2", &[("index.html", "v2")]).await;
    assert_eq!(v2.outcome, ReleaseOutcome::Succeeded, "{:?}", v2.events);
    assert_eq!(v2.hosts[0].from_version.as_deref(), Some("v1"));
    assert_eq!(get(port), "v2");
    // One round trip moves the host; each part still has its event, in
    // order and in time.
    let moved: Vec<(&str, i64)> = v2
        .events
        .iter()
        .filter(|e| matches!(e.step.as_str(), "switch" | "restart" | "health"))
        .map(|e| (e.step.as_str(), e.at_ms))
        .collect();
    let steps: Vec<&str> = moved.iter().map(|m| m.0).collect();
    assert_eq!(steps, ["switch", "restart", "health"], "{:#?}", v2.events);
    assert!(moved.windows(2).all(|w| w[0].1 <= w[1].1), "{moved:?}");
    assert_eq!(
        std::fs::read_link(install.join("current")).unwrap(),
        Path::new("releases/v2")
    );

    // v3 has no index.html: its health check fails, the host goes back.
    let v3 = release(&a, &install, "v3", &[("other", "v3")]).await;
    assert_eq!(v3.outcome, ReleaseOutcome::RolledBack, "{:?}", v3.events);
    assert_eq!(v3.hosts[0].outcome, HostOutcome::Failed);
    let why = v3.hosts[0].message.clone().unwrap();
    assert!(why.starts_with("health: "), "{why}");
    assert!(why.contains("did not answer 2xx within 10s"), "{why}");
    assert_eq!(get(port), "v2", "back on v2, serving");
    assert!(
        v3.events
            .iter()
            .any(|e| e.step == "rollback" && e.host.as_deref() == Some("local"))
    );

    // A service that dies at once fails fast and says why, from its log.
    let started = std::time::Instant::now();
    let crashing = payload(
        &install,
        "v4",
        &[
            ("index.html", "v4"),
            ("serve", "echo 'no config, giving up' >&2; exit 1\n"),
        ],
    );
    let v4 = rollout::run(rollout(&a, crashing, &install)).await;
    assert_eq!(v4.outcome, ReleaseOutcome::RolledBack, "{:#?}", v4.events);
    let why = v4.hosts[0].message.clone().unwrap();
    assert!(
        why.contains("the service exited") && why.contains("no config, giving up"),
        "{why}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "did not wait for the health timeout"
    );
    // Going back restarts the old command: v2 still serves.
    assert_eq!(get(port), "v2");

    // keep: 2 — the two newest (v5, v4) and the one v5 replaced (v2)
    // stay; v1 and v3 go.
    let v5 = release(&a, &install, "v5", &[("index.html", "v5")]).await;
    assert_eq!(v5.outcome, ReleaseOutcome::Succeeded, "{:?}", v5.events);
    let mut left: Vec<String> = std::fs::read_dir(install.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["v2", "v4", "v5"]);
    assert_eq!(get(port), "v5");
    stop(&install);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_fails_switches_nothing() {
    let (_dir, install, port, a) = local_app("/");
    let v1 = release(&a, &install, "v1", &[("index.html", "v1")]).await;
    assert_eq!(v1.outcome, ReleaseOutcome::Succeeded);
    let mut bad = payload(&install, "v2", &[("index.html", "v2")]);
    if let Some(stage) = &mut bad.stage {
        stage.script = "echo 'signature does not verify' >&2; exit 7".into();
    }
    let v2 = rollout::run(rollout(&a, bad, &install)).await;
    assert_eq!(v2.outcome, ReleaseOutcome::RolledBack);
    assert_eq!(v2.hosts[0].outcome, HostOutcome::Failed);
    assert_eq!(
        v2.hosts[0].message.as_deref(),
        Some("signature does not verify")
    );
    assert!(
        !v2.events.iter().any(|e| e.step == "switch"),
        "nothing switched"
    );
    assert_eq!(get(port), "v1");
    stop(&install);
}

#[test]
fn batch_sizes() {
    assert_eq!(BatchSize::parse("25%").unwrap().of(20), 5);
    assert_eq!(BatchSize::parse("25%").unwrap().of(3), 1);
    assert_eq!(BatchSize::parse("1").unwrap().of(4), 1);
    assert_eq!(BatchSize::parse("10").unwrap().of(4), 4);
    for bad in ["0", "0%", "101%", "x", ""] {
        assert!(BatchSize::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_lost_its_lease_starts_no_more_batches() {
    let (_dir, install, _, a) = local_app("/");
    let mut r = rollout(
        &a,
        payload(&install, "v1", &[("index.html", "v1")]),
        &install,
    );
    // A second host (the same machine under another name): its batch comes
    // after the lease is lost, so it is never touched.
    let mut second = r.hosts[0].clone();
    second.name = "other".into();
    r.hosts.push(second);
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    r.fence = Arc::new(move || {
        (count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1)
            .then(|| "the lease of shop-prod was broken: this run stopped".to_string())
    });
    let done = rollout::run(r).await;
    assert_eq!(done.outcome, ReleaseOutcome::Failed, "{:#?}", done.events);
    assert_eq!(done.hosts[0].outcome, HostOutcome::Switched);
    assert_eq!(done.hosts[1].outcome, HostOutcome::Skipped);
    assert!(
        done.events
            .iter()
            .any(|e| e.step == "stop" && e.message.contains("lease of shop-prod was broken")),
        "{:?}",
        done.events
    );
    // It was staged with every host (unpacked, not live); nothing on it
    // moved.
    assert!(
        !done
            .events
            .iter()
            .any(|e| e.host.as_deref() == Some("other") && e.step != "stage"),
        "{:?}",
        done.events
    );
    stop(&install);
}

/// A host that answers every script at once, except staging (`STAGE`,
/// taking `stage`; failing on h1 when it takes no time) and the health
/// check (taking 300 ms, failing on the hosts named in `unhealthy`); it
/// counts the stagings that finished and the most that ran at once.
struct Timed {
    name: String,
    stage: Duration,
    unhealthy: Arc<Mutex<Vec<String>>>,
    staged: Arc<AtomicUsize>,
    staging: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

#[async_trait]
impl Remote for Timed {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        let mut out = Output {
            status: Some(0),
            ..Output::default()
        };
        if exec.script == "STAGE" {
            let now = self.staging.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.stage).await;
            self.staging.fetch_sub(1, Ordering::SeqCst);
            self.staged.fetch_add(1, Ordering::SeqCst);
            if self.stage == Duration::ZERO && self.name == "h1" {
                out.status = Some(12);
                out.stderr = b"checksum mismatch".to_vec();
            }
        } else if exec.script.contains("did not answer 2xx") {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.unhealthy.lock().unwrap().contains(&self.name) {
                out.status = Some(5);
                out.stderr = b"did not answer 2xx".to_vec();
            }
        }
        Ok(out)
    }
}

/// `count` timed hosts in batches of 2; the stagings finished, and the
/// most that ran at once.
fn timed_rollout(
    count: usize,
    stage: Duration,
    unhealthy: &[&str],
) -> (Rollout, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let staged = Arc::new(AtomicUsize::new(0));
    let (staging, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let unhealthy = Arc::new(Mutex::new(
        unhealthy.iter().map(|h| h.to_string()).collect(),
    ));
    let hosts = (1..=count)
        .map(|i| Host {
            name: format!("h{i}"),
            address: format!("127.0.0.{i}"),
            remote: Arc::new(Timed {
                name: format!("h{i}"),
                stage,
                unhealthy: unhealthy.clone(),
                staged: staged.clone(),
                staging: staging.clone(),
                peak: peak.clone(),
            }),
        })
        .collect();
    let r = Rollout {
        app: app(Path::new("/srv/timed"), 8080, "/healthz"),
        payload: Payload {
            version: "v2".into(),
            digest: "d".into(),
            stage: Some(Stage {
                script: "STAGE".into(),
                archive: vec![0u8; 16].into(),
            }),
        },
        hosts,
        batch: BatchSize::Hosts(2),
        max_fail: 0,
        balancer: None,
        on_event: Arc::new(|_| {}),
        fence: Arc::new(|| None),
    };
    (r, staged, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_is_staged_before_any_switches_a_bounded_number_at_once() {
    let hosts = 2 * rollout::STAGE_AT_ONCE + 1;
    let (r, staged, peak) = timed_rollout(hosts, Duration::from_millis(50), &[]);
    let done = rollout::run(r).await;
    assert_eq!(
        done.outcome,
        ReleaseOutcome::Succeeded,
        "{:#?}",
        done.events
    );
    assert_eq!(staged.load(Ordering::SeqCst), hosts);
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (2..=rollout::STAGE_AT_ONCE).contains(&peak),
        "{peak} stagings at once"
    );
    let e = &done.events;
    let last_stage = e.iter().rposition(|e| e.step == "stage").unwrap();
    let first_switch = e.iter().position(|e| e.step == "switch").unwrap();
    assert!(last_stage < first_switch, "{e:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_rollout_moves_none_of_the_hosts_it_did_not_reach() {
    let (r, staged, _) = timed_rollout(4, Duration::from_millis(50), &["h1"]);
    let done = rollout::run(r).await;
    assert_eq!(
        done.outcome,
        ReleaseOutcome::RolledBack,
        "{:#?}",
        done.events
    );
    // Batch 2 was staged with the others (unpacked, not live), and nothing
    // else of it ran.
    assert_eq!(staged.load(Ordering::SeqCst), 4);
    for next in ["h3", "h4"] {
        let host = done.hosts.iter().find(|h| h.host == next).unwrap();
        assert_eq!(host.outcome, HostOutcome::Skipped);
        let steps: Vec<&str> = done
            .events
            .iter()
            .filter(|e| e.host.as_deref() == Some(next))
            .map(|e| e.step.as_str())
            .collect();
        assert_eq!(steps, ["stage"]);
    }
    let h2 = done.hosts.iter().find(|h| h.host == "h2").unwrap();
    assert_eq!(h2.outcome, HostOutcome::RolledBack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_staging_fails_stops_the_release_before_any_switch() {
    let (r, staged, _) = timed_rollout(4, Duration::ZERO, &[]);
    let done = rollout::run(r).await;
    assert_eq!(
        done.outcome,
        ReleaseOutcome::RolledBack,
        "{:#?}",
        done.events
    );
    assert_eq!(staged.load(Ordering::SeqCst), 4, "{:#?}", done.events);
    assert!(
        !done.events.iter().any(|e| e.step == "switch"),
        "{:#?}",
        done.events
    );
    let stop = done.events.iter().find(|e| e.step == "stop").unwrap();
    assert!(
        stop.message.contains("nothing was switched"),
        "{}",
        stop.message
    );
    let h1 = done.hosts.iter().find(|h| h.host == "h1").unwrap();
    assert_eq!(h1.outcome, HostOutcome::Failed);
    assert_eq!(h1.message.as_deref(), Some("checksum mismatch"));
    assert!(
        done.hosts
            .iter()
            .filter(|h| h.host != "h1")
            .all(|h| h.outcome == HostOutcome::Skipped)
    );
}

/// What `cairn heal` uses of the rollout: one probe tells a live service
/// from a killed one; `restart_host` brings a killed one back without
/// switching anything, and fails, saying why, when its release is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_tells_a_killed_service_and_restart_host_brings_it_back() {
    let (dir, install, port, a) = local_app("/index.html");
    // A service with a child of its own: a restart stops the whole group.
    let child_pid = dir.path().join("child.pid");
    let serve = format!(
        "sleep 600 &\necho $! > {}\nexec python3 -m http.server \"$PORT\" --bind \"$CAIRN_ADDRESS\"\n",
        child_pid.display()
    );
    let v1 = release(
        &a,
        &install,
        "v1",
        &[("index.html", "v1"), ("serve", &serve)],
    )
    .await;
    assert_eq!(v1.outcome, ReleaseOutcome::Succeeded, "{:?}", v1.events);
    let host = Host {
        name: "local".into(),
        address: "127.0.0.1".into(),
        remote: Arc::new(LocalHost::new("local")),
    };
    rollout::probe(&a, &host).await.unwrap();
    let child = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .to_string();
    let (result, _) = rollout::restart_host(&a, &host, None, Arc::new(|_| {})).await;
    result.unwrap();
    let gone = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(") ").next().unwrap_or("").starts_with('Z')
        })
    };
    let mut stopped = false;
    for _ in 0..100 {
        stopped = gone(&child);
        if stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stopped,
        "the old service's child {child} outlived the restart"
    );
    let new_child = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new_child, child);

    // A real SIGKILL to the service's process group.
    stop(&install);
    let mut found = Ok(());
    for _ in 0..100 {
        found = rollout::probe(&a, &host).await;
        if found.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = found.unwrap_err();
    assert!(why.contains("the service exited"), "{why}");

    let (result, events) = rollout::restart_host(&a, &host, None, Arc::new(|_| {})).await;
    result.unwrap();
    let steps: Vec<&str> = events.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(steps, ["restart", "health"]);
    assert_eq!(get(port), "v1");
    rollout::probe(&a, &host).await.unwrap();

    // Its releases gone: a restart starts nothing and says so.
    stop(&install);
    std::fs::remove_dir_all(install.join("releases")).unwrap();
    let (result, _) = rollout::restart_host(&a, &host, None, Arc::new(|_| {})).await;
    let why = result.unwrap_err();
    assert!(
        why.starts_with("health: the service exited before"),
        "{why}"
    );
    stop(&install);
}
