//! Services on local servers, through the binary: a runc server's PID 1 is
//! `cairn init`; a state applied over SSH writes a unit file and its
//! config and wants the service running and enabled, with `watch` on the
//! config. Skipped, saying why, when the machine cannot run servers as
//! hosts (see `hosts`), or has no sshd for the state's SSH transport.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::get;
use super::hosts::{RuncCloud, free_cidr, one_network, skip_unless_ready, unready};

fn template(cidr: &str) -> String {
    format!(
        r#"{}  fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: 22, from: 0.0.0.0/0}}
        - {{protocol: tcp, port: 8080, from: 0.0.0.0/0}}
  deployer:
    type: key_pair
    properties: {{name: deployer}}
  web:
    type: server
    properties:
      name: web-0
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ fw.id }}}}"]
      key_pair: "{{{{ deployer.id }}}}"
      user_data: |
        #!/bin/sh
        echo ran >> /root/user-data-runs
"#,
        one_network(cidr)
    )
}

/// The state: a unit file, its config, the service running and enabled,
/// restarted when the config changes.
fn sls(text: &str) -> String {
    format!(
        r#"echo-unit:
  file.managed:
    - name: /etc/systemd/system/echo.service
    - content: |
        [Unit]
        Description=says what its config says
        [Service]
        EnvironmentFile=/etc/echo.conf
        ExecStart=/usr/local/bin/cairn util http-echo --port 8080 --text ${{TEXT}}
        Restart=always
        RestartSec=200ms
        [Install]
        WantedBy=multi-user.target
echo-conf:
  file.managed:
    - name: /etc/echo.conf
    - content: "TEXT={text}\n"
echo:
  service.running:
    - name: echo
    - enabled: true
    - require:
      - file: echo-unit
    - watch:
      - file: echo-conf
"#
    )
}

struct Server<'a> {
    c: &'a RuncCloud,
    t: String,
}

impl Server<'_> {
    /// `cairn local exec web -- ARGS`.
    fn exec(&self, args: &[&str]) -> crate::Output {
        let mut all = vec!["local", "exec", "web", "--"];
        all.extend(args);
        self.c.run(&all)
    }

    /// `cairn service echo status` inside the server.
    fn status(&self) -> Value {
        let out = self.exec(&["cairn", "service", "echo", "status", "-o", "json"]);
        assert!(matches!(out.code, 0 | 3), "{}", out.snapshot());
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `state apply` of `text`'s state; the host's status (changed/ok).
    fn apply(&self, text: &str) -> String {
        let file = self.c.root().join("echo.sls");
        std::fs::write(&file, sls(text)).unwrap();
        let out = self.c.run(&[
            "state",
            "apply",
            "--via",
            "ssh",
            "web",
            file.to_str().unwrap(),
            "-C",
            &self.t,
            "-o",
            "json",
        ]);
        assert_eq!(out.code, 0, "{}", out.snapshot());
        let j: Value = serde_json::from_str(&out.stdout).unwrap();
        j["hosts"][0]["status"].as_str().unwrap().to_string()
    }
}

/// What the server's echo service answers on `addr`, once it answers
/// with `text` (bounded).
fn wait_answer(addr: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get(addr).unwrap_or_default();
        if body.lines().last() == Some(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} did not answer {text}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_runc_server_supervises_services_a_state_manages() {
    skip_unless_ready!();
    if !Path::new("/usr/sbin/sshd").is_file() {
        eprintln!("skipped: no sshd on this machine for the state's SSH (./scripts/install-deps)");
        return;
    }
    let mut c = RuncCloud::new("services");
    let cidr = free_cidr(17);
    let t = c.template("services", &template(&cidr), &cidr);
    let out = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let web = c.json(&["show", &t, "--address", "web"]);
    let addr = format!("{}:8080", web["attributes"]["address"].as_str().unwrap());
    let server = Server {
        c: &c,
        t: t.clone(),
    };

    // PID 1 is cairn's init; the image's enabled services (the machine's
    // own, with `image: host`) are not started; sshd and the agent are the
    // init's.
    let ps = server.exec(&["ps", "-e", "-o", "pid=,args="]);
    let first = ps.stdout.lines().next().unwrap_or("").trim().to_string();
    assert!(
        first.starts_with("1 /usr/local/bin/cairn init"),
        "{}",
        ps.stdout
    );
    let list = server.exec(&["cairn", "service", "list", "-o", "json"]);
    assert_eq!(list.code, 0, "{}", list.snapshot());
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert!(names.contains(&("sshd", "active")), "{names:?}");
    // And the agent the cloud enrolled (`local::agents`).
    assert!(names.contains(&("cairn-agent", "active")), "{names:?}");
    assert!(
        names
            .iter()
            .all(|(name, state)| ["sshd", "cairn-agent"].contains(name) || *state != "active"),
        "only sshd and the agent run: {names:?}"
    );

    // The first apply over SSH (sshd may still be starting): changed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first_apply = loop {
        let file = c.root().join("echo.sls");
        std::fs::write(&file, sls("v1")).unwrap();
        let out = c.run(&[
            "state",
            "apply",
            "--via",
            "ssh",
            "web",
            file.to_str().unwrap(),
            "-C",
            &t,
            "-o",
            "json",
        ]);
        if out.code == 0 || Instant::now() > deadline {
            assert_eq!(out.code, 0, "{}", out.snapshot());
            let j: Value = serde_json::from_str(&out.stdout).unwrap();
            break j["hosts"][0]["status"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(first_apply, "changed");
    wait_answer(&addr, "v1");
    let s = server.status();
    assert_eq!(
        (s["state"].as_str(), s["enabled"].as_bool()),
        (Some("active"), Some(true)),
        "{s}"
    );
    let pid1 = s["pid"].as_u64().unwrap();
    let out = server.exec(&[
        "readlink",
        "/etc/systemd/system/multi-user.target.wants/echo.service",
    ]);
    assert_eq!(out.stdout.trim(), "/etc/systemd/system/echo.service");

    // Again: nothing to change.
    assert_eq!(server.apply("v1"), "ok");
    assert_eq!(server.status()["pid"].as_u64(), Some(pid1));

    // A new config: the watch restarts the service (a new pid, new text).
    assert_eq!(server.apply("v2"), "changed");
    let s = server.status();
    let pid2 = s["pid"].as_u64().unwrap();
    assert_ne!(pid2, pid1, "restarted: {s}");
    wait_answer(&addr, "v2");

    // KILLed, Restart=always brings it back with a new pid.
    let out = server.exec(&["kill", "-KILL", &pid2.to_string()]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let s = server.until("restarted after KILL", |s| {
        s["state"] == "active" && s["pid"].as_u64().is_some_and(|p| p != pid2)
    });
    assert!(s["restarts"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["last_exit"], "killed by SIGKILL");
    wait_answer(&addr, "v2");
    let events = server.exec(&["cat", "/run/cairn/events.jsonl"]);
    let tags: Vec<String> = events
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| t.starts_with("cairn/service/echo/"))
        .collect();
    assert_eq!(
        tags,
        [
            "cairn/service/echo/started",
            "cairn/service/echo/stopped",
            "cairn/service/echo/started",
            "cairn/service/echo/failed",
            "cairn/service/echo/restarted"
        ],
        "{}",
        events.stdout
    );

    // Stop and start the cloud: the enabled service is back, user_data
    // ran once, sshd answers (the state applies over SSH: nothing to do).
    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = c.run(&["local", "start", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    server.until("started at boot", |s| s["state"] == "active");
    wait_answer(&addr, "v2");
    // The init's console: its service events, and a clean shutdown on TERM.
    let logs = c.run(&["local", "logs", "web"]);
    assert_eq!(logs.code, 0, "{}", logs.snapshot());
    for line in [
        "cairn init: web-0 up",
        "echo: restarted",
        "cairn init: stopping",
        "echo: stopped",
        "cairn init: stopped",
    ] {
        assert!(logs.stdout.contains(line), "{line}:\n{}", logs.stdout);
    }
    let runs = server.exec(&["cat", "/root/user-data-runs"]);
    assert_eq!(
        runs.stdout,
        "ran\n",
        "user_data runs once: {}",
        runs.snapshot()
    );
    let done = server.exec(&["cat", "/var/lib/cairn/user_data.done"]);
    assert_eq!(done.stdout, "0\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let file = c.root().join("echo.sls");
        let out = c.run(&[
            "state",
            "apply",
            "--via",
            "ssh",
            "web",
            file.to_str().unwrap(),
            "-C",
            &t,
            "-o",
            "json",
        ]);
        if out.code == 0 {
            let j: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(j["hosts"][0]["status"], "ok", "{j}");
            break;
        }
        assert!(Instant::now() < deadline, "{}", out.snapshot());
        std::thread::sleep(Duration::from_millis(300));
    }

    // Errors inside the server: an unknown service, a broken unit file.
    let out = server.exec(&["cairn", "service", "nope", "start"]);
    assert_eq!(out.code, 1, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("error: no service `nope`: no nope.service in /etc/systemd/system"),
        "{}",
        out.stderr
    );
    let out = server.exec(&["cairn", "service", "nope", "status"]);
    assert_eq!(out.code, 4, "{}", out.snapshot());
    let out = server.exec(&[
        "sh",
        "-c",
        "printf '[Service]\\nExecStart=/bin/true\\nRestart=sometimes\\n' > /etc/systemd/system/broken.service",
    ]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let out = server.exec(&["cairn", "service", "broken", "start"]);
    assert_eq!(out.code, 1, "{}", out.snapshot());
    assert!(
        out.stderr.contains(
            "broken: the unit file cannot be used: /etc/systemd/system/broken.service:3: \
             Restart: `sometimes` is not one of"
        ),
        "{}",
        out.stderr
    );
    let out = server.exec(&["cairn", "service", "echo", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let out = server.exec(&["cairn", "service", "echo", "status", "-o", "none"]);
    assert_eq!(out.code, 3, "inactive: {}", out.snapshot());

    let out = c.run(&["destroy", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// Outside a server there is no init to talk to: a clear error.
#[test]
fn cairn_service_without_an_init_says_where_it_runs() {
    let dir = std::env::temp_dir().join(format!("cairn-no-init-{}", std::process::id()));
    let socket = dir.join("init.sock");
    let out = crate::cairn_env(
        &["service", "web", "status"],
        &[("CAIRN_INIT_SOCKET", socket.to_str().unwrap())],
    );
    assert_eq!(out.code, 1, "{}", out.snapshot());
    assert!(
        out.stderr.starts_with(&format!(
            "error: no cairn init answers at {} (",
            socket.display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`cairn service` runs inside a local server of a `runc` cloud"),
        "{}",
        out.stderr
    );
    let out = crate::cairn_env(&["service", "web"], &[]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("give an action: `cairn service web start|stop|"),
        "{}",
        out.stderr
    );
    let out = crate::cairn_env(&["init"], &[]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("`cairn init` is the PID 1 of a local server"),
        "{}",
        out.stderr
    );
}
