//! `cairn master --bus` and `cairn agent --bus` through a real nats-server
//! the test starts on a loopback port (and stops): jobs, two masters with
//! one killed mid-job, and everything the bus must refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn_orch::agent::bus::{ToAgentBus, ToMasterBus, job_subject, result_subject};
use cairn_orch::agent::protocol::{JobKind, JobMessage, ToAgent, ToMaster, now_ms};
use cairn_orch::agent::tls::{Identity, random_hex};
use serde_json::Value as J;

use crate::agents::wait;
use crate::{Output, cairn_env, command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server on 127.0.0.1, killed on drop.
pub struct NatsServer {
    pub port: u16,
    child: Child,
}

impl NatsServer {
    pub fn start(log: &Path) -> NatsServer {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nats-server is not installed: run scripts/install-deps");
        let port = free_port();
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .unwrap();
        let server = NatsServer { port, child };
        wait(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("nats-server listens");
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS client speaking the text protocol by hand: the test's own view
/// of the bus, as any client of the server could publish and listen.
pub struct RawNats {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl RawNats {
    pub fn connect(port: u16) -> RawNats {
        let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut c = RawNats {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        let mut info = String::new();
        c.r.read_line(&mut info).unwrap();
        assert!(info.starts_with("INFO"), "{info}");
        c.w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .unwrap();
        c.ping();
        c
    }

    /// A round trip: everything sent before it reached the server.
    fn ping(&mut self) {
        self.w.write_all(b"PING\r\n").unwrap();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if line.starts_with("PONG") {
                return;
            }
            assert!(!line.starts_with("-ERR"), "{line}");
        }
    }

    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        write!(self.w, "PUB {subject} {}\r\n", payload.len()).unwrap();
        self.w.write_all(payload).unwrap();
        self.w.write_all(b"\r\n").unwrap();
        self.ping();
    }

    pub fn subscribe(&mut self, subject: &str) {
        write!(self.w, "SUB {subject} 1\r\n").unwrap();
        self.ping();
    }

    /// The next message on a subscription.
    pub fn next(&mut self) -> (String, Vec<u8>) {
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).expect("a message within 5 s");
            if line.starts_with("PING") {
                self.w.write_all(b"PONG\r\n").unwrap();
                continue;
            }
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let len: usize = parts.last().unwrap().parse().unwrap();
            let mut buf = vec![0u8; len + 2];
            self.r.read_exact(&mut buf).unwrap();
            buf.truncate(len);
            return (parts[0].to_string(), buf);
        }
    }
}

/// Masters and agents on one bus, each a child process of the test.
pub struct BusFleet {
    pub dir: PathBuf,
    pub nats: NatsServer,
    pub fingerprint: String,
    masters: BTreeMap<String, Child>,
    agents: Vec<(String, Child)>,
}

impl BusFleet {
    pub fn start(name: &str) -> BusFleet {
        let dir = std::env::temp_dir().join(format!("cairn-bus-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "bus-enrolment-token\n").unwrap();
        let nats = NatsServer::start(&dir.join("nats.log"));
        BusFleet {
            dir,
            nats,
            fingerprint: String::new(),
            masters: BTreeMap::new(),
            agents: vec![],
        }
    }

    pub fn master_dir(&self) -> PathBuf {
        self.dir.join("master")
    }

    pub fn master(&mut self, name: &str) {
        let mdir = self.master_dir();
        let state = self.dir.join("state.db").display().to_string();
        let token = self.dir.join("token").display().to_string();
        let url = self.nats.url();
        let args = [
            "master",
            "--bus",
            &url,
            "--name",
            name,
            "--dir",
            mdir.to_str().unwrap(),
            "--state",
            &state,
            "--token-file",
            &token,
            // Three heartbeats of a thousand agents (every 5 s).
            "--silence",
            "15",
        ];
        let key = self.dir.join("key").display().to_string();
        let child = command(&args, &[("CAIRN_LOG", "info"), ("CAIRN_KEY_FILE", &key)])
            .stderr(File::create(self.dir.join(format!("{name}.log"))).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.masters.insert(name.to_string(), child);
        let sock = mdir.join("masters").join(name).join("admin.sock");
        let fp = wait(Duration::from_secs(20), || {
            std::fs::read_to_string(mdir.join("master.fingerprint"))
                .ok()
                .filter(|_| sock.exists() && self.log(name).contains("master on the bus"))
        })
        .unwrap_or_else(|| panic!("master {name} starts:\n{}", self.log(name)));
        self.fingerprint = fp.trim().to_string();
    }

    /// `cairn agent --bus`: one agent `id`, or with `bench`, agents
    /// `id-0001`... in one process. `token`: enrolled by the token.
    pub fn agent(&mut self, id: &str, bench: Option<u32>, token: bool) {
        let adir = self.dir.join(format!("agent-{id}"));
        let url = self.nats.url();
        let tfile = self.dir.join("token").display().to_string();
        let n = bench.map(|n| n.to_string());
        // A thousand agents hello five times less often.
        let heartbeat = if bench.unwrap_or(1) > 100 { "5" } else { "1" };
        let services = self.dir.join("no-services.jsonl").display().to_string();
        let mut args = vec![
            "agent",
            "--bus",
            &url,
            "--id",
            id,
            "--dir",
            adir.to_str().unwrap(),
            "--master-fingerprint",
            &self.fingerprint,
            "--heartbeat",
            heartbeat,
            "--service-events",
            &services,
        ];
        if token {
            args.extend(["--token-file", &tfile]);
        }
        if let Some(n) = &n {
            args.extend(["--bench", n]);
        }
        let child = command(&args, &[("CAIRN_LOG", "info")])
            .stderr(File::create(self.dir.join(format!("agent-{id}.log"))).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.agents.push((id.to_string(), child));
    }

    /// SIGKILLs the agent process `id` started.
    pub fn kill_agent(&mut self, id: &str) {
        let at = self.agents.iter().position(|(a, _)| a == id).unwrap();
        let (_, mut c) = self.agents.remove(at);
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn kill_master(&mut self, name: &str) {
        let mut c = self.masters.remove(name).unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits for a log to say `what` `count` times.
    pub fn wait_log(&self, name: &str, what: &str, count: usize) {
        // Enrolling a thousand agents (each a locked write of the key
        // list) takes longer than anything a test waits for.
        let within = Duration::from_secs(if count > 100 { 180 } else { 30 });
        wait(within, || {
            (self.log(name).matches(what).count() >= count).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name}.log did not say `{what}` {count} time(s):\n{}",
                self.log(name)
            )
        });
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let md = self.master_dir().display().to_string();
        let state = self.dir.join("state.db").display().to_string();
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(at..at, ["--master-dir", &md, "--state", &state]);
        let key = self.dir.join("key").display().to_string();
        cairn_env(&all, &[("CAIRN_KEY_FILE", &key)])
    }

    pub fn run(&self, target: &str, hosts: &str, cmd: &str) -> J {
        let out = self.cairn(&[
            "run", target, "-i", hosts, "--via", "agent", "-T", "10", "-o", "json", "--", cmd,
        ]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.snapshot()))
    }

    /// A job message as a master would send it, signed by `key`.
    pub fn job(&self, key: &Identity, target: &str, expires_at: u64, cmd: &str) -> Vec<u8> {
        let mut args = serde_json::Map::new();
        args.insert("cmd".into(), cmd.into());
        let job = JobMessage {
            job_id: format!("forged-{}", &random_hex()[..8]),
            target: target.into(),
            expires_at,
            nonce: random_hex(),
            kind: JobKind::Module {
                name: "cmd".into(),
                args,
                check: false,
                become_user: None,
            },
        };
        let body = ToAgentBus {
            target: target.into(),
            expires_at,
            nonce: job.nonce.clone(),
            reply: Some(result_subject("m1")),
            msg: ToAgent::Job(job),
        };
        key.signer().unwrap().seal_json(&job_subject(target), &body)
    }

    pub fn master_key(&self) -> Identity {
        Identity::load_or_create(&self.master_dir(), "master", "cairn-master").unwrap()
    }
}

impl Drop for BusFleet {
    fn drop(&mut self) {
        let agents = self.agents.iter_mut().map(|(_, c)| c);
        for c in agents.chain(self.masters.values_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn host<'a>(job: &'a J, name: &str) -> &'a J {
    job["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no {name} in {job}"))
}

/// The smallest slice: one master, one agent, one job, through the bus.
#[test]
fn a_job_runs_through_the_bus() {
    let mut f = BusFleet::start("one");
    f.master("m1");
    f.agent("a1", None, true);
    f.wait_log("m1", "agent connected (bus)", 1);
    let job = f.run("a1", "a1,", "echo hello from $CAIRN_HOST");
    let h = host(&job, "a1");
    assert_eq!(h["status"], "changed", "{job}");
    assert_eq!(
        h["stdout"].as_str().unwrap().trim(),
        "hello from a1",
        "{job}"
    );
    // Enrolled by the token (its proof, not the token, crossed the bus).
    let keys: J = serde_json::from_str(&f.cairn(&["keys", "-o", "json"]).stdout).unwrap();
    assert_eq!(keys[0]["id"], "a1");
    assert_eq!(keys[0]["status"], "accepted");
    // A host with no agent on the bus: unreachable at once.
    let job = f.run("nobody", "nobody,", "true");
    assert_eq!(host(&job, "nobody")["status"], "unreachable", "{job}");
}

/// Two masters serve 100 agents (one process, `--bench 100`); the one the
/// CLI asked is SIGKILLed while the job runs; the other finishes it: every
/// host's result is in the job record once, and every host ran the
/// command once.
#[test]
fn a_master_killed_mid_job_leaves_the_other_to_finish_it() {
    let mut f = BusFleet::start("failover");
    f.master("m1");
    f.master("m2");
    f.agent("b", Some(100), true);
    f.wait_log("m1", "agent connected (bus)", 100);
    f.wait_log("m2", "agent connected (bus)", 100);
    let hosts: Vec<String> = (1..=100).map(|i| format!("b-{i:04}")).collect();
    let inv = f.dir.join("hosts");
    std::fs::write(&inv, hosts.join("\n") + "\n").unwrap();
    let counts = f.dir.join("counts");
    std::fs::create_dir_all(&counts).unwrap();
    let cmd = format!("echo ran >> {}/$CAIRN_HOST; sleep 3", counts.display());
    let md = f.master_dir().display().to_string();
    let state = f.dir.join("state.db").display().to_string();
    let key = f.dir.join("key").display().to_string();
    let inv_s = inv.display().to_string();
    let run = command(
        &[
            "run",
            "all",
            "-i",
            &inv_s,
            "--via",
            "agent",
            "-T",
            "30",
            "-o",
            "json",
            "--master-dir",
            &md,
            "--state",
            &state,
            "--",
            &cmd,
        ],
        &[("CAIRN_KEY_FILE", &key)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Every host started it (through m1, the first master by name)...
    wait(Duration::from_secs(30), || {
        (std::fs::read_dir(&counts).unwrap().count() == 100).then_some(())
    })
    .expect("the job starts on every host");
    // ...and m1 dies before any host is done.
    f.kill_master("m1");
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job: J = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}:\n{stdout}\n{}\nm2:\n{}",
            String::from_utf8_lossy(&out.stderr),
            f.log("m2")
        )
    });
    let results = job["hosts"].as_array().unwrap();
    let names: BTreeSet<&str> = results
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(results.len(), 100, "{job}");
    assert_eq!(names.len(), 100, "a host recorded twice: {job}");
    for h in results {
        assert_eq!(h["status"], "changed", "{h}");
    }
    for name in &hosts {
        let ran = std::fs::read_to_string(counts.join(name)).unwrap();
        assert_eq!(
            ran,
            "ran\n",
            "{name} ran the command {} time(s)",
            ran.lines().count()
        );
    }
    // The job record in the state store is the same, once per host.
    let id = job["id"].as_str().unwrap();
    let shown = cairn_env(
        &["jobs", "show", id, "-o", "json", "--state", &state],
        &[("CAIRN_KEY_FILE", &key)],
    );
    assert_eq!(shown.code, 0, "{}", shown.snapshot());
    let shown: J = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["hosts"].as_array().unwrap().len(), 100);
    // It was m2 that collected: the agents were asked again.
    let asked_again = f.log("agent-b").matches("job asked again").count();
    assert!(asked_again > 0, "{}", f.log("agent-b"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped before answering"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the bus carries is believed only with a good signature, for this
/// agent, fresh and first: a replayed, tampered, unsigned, expired,
/// wrongly signed or misaddressed job message is refused with a log line
/// and its marker file is never written; a pending agent gets nothing and
/// runs nothing; a forged result is refused by the master; a revoked agent
/// is served nothing and refuses what it is sent.
#[test]
fn the_bus_refuses_what_is_not_signed_fresh_and_for_an_accepted_agent() {
    let mut f = BusFleet::start("refusals");
    f.master("m1");
    f.agent("a1", None, true);
    f.agent("p1", None, false);
    f.wait_log("m1", "agent connected (bus)", 1);
    f.wait_log("m1", "key pending", 1);
    let marker = |n: u32| f.dir.join(format!("marker{n}"));
    let mut raw = RawNats::connect(f.nats.port);
    raw.subscribe(&job_subject("a1"));
    // A real job, captured on the bus as any client can.
    let job = f.run("a1", "a1,", &format!("touch {}", marker(0).display()));
    assert_eq!(host(&job, "a1")["status"], "changed", "{job}");
    let (subject, captured) = raw.next();
    assert_eq!(subject, job_subject("a1"));
    assert!(marker(0).exists());
    std::fs::remove_file(marker(0)).unwrap();
    let refused = |f: &BusFleet, log: &str, n: usize| {
        f.wait_log(log, "refused a message on cairn.agent.", n);
    };
    // Replayed as it was.
    raw.publish(&subject, &captured);
    refused(&f, "agent-a1", 1);
    assert!(
        f.log("agent-a1").contains("(replay)"),
        "{}",
        f.log("agent-a1")
    );
    // Tampered: its command changed, its signature kept.
    let mut env: J = serde_json::from_slice(&captured).unwrap();
    let body = env["body"].as_str().unwrap().replace(
        &format!("touch {}", marker(0).display()),
        &format!("touch {}", marker(1).display()),
    );
    env["body"] = body.into();
    raw.publish(&subject, &serde_json::to_vec(&env).unwrap());
    refused(&f, "agent-a1", 2);
    assert!(
        f.log("agent-a1").contains("bad signature"),
        "{}",
        f.log("agent-a1")
    );
    // Unsigned: the bare message.
    let bare: J = serde_json::from_str(env["body"].as_str().unwrap()).unwrap();
    raw.publish(&subject, &serde_json::to_vec(&bare).unwrap());
    refused(&f, "agent-a1", 3);
    assert!(f.log("agent-a1").contains("not a signed envelope"));
    // Signed by the master's key, but expired.
    let master = f.master_key();
    let touch = |n: u32| format!("touch {}", marker(n).display());
    raw.publish(&subject, &f.job(&master, "a1", now_ms() - 1000, &touch(3)));
    refused(&f, "agent-a1", 4);
    assert!(f.log("agent-a1").contains("expired"));
    // Signed by another key.
    let stranger =
        Identity::load_or_create(&f.dir.join("stranger"), "master", "cairn-master").unwrap();
    raw.publish(
        &subject,
        &f.job(&stranger, "a1", now_ms() + 60_000, &touch(4)),
    );
    refused(&f, "agent-a1", 5);
    assert!(f.log("agent-a1").contains("not the pinned master key"));
    // Signed by the master for another agent, published on a1's subject.
    let for_p1 = f.job(&master, "p1", now_ms() + 60_000, &touch(5));
    raw.publish(&subject, &for_p1);
    refused(&f, "agent-a1", 6);
    // A pending agent: the CLI cannot reach it, and a good signed job sent
    // to it straight is refused by the agent itself.
    let job = f.run("p1", "p1,", &touch(6));
    assert_eq!(host(&job, "p1")["status"], "unreachable", "{job}");
    raw.publish(
        &job_subject("p1"),
        &f.job(&master, "p1", now_ms() + 60_000, &touch(7)),
    );
    f.wait_log("agent-p1", "refused a job: this agent is not accepted", 1);
    // A result forged by a key the master never accepted.
    let forged = ToMasterBus {
        id: "a1".into(),
        sent_at: now_ms(),
        nonce: random_hex(),
        msg: ToMaster::Result {
            job_id: "j".into(),
            result: cairn_orch::job::failed("a1", "forged".into()),
        },
    };
    raw.publish(
        &result_subject("m1"),
        &stranger
            .signer()
            .unwrap()
            .seal_json(&result_subject("m1"), &forged),
    );
    f.wait_log("m1", "is not accepted as `a1`", 1);
    // Revoked: cut off at once, and it refuses the master's own jobs.
    let out = f.cairn(&["keys", "revoke", "a1"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    f.wait_log("agent-a1", "the masters refused this agent", 1);
    let job = f.run("a1", "a1,", &touch(8));
    assert_eq!(host(&job, "a1")["status"], "unreachable", "{job}");
    raw.publish(
        &subject,
        &f.job(&master, "a1", now_ms() + 60_000, &touch(9)),
    );
    f.wait_log("agent-a1", "refused a job: this agent is not accepted", 1);
    for n in 1..=9 {
        assert!(!marker(n).exists(), "marker{n} was written");
    }
}

/// `cargo test -p cairn --test it bench_bus -- --ignored --nocapture`
/// (`CAIRN_TEST_BIN` a release build for the README's figures): one
/// command on N agents, wall time from `cairn run` to every result, over
/// the bus (one and two masters) and over TLS; agents in one process
/// (`--bench`), and 100 agent processes on the bus.
#[test]
#[ignore = "a benchmark: prints figures"]
fn bench_bus() {
    let n: u32 = std::env::var("BENCH_AGENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let hosts = |prefix: &str, n: u32| -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}-{i:04}")).collect()
    };
    let time_runs = |f: &dyn Fn(&[&str]) -> Output, inv: &Path, n: usize, what: &str| {
        let inv = inv.display().to_string();
        let mut walls = vec![];
        for _ in 0..3 {
            let t = Instant::now();
            let out = f(&[
                "run", "all", "-i", &inv, "--via", "agent", "-T", "30", "-o", "json", "--", "true",
            ]);
            let wall = t.elapsed();
            let job: J = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", out.snapshot()));
            let ok = job["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["status"] == "changed")
                .count();
            assert_eq!(ok, n, "{}", out.snapshot());
            walls.push(wall.as_secs_f64());
        }
        println!(
            "{what}: {n} agents, wall from `cairn run` to all results: {}",
            walls
                .iter()
                .map(|w| format!("{w:.3} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    // The bus, one process of n agents, two masters.
    {
        let mut f = BusFleet::start("bench");
        f.master("m1");
        f.master("m2");
        f.agent("b", Some(n), true);
        f.wait_log("m1", "agent connected (bus)", n as usize);
        let inv = f.dir.join("hosts");
        std::fs::write(&inv, hosts("b", n).join("\n")).unwrap();
        time_runs(
            &|a| f.cairn(a),
            &inv,
            n as usize,
            "bus, two masters, --bench",
        );
    }
    // The bus, 100 agent processes.
    {
        let mut f = BusFleet::start("bench-procs");
        f.master("m1");
        for i in 1..=100 {
            f.agent(&format!("p{i:03}"), None, true);
        }
        f.wait_log("m1", "agent connected (bus)", 100);
        let inv = f.dir.join("hosts");
        let names: Vec<String> = (1..=100).map(|i| format!("p{i:03}")).collect();
        std::fs::write(&inv, names.join("\n")).unwrap();
        time_runs(
            &|a| f.cairn(a),
            &inv,
            100,
            "bus, one master, 100 agent processes",
        );
    }
    // Direct TLS, one process of n agents.
    {
        let mut f = crate::agents::Fleet::start("bench-tls", true);
        f.bench_agents("t", n);
        let md = f.master_dir();
        wait(Duration::from_secs(180), || {
            (f.log("master").matches("agent connected").count() >= n as usize).then_some(())
        })
        .expect("the agents connect");
        let inv = f.dir.join("hosts");
        std::fs::write(&inv, hosts("t", n).join("\n")).unwrap();
        let _ = md;
        time_runs(
            &|a| f.cairn(a),
            &inv,
            n as usize,
            "TLS, one master, --bench",
        );
    }
}
