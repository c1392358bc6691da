//! The init's loop as an ordinary child-process supervisor: real
//! processes, signals and a real control socket, in a directory of the
//! test's own (not PID 1, so it reaps only what it started).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::control::{Request, Response, ServiceError, ServiceStatus, request};
use super::{Config, Paths, UserData, run};

struct TestInit {
    dir: PathBuf,
    socket: PathBuf,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A directory of the test's own, removed when the test ends.
fn temp_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("cairn-init-{name}-"))
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    dir
}

impl TestInit {
    fn config(dir: &Path) -> Config {
        Config {
            paths: Paths {
                unit_dirs: vec![dir.join("etc"), dir.join("lib")],
                config_dir: dir.join("etc"),
                log_dir: dir.join("log"),
                events: dir.join("run/events.jsonl"),
            },
            socket: dir.join("run/init.sock"),
            user_data: Some(UserData {
                script: dir.join("user_data"),
                done: dir.join("state/user_data.done"),
                log: dir.join("log/user-data.log"),
            }),
            sshd: false,
            agent: false,
            pid1: false,
            grace: Duration::from_secs(1),
        }
    }

    async fn start(dir: &Path) -> TestInit {
        let config = TestInit::config(dir);
        let socket = config.socket.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the init did not bind");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestInit {
            dir: dir.to_path_buf(),
            socket,
            shutdown,
            task: Some(task),
        }
    }

    fn unit(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(format!("etc/{name}.service")), text).unwrap();
    }

    async fn ask(&self, r: Request) -> Response {
        request(&self.socket, &r).await.unwrap()
    }

    async fn ok(&self, r: Request) -> ServiceStatus {
        match self.ask(r.clone()).await {
            Response::Service { service } => service,
            other => panic!("{r:?}: {other:?}"),
        }
    }

    async fn err(&self, r: Request) -> ServiceError {
        match self.ask(r.clone()).await {
            Response::Error { error } => error,
            other => panic!("{r:?} should fail: {other:?}"),
        }
    }

    async fn status(&self, name: &str) -> ServiceStatus {
        self.ok(status(name)).await
    }

    /// Polls the status until `f` holds (bounded).
    async fn until(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&ServiceStatus) -> bool,
    ) -> ServiceStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.status(name).await;
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{name}: {what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("run/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn tags(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["tag"].as_str().unwrap().to_string())
            .collect()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("log/{name}.log"))).unwrap_or_default()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the init stops")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestInit {
    fn drop(&mut self) {
        // A failed test: its services are in process groups of their own.
        if let Some(task) = &self.task {
            self.shutdown.cancel();
            task.abort();
            for e in self.events() {
                if let Some(pid) = e["pid"].as_i64() {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: its /proc stat says Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn start(name: &str) -> Request {
    Request::Start { name: name.into() }
}

fn stop(name: &str) -> Request {
    Request::Stop { name: name.into() }
}

fn reload(name: &str) -> Request {
    Request::Reload { name: name.into() }
}

fn enable(name: &str) -> Request {
    Request::Enable { name: name.into() }
}

fn status(name: &str) -> Request {
    Request::Status { name: name.into() }
}

const SLEEPER: &str = "[Unit]\nDescription=sleeps\n[Service]\n\
    Environment=GREETING=hi\nExecStart=/bin/sh -c 'echo \"$GREETING from $PWD\"; exec sleep 1000'\n\
    WorkingDirectory=/tmp\n[Install]\nWantedBy=multi-user.target\n";

#[tokio::test]
async fn start_status_stop_and_the_event_log() {
    let tmp = temp_dir("basic");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    init.unit("sleeper", SLEEPER);
    let inactive = init.status("sleeper").await;
    assert_eq!((inactive.state.as_str(), inactive.pid), ("inactive", None));

    let s = init.ok(start("sleeper.service")).await;
    assert_eq!(s.state, "active");
    assert_eq!(s.description.as_deref(), Some("sleeps"));
    let pid = s.pid.unwrap();
    assert!(alive(pid));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !init.log("sleeper").contains("hi from /tmp") {
        assert!(Instant::now() < deadline, "log: {}", init.log("sleeper"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second start of a running service changes nothing.
    assert_eq!(init.ok(start("sleeper")).await.pid, Some(pid));

    let s = init.ok(stop("sleeper")).await;
    assert_eq!(
        (s.state.as_str(), s.pid),
        ("inactive", None),
        "answered once gone"
    );
    assert!(!alive(pid));
    assert_eq!(s.last_exit.as_deref(), Some("killed by SIGTERM"));
    let events = init.events();
    assert_eq!(
        init.tags(),
        [
            "cairn/service/sleeper/started",
            "cairn/service/sleeper/stopped"
        ]
    );
    assert_eq!(events[0]["pid"], pid);
    assert_eq!(events[1]["exit"], "killed by SIGTERM");
    assert!(events[0]["time"].as_str().unwrap().contains('T'));

    let list = match init.ask(Request::List).await {
        Response::Services { services } => services,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["sleeper"]
    );
    init.stop().await;
}

#[tokio::test]
async fn restart_always_brings_a_killed_service_back_with_a_new_pid() {
    let tmp = temp_dir("always");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    init.unit(
        "keeper",
        "[Service]\nExecStart=/bin/sleep 1000\nRestart=always\nRestartSec=200ms\n",
    );
    let first = init.ok(start("keeper")).await.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = init
        .until("keeper", "restarted", |s| s.pid.is_some_and(|p| p != first))
        .await;
    assert_eq!((s.state.as_str(), s.restarts), ("active", 1));
    assert_eq!(s.last_exit.as_deref(), Some("killed by SIGKILL"));
    assert_eq!(
        init.tags(),
        [
            "cairn/service/keeper/started",
            "cairn/service/keeper/failed",
            "cairn/service/keeper/restarted"
        ]
    );
    // A requested restart: a new pid, answered once it runs again.
    let before = s.pid.unwrap();
    let r = init
        .ok(Request::Restart {
            name: "keeper".into(),
        })
        .await;
    assert_eq!(r.state, "active");
    assert!(r.pid.is_some_and(|p| p != before) && !alive(before));
    init.stop().await;
    assert!(!alive(r.pid.unwrap()), "shutdown stops it");
}

#[tokio::test]
async fn a_crash_loop_hits_the_start_limit_and_a_clean_exit_is_not_restarted() {
    let tmp = temp_dir("limit");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    init.unit(
        "crashy",
        "[Service]\nExecStart=/bin/sh -c 'echo crashing; exit 3'\nRestart=on-failure\nRestartSec=10ms\n",
    );
    init.ok(start("crashy")).await;
    let s = init
        .until("crashy", "failed", |s| s.state == "failed")
        .await;
    assert_eq!(s.restarts as usize, super::supervisor::START_LIMIT - 1);
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("started 5 times within 10s"),
        "{s:?}"
    );
    assert_eq!(s.last_exit.as_deref(), Some("exited 3"));
    assert_eq!(
        init.log("crashy")
            .lines()
            .filter(|l| *l == "crashing")
            .count(),
        5
    );
    // Started by hand, it gets its five starts again.
    init.ok(start("crashy")).await;
    init.until("crashy", "failed again", |s| {
        s.state == "failed" && s.restarts == 8
    })
    .await;

    init.unit(
        "once",
        "[Service]\nExecStart=/bin/true\nRestart=on-failure\n",
    );
    init.ok(start("once")).await;
    let s = init.until("once", "gone", |s| s.state == "inactive").await;
    assert_eq!((s.restarts, s.last_exit.as_deref()), (0, Some("exited 0")));
    init.unit("fails", "[Service]\nExecStart=/bin/false\n");
    init.ok(start("fails")).await;
    let s = init.until("fails", "failed", |s| s.state == "failed").await;
    assert_eq!(s.error.as_deref(), Some("its main process exited 1"));
    init.stop().await;
}

#[tokio::test]
async fn stop_kills_the_whole_group_after_its_timeout() {
    let tmp = temp_dir("group");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    // The shell ignores TERM; its child (in its group) would outlive it.
    init.unit(
        "stubborn",
        "[Service]\nExecStart=/bin/sh -c 'trap \"\" TERM; sleep 1000 & echo child $! ; wait'\n\
         TimeoutStopSec=300ms\n",
    );
    let pid = init.ok(start("stubborn")).await.pid.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let child: u32 = loop {
        if let Some(c) = init
            .log("stubborn")
            .lines()
            .find_map(|l| l.strip_prefix("child "))
        {
            break c.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let s = init.ok(stop("stubborn")).await;
    assert_eq!(s.state, "inactive");
    assert_eq!(s.last_exit.as_deref(), Some("killed by SIGKILL"));
    assert!(!alive(pid));
    // The orphaned sleep is the test process's grandchild: it goes to the
    // subreaper (or PID 1) once killed; it must not be running.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(child) {
        assert!(
            Instant::now() < deadline,
            "the group's child {child} survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    init.stop().await;
}

#[tokio::test]
async fn exec_stop_exec_reload_and_hup() {
    let tmp = temp_dir("helpers");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    let marks = dir.join("marks");
    init.unit(
        "managed",
        &format!(
            "[Service]\nExecStart=/bin/sleep 1000\n\
             ExecReload=/bin/sh -c 'echo reload $MAINPID >> {m}'\n\
             ExecStop=/bin/sh -c 'echo stop $MAINPID >> {m}; kill $MAINPID'\n",
            m = marks.display()
        ),
    );
    let pid = init.ok(start("managed")).await.pid.unwrap();
    let r = init.ok(reload("managed")).await;
    assert_eq!(r.pid, Some(pid));
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!("reload {pid}\n"),
        "the reply comes once ExecReload has run"
    );
    init.ok(stop("managed")).await;
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!("reload {pid}\nstop {pid}\n")
    );

    init.unit(
        "failing-reload",
        "[Service]\nExecStart=/bin/sleep 1000\nExecReload=/bin/false\n",
    );
    init.ok(start("failing-reload")).await;
    let e = init.err(reload("failing-reload")).await;
    assert_eq!(
        e,
        ServiceError::Failed("failing-reload: reload failed: exited 1".into())
    );
    let e = init.err(reload("managed")).await;
    assert_eq!(e.to_string(), "managed is inactive, it cannot be reloaded");

    // No ExecReload: HUP to the main process.
    init.unit(
        "hup",
        "[Service]\nExecStart=/bin/sh -c 'trap \"echo got HUP\" HUP; while :; do sleep 0.05; done'\n",
    );
    init.ok(start("hup")).await;
    init.ok(reload("hup")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !init.log("hup").contains("got HUP") {
        assert!(Instant::now() < deadline, "{}", init.log("hup"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    init.stop().await;
}

#[tokio::test]
async fn enable_links_like_systemctl_and_enabled_services_start_at_boot() {
    let tmp = temp_dir("enable");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    init.unit("sleeper", SLEEPER);
    let s = init.ok(enable("sleeper")).await;
    assert_eq!((s.enabled, s.state.as_str()), (true, "inactive"));
    let link = dir.join("etc/multi-user.target.wants/sleeper.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        dir.join("etc/sleeper.service")
    );
    // Again: nothing changes.
    init.ok(enable("sleeper")).await;

    init.unit("plain", "[Service]\nExecStart=/bin/sleep 1000\n");
    let e = init.err(enable("plain")).await;
    assert!(
        e.to_string()
            .contains("plain has no WantedBy= in an [Install] section"),
        "{e}"
    );
    // A unit in the second directory links to its own path there.
    std::fs::write(dir.join("lib/vendor.service"), SLEEPER).unwrap();
    init.ok(enable("vendor")).await;
    assert_eq!(
        std::fs::read_link(dir.join("etc/multi-user.target.wants/vendor.service")).unwrap(),
        dir.join("lib/vendor.service")
    );
    init.stop().await;

    // The next boot starts what is enabled.
    let init = TestInit::start(dir).await;
    let s = init
        .until("sleeper", "started at boot", |s| s.state == "active")
        .await;
    assert!(s.enabled);
    init.until("vendor", "started at boot", |s| s.state == "active")
        .await;
    let s = init
        .ok(Request::Disable {
            name: "sleeper".into(),
        })
        .await;
    assert_eq!((s.enabled, s.state.as_str()), (false, "active"));
    assert!(link.symlink_metadata().is_err());
    init.stop().await;
}

#[tokio::test]
async fn unknown_and_broken_units_and_bad_names_are_clear_errors() {
    let tmp = temp_dir("errors");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    let e = init.err(start("nope")).await;
    assert!(matches!(e, ServiceError::Unknown(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("no service `nope`: no nope.service in "),
        "{e}"
    );
    let e = init.err(status("nope")).await;
    assert!(matches!(e, ServiceError::Unknown(_)));

    init.unit(
        "broken",
        "[Service]\nExecStart=/bin/true\nRestart=sometimes\n",
    );
    let e = init.err(start("broken")).await;
    assert!(matches!(e, ServiceError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("broken: the unit file cannot be used: ")
            && e.to_string()
                .contains("broken.service:3: Restart: `sometimes` is not one of"),
        "{e}"
    );
    assert_eq!(init.status("broken").await.state, "inactive");

    init.unit("missing", "[Service]\nExecStart=/nonexistent/program\n");
    let e = init.err(start("missing")).await;
    assert!(
        e.to_string()
            .contains("`/nonexistent/program` did not start: No such file"),
        "{e}"
    );
    let s = init.status("missing").await;
    assert_eq!(s.state, "failed");
    assert!(
        init.tags()
            .contains(&"cairn/service/missing/failed".to_string())
    );

    init.unit(
        "nouser",
        "[Service]\nExecStart=/bin/true\nUser=no-such-user-here\n",
    );
    let e = init.err(start("nouser")).await;
    assert!(
        e.to_string()
            .contains("User=no-such-user-here: no such user"),
        "{e}"
    );

    let e = init.err(start("../../etc/passwd")).await;
    assert!(matches!(e, ServiceError::Refused(_)), "{e:?}");

    // A connection that sends no request gets an error, the init goes on.
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::UnixStream::connect(&init.socket).await.unwrap();
        c.write_all(b"{\"op\":\"explode\"}\n").await.unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).await.unwrap();
        s
    };
    assert!(
        raw.contains("\"kind\":\"refused\"") && raw.contains("not a request"),
        "{raw}"
    );
    init.stop().await;
}

#[tokio::test]
async fn user_and_environment_file_apply_and_shutdown_stops_in_reverse_order() {
    let tmp = temp_dir("user");
    let dir = tmp.path();
    let init = TestInit::start(dir).await;
    let envfile = dir.join("env");
    std::fs::write(&envfile, "COLOR=\"blue\"\n").unwrap();
    init.unit(
        "asnobody",
        &format!(
            "[Service]\nUser=nobody\nEnvironmentFile={}\nEnvironmentFile=-/nonexistent\n\
             ExecStart=/bin/sh -c 'echo \"uid $(id -u) $COLOR $USER\"; exec sleep 1000'\n",
            envfile.display()
        ),
    );
    init.unit("second", "[Service]\nExecStart=/bin/sleep 1000\n");
    init.ok(start("asnobody")).await;
    init.ok(start("second")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !init.log("asnobody").lines().any(|l| l.starts_with("uid ")) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert!(
        init.log("asnobody")
            .contains(&format!("uid {nobody} blue nobody")),
        "{}",
        init.log("asnobody")
    );
    init.unit(
        "needsfile",
        "[Service]\nEnvironmentFile=/nonexistent/env\nExecStart=/bin/true\n",
    );
    let e = init.err(start("needsfile")).await;
    assert!(
        e.to_string().contains("EnvironmentFile /nonexistent/env"),
        "{e}"
    );

    let events = dir.join("run/events.jsonl");
    init.stop().await;
    let tags: Vec<String> = std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| t.ends_with("/stopped"))
        .collect();
    assert_eq!(
        tags,
        [
            "cairn/service/second/stopped",
            "cairn/service/asnobody/stopped"
        ],
        "the last started stops first"
    );
}

#[tokio::test]
async fn user_data_runs_once_and_records_its_exit_code() {
    let tmp = temp_dir("userdata");
    let dir = tmp.path();
    std::fs::write(
        dir.join("user_data"),
        "#!/bin/sh\necho ran >> \"$0.count\"\nexit 7\n",
    )
    .unwrap();
    let done = dir.join("state/user_data.done");
    let init = TestInit::start(dir).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&done).unwrap_or_default() != "7\n" {
        assert!(Instant::now() < deadline, "no done marker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    init.stop().await;
    let init = TestInit::start(dir).await;
    init.stop().await;
    assert_eq!(
        std::fs::read_to_string(dir.join("user_data.count")).unwrap(),
        "ran\n",
        "a second boot does not run it again"
    );
}

#[tokio::test]
async fn an_executable_user_data_runs_with_its_interpreter() {
    if !Path::new("/bin/bash").is_file() {
        eprintln!("skipped: no bash");
        return;
    }
    let tmp = temp_dir("shebang");
    let dir = tmp.path();
    let script = dir.join("user_data");
    // `[[` is bash's: under sh this exits 127.
    std::fs::write(&script, "#!/bin/bash\n[[ 1 == 1 ]] && echo bash\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let done = dir.join("state/user_data.done");
    let init = TestInit::start(dir).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.exists() {
        assert!(Instant::now() < deadline, "no done marker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "0\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("log/user-data.log")).unwrap(),
        "bash\n"
    );
    init.stop().await;
}
