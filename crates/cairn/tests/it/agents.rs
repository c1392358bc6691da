//! `cairn master`, `cairn agent` and `cairn keys` through the binary, on
//! loopback: each agent a child process of the test with its own directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::{Output, cairn_env, command};

pub struct Fleet {
    pub dir: PathBuf,
    addr: String,
    fingerprint: String,
    master: Child,
    agents: BTreeMap<String, Child>,
    token: Option<PathBuf>,
}

impl Fleet {
    pub fn start(name: &str, token: bool) -> Fleet {
        Fleet::start_with(name, token, &[])
    }

    /// With more arguments for `cairn master` (`--reactors FILE`).
    pub fn start_with(name: &str, token: bool, extra: &[&str]) -> Fleet {
        let dir = std::env::temp_dir().join(format!("cairn-agents-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mdir = dir.join("master");
        let token = token.then(|| {
            let t = dir.join("token");
            std::fs::write(&t, "s3cret-enrolment-token\n").unwrap();
            t
        });
        // The state where `cairn run` records jobs, so reactions' jobs
        // are recorded beside them.
        let state = dir.join("state.db").display().to_string();
        let key = dir.join("key").display().to_string();
        let mut args = vec![
            "master",
            "--listen",
            &addr,
            "--dir",
            mdir.to_str().unwrap(),
            "--state",
            &state,
        ];
        if let Some(t) = &token {
            args.extend(["--token-file", t.to_str().unwrap()]);
        }
        args.extend(extra);
        let master = command(&args, &[("CAIRN_LOG", "info"), ("CAIRN_KEY_FILE", &key)])
            .stderr(File::create(dir.join("master.log")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let fp_file = mdir.join("master.fingerprint");
        let fingerprint = wait(Duration::from_secs(10), || {
            std::fs::read_to_string(&fp_file)
                .ok()
                .filter(|_| mdir.join("admin.sock").exists())
        })
        .expect("the master starts");
        Fleet {
            dir,
            addr,
            fingerprint: fingerprint.trim().to_string(),
            master,
            agents: BTreeMap::new(),
            token,
        }
    }

    pub fn master_dir(&self) -> String {
        self.dir.join("master").display().to_string()
    }

    /// The file an agent tails for its init's service events.
    pub fn services(&self, id: &str) -> PathBuf {
        self.dir.join(format!("services-{id}.jsonl"))
    }

    pub fn agent(&mut self, id: &str) {
        let adir = self.dir.join(format!("agent-{id}"));
        let services = self.services(id).display().to_string();
        let mut args = vec![
            "agent",
            "--master",
            &self.addr,
            "--id",
            id,
            "--dir",
            adir.to_str().unwrap(),
            "--master-fingerprint",
            &self.fingerprint,
            "--heartbeat",
            "1",
            "--service-events",
            &services,
            "--debounce-ms",
            "100",
        ];
        let token = self.token.clone();
        if let Some(t) = &token {
            args.extend(["--token-file", t.to_str().unwrap()]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent-{id}.log")))
            .unwrap();
        let child = command(&args, &[("CAIRN_LOG", "info"), ("AGENT_MARK", id)])
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.agents.insert(id.to_string(), child);
    }

    /// `cairn agent --bench N`: agents `prefix-0001`... in one process.
    pub fn bench_agents(&mut self, prefix: &str, n: u32) {
        let adir = self.dir.join(format!("agent-{prefix}"));
        let n = n.to_string();
        let mut args = vec![
            "agent",
            "--master",
            &self.addr,
            "--id",
            prefix,
            "--dir",
            adir.to_str().unwrap(),
            "--master-fingerprint",
            &self.fingerprint,
            "--bench",
            &n,
        ];
        let token = self.token.clone();
        if let Some(t) = &token {
            args.extend(["--token-file", t.to_str().unwrap()]);
        }
        let log = File::create(self.dir.join(format!("agent-{prefix}.log"))).unwrap();
        let child = command(&args, &[("CAIRN_LOG", "warn")])
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.agents.insert(prefix.to_string(), child);
    }

    fn kill(&mut self, id: &str) {
        let mut c = self.agents.remove(id).unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let md = self.master_dir();
        let state = self.dir.join("state.db").display().to_string();
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(at..at, ["--master-dir", &md, "--state", &state]);
        let key = self.dir.join("key").display().to_string();
        cairn_env(&all, &[("CAIRN_KEY_FILE", &key)])
    }

    /// `cairn run TARGET -i HOSTS --via agent -o json -- CMD`.
    pub fn run(&self, target: &str, hosts: &str, cmd: &str) -> (J, Output) {
        let out = self.cairn(&[
            "run", target, "-i", hosts, "--via", "agent", "-T", "5", "-o", "json", "--", cmd,
        ]);
        let job = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}:\n{}", out.snapshot()));
        (job, out)
    }

    pub fn keys(&self) -> J {
        let out = self.cairn(&["keys", "-o", "json"]);
        assert_eq!(out.code, 0, "{}", out.snapshot());
        serde_json::from_str(&out.stdout).unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.agents.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn wait<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn status(job: &J, host: &str) -> (String, String, String) {
    let h = job["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no {host} in {job}"));
    let s = |k: &str| h[k].as_str().unwrap_or("").to_string();
    (s("status"), s("stdout"), s("error"))
}

/// Waits until `host`'s agent answers a job.
pub fn until_served(fleet: &Fleet, host: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    wait(within, || {
        let (job, _) = fleet.run(host, &format!("{host},"), "true");
        (status(&job, host).0 == "changed").then(|| start.elapsed())
    })
}

#[test]
fn agents_enrol_run_jobs_and_are_cut_off_when_revoked_and_reconnect_when_restarted() {
    let mut fleet = Fleet::start("lifecycle", false);
    let hosts = "a1,a2,a3,";
    for id in ["a1", "a2", "a3"] {
        fleet.agent(id);
    }
    // Each connects, and is recorded pending.
    wait(Duration::from_secs(10), || {
        let keys = fleet.keys();
        (keys.as_array().unwrap().len() == 3
            && keys
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["status"] == "pending"))
        .then_some(())
    })
    .expect("three pending keys");
    // A pending agent is served nothing.
    let marker = fleet.dir.join("marker-pending");
    let (job, out) = fleet.run("*", hosts, &format!("touch {}", marker.display()));
    assert_eq!(out.code, 1);
    for id in ["a1", "a2", "a3"] {
        let (s, _, e) = status(&job, id);
        assert_eq!(
            (s.as_str(), e.as_str()),
            ("unreachable", "agent not connected")
        );
    }
    assert!(!marker.exists());
    assert!(fleet.log("master").contains("key pending: served nothing"));
    assert!(
        fleet
            .log("agent-a1")
            .contains("has not accepted this agent's key yet")
    );

    // Accepted, each runs the command on itself.
    for id in ["a1", "a2", "a3"] {
        let out = fleet.cairn(&["keys", "accept", id, "-o", "json"]);
        assert_eq!(out.code, 0, "{}", out.snapshot());
        assert!(out.stdout.contains("\"accepted\""), "{}", out.snapshot());
    }
    for id in ["a1", "a2", "a3"] {
        until_served(&fleet, id, Duration::from_secs(5)).expect("served once accepted");
    }
    let (job, out) = fleet.run("*", hosts, "echo mark=$AGENT_MARK; hostname");
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for id in ["a1", "a2", "a3"] {
        let (s, stdout, _) = status(&job, id);
        assert_eq!(s, "changed");
        assert_eq!(stdout, format!("mark={id}\n{}\n", hostname.trim()));
    }
    // The job is recorded as an SSH job is.
    let id = job["id"].as_str().unwrap();
    let state = fleet.dir.join("state.db").display().to_string();
    let key = fleet.dir.join("key").display().to_string();
    let shown = cairn_env(
        &["jobs", "show", id, "-o", "json", "--state", &state],
        &[("CAIRN_KEY_FILE", &key)],
    );
    assert_eq!(shown.code, 0, "{}", shown.snapshot());
    assert!(shown.stdout.contains("mark=a2"));

    // Revoked: cut off at once, refused when it comes back.
    let out = fleet.cairn(&["keys", "revoke", "a3", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let marker = fleet.dir.join("marker-revoked");
    let (job, _) = fleet.run("a3", hosts, &format!("touch {}", marker.display()));
    assert_eq!(status(&job, "a3").0, "unreachable");
    assert!(
        fleet
            .log("master")
            .contains("closed the connection of a revoked agent")
    );
    wait(Duration::from_secs(5), || {
        fleet
            .log("agent-a3")
            .contains("the master refused this agent")
            .then_some(())
    })
    .expect("the revoked agent is refused when it reconnects");
    let (job, _) = fleet.run("a3", hosts, &format!("touch {}", marker.display()));
    assert_eq!(status(&job, "a3").0, "unreachable");
    assert!(!marker.exists());

    // Killed: a job sent while it is away is unreachable at once, not hung.
    fleet.kill("a1");
    let start = Instant::now();
    let (job, out) = fleet.run("a1", hosts, "true");
    assert_eq!(status(&job, "a1").0, "unreachable", "{}", out.snapshot());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // Restarted: served again within 2 s.
    fleet.agent("a1");
    let took = until_served(&fleet, "a1", Duration::from_secs(5)).expect("reconnects");
    eprintln!("a1 restarted and served after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The others never noticed.
    let (job, _) = fleet.run("a2", hosts, "true");
    assert_eq!(status(&job, "a2").0, "changed");
}

#[test]
fn a_state_file_applies_through_an_agent_and_a_second_run_changes_nothing() {
    let mut fleet = Fleet::start("state", true);
    fleet.agent("s1");
    until_served(&fleet, "s1", Duration::from_secs(10)).expect("enrolled by token");
    assert_eq!(fleet.keys()[0]["status"], "accepted");
    let target = fleet.dir.join("motd");
    let sls = fleet.dir.join("motd.sls");
    std::fs::write(
        &sls,
        format!(
            "motd:\n  file.managed:\n    - name: {}\n    - contents: \"hello {{{{ host }}}} {{{{ vars.who }}}}\"\n",
            target.display()
        ),
    )
    .unwrap();
    let apply = |fleet: &Fleet| {
        let out = fleet.cairn(&[
            "state",
            "apply",
            "s1",
            "-i",
            "s1,",
            sls.to_str().unwrap(),
            "--var",
            "who=agent",
            "--via",
            "agent",
            "-o",
            "json",
        ]);
        let job: J = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}:\n{}", out.snapshot()));
        status(&job, "s1").0
    };
    assert_eq!(apply(&fleet), "changed");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap().trim(),
        "hello s1 agent"
    );
    assert_eq!(apply(&fleet), "ok");
}

/// One command on 100 agent processes, wall time; idle RSS of one agent.
/// `cargo test -p cairn --no-default-features --test it agents::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_one_command_on_a_hundred_agents() {
    let n = 100;
    let mut fleet = Fleet::start("bench", true);
    let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    for id in &ids {
        fleet.agent(id);
    }
    let hosts = format!("{},", ids.join(","));
    wait(Duration::from_secs(60), || {
        let (job, _) = fleet.run("*", &hosts, "true");
        (job["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "changed"))
        .then_some(())
    })
    .expect("all enrolled");
    let mut times = vec![];
    for _ in 0..5 {
        let start = Instant::now();
        let (job, out) = fleet.run("*", &hosts, "hostname");
        times.push(start.elapsed());
        assert_eq!(out.code, 0, "{}", out.snapshot());
        assert_eq!(job["hosts"].as_array().unwrap().len(), n);
    }
    eprintln!("cairn run on {n} agents: {times:?}");
    std::thread::sleep(Duration::from_secs(3));
    let pid = fleet.agents["b0"].id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    eprintln!("idle agent {rss}");
}
