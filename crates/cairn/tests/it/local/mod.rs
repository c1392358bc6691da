//! The main job end to end on the local target, through the real binary:
//! `cairn up examples/webapp --yes`, HTTP through the load balancer, DNS,
//! PostgreSQL with the generated password, then `destroy` leaves nothing.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Output, cairn_env};

mod agents;
mod faults;
mod heal;
mod hosts;
mod images;
mod internet;
mod lb;
mod public;
mod reach;
mod release;
mod services;

pub(crate) struct Local {
    pub(crate) root: PathBuf,
    pub(crate) dns_port: u16,
    /// Each test's local cloud has its own address block (tests run in parallel).
    pool: String,
    /// `CAIRN_STATE`: a file in `root` unless a test names another store.
    pub(crate) state: String,
}

static NEXT_POOL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The pools tests take: 127.64.0.0/16 to 127.253.0.0/16.
const POOLS: std::ops::RangeInclusive<u32> = 64..=253;

/// The next test's pool. This run starts at a place from the pid, so that
/// two test runs on one machine (other checkouts) rarely ask for the same
/// blocks, and goes round the range (a run has far fewer local tests than
/// pools).
fn next_pool() -> u8 {
    let span = POOLS.end() - POOLS.start() + 1;
    let n =
        (std::process::id() % 8) * 20 + NEXT_POOL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    u8::try_from(POOLS.start() + n % span).expect("pools are below 256")
}

impl Local {
    pub(crate) fn new(name: &str) -> Local {
        let root = std::env::temp_dir().join(format!("cairn-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dns_port = free_dns_port();
        let pool = next_pool().to_string();
        Local {
            state: root.join("state.db").to_str().unwrap().to_string(),
            root,
            dns_port,
            pool,
        }
    }

    /// Like [`Local::new`], with the state in `state` (a `postgres://` URL).
    pub(crate) fn with_state(name: &str, state: String) -> Local {
        let mut local = Local::new(name);
        local.state = state;
        local
    }

    /// The environment that points cairn at this test's cloud and state.
    pub(crate) fn vars(&self) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.root.join(p).to_str().unwrap().to_string();
        vec![
            ("CAIRN_LOCAL_DIR", path("local")),
            ("CAIRN_KEY_FILE", path("key")),
            ("CAIRN_STATE", self.state.clone()),
            ("CAIRN_LOCAL_DNS", format!("127.0.0.1:{}", self.dns_port)),
            ("CAIRN_LOCAL_POOL", self.pool.clone()),
        ]
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let vars = self.vars();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cairn_env(args, &vars)
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all);
        assert_eq!(out.code, 0, "{args:?}:\n{}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", out.stdout))
    }
}

/// A port free for both UDP and TCP on 127.0.0.1, below Linux's ephemeral
/// range (32768-60999): a port from that range can be taken by any
/// outgoing connection between this check and the daemon's bind.
fn free_dns_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id() % 10_000;
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = 20_000 + ((start + n * 7) % 12_000) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port for DNS between 20000 and 32000");
}

impl Local {
    /// Writes a template of the test's own into its directory.
    pub(crate) fn template(&self, name: &str, yaml: &str) -> String {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cairn.yaml"), yaml).unwrap();
        dir.to_str().unwrap().to_string()
    }

    /// The `address:port` of a deployed load balancer.
    fn front(&self, template: &str, address: &str) -> String {
        let lb = self.json(&["show", template, "--address", address]);
        format!(
            "{}:{}",
            lb["attributes"]["address"].as_str().unwrap(),
            lb["attributes"]["port"]
        )
    }

    /// An address of this test's pool that nothing is given (the pool hands
    /// out addresses from 127.P.0.2 up).
    pub(crate) fn spare_address(&self, last: u8) -> String {
        format!("127.{}.250.{last}", self.pool)
    }

    fn destroy(&self, template: &str) {
        let out = self.run(&[
            "destroy",
            template,
            "--yes",
            "--allow-data-loss",
            "-o",
            "none",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

/// Waits (at most `limit`) until `front` answers 200 with a body holding `text`.
fn wait_serving(front: &str, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while get(front).is_none_or(|b| !(ok(&b) && b.contains(text))) {
        assert!(Instant::now() < deadline, "{front} never answered {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn ok(answer: &str) -> bool {
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// `GET /` from a chosen loopback source address, as a server on its own
/// address connects: the answer, or the error (a refused source is reset).
pub(crate) fn get_from(source: &str, addr: &str) -> std::io::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))?;
        let mut s = socket.connect(addr.parse().unwrap()).await?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        Ok(out)
    })
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.run(&["local", "stop", "-o", "none"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn get(addr: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

const WEBAPP: &str = "../../examples/webapp";

#[test]
fn up_serves_the_webapp_and_destroy_leaves_nothing() {
    let l = Local::new("webapp");
    let up = l.json(&["up", WEBAPP, "--yes"]);
    assert_eq!(up["result"], "applied", "{up}");
    assert_eq!(up["counts"]["created"], 15);

    // HTTP through the load balancer answers from every web server.
    let lb = l.json(&["show", WEBAPP, "--address", "lb"]);
    let front = format!(
        "{}:{}",
        lb["attributes"]["address"].as_str().unwrap(),
        lb["attributes"]["port"]
    );
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(body) = get(&front)
            && let Some(line) = body.lines().last().filter(|l| l.starts_with("hello from"))
        {
            seen.insert(line.to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen.len(), 2, "answers through {front}: {seen:?}");

    // Its servers are processes here, each with its agent: `cairn run`
    // reaches them through it, with no SSH (see `agents`).
    let run = |via: &[&str]| {
        let mut args = vec!["run", "G@role:web", "-C", WEBAPP, "-o", "json"];
        args.extend(via);
        args.extend(["--", "hostname"]);
        let out = l.run(&args);
        let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(job["hosts"].as_array().unwrap().len(), 2, "{job}");
        (out, job)
    };
    let (out, job) = run(&[]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    for h in job["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], "changed", "{h}");
    }
    // Over SSH, there is nothing to log in to: it says so, per host, at once.
    let (out, job) = run(&["--via", "ssh"]);
    assert_eq!(out.code, 1, "{}", out.snapshot());
    for h in job["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], "unreachable", "{h}");
        let error = h["error"].as_str().unwrap();
        assert!(
            error.contains("--via agent") && error.contains("--isolation runc"),
            "{h}"
        );
    }

    // DNS: www.example.test is the load balancer's address, TTL 60.
    let dig = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &l.dns_port.to_string(),
            "www.example.test",
            "A",
            "+noall",
            "+answer",
        ])
        .output()
        .expect("dig is installed by scripts/install-deps");
    let answer = String::from_utf8_lossy(&dig.stdout);
    assert!(
        answer.contains(&format!(
            "60\tIN\tA\t{}",
            lb["attributes"]["address"].as_str().unwrap()
        )),
        "{answer}"
    );

    // PostgreSQL answers the owner with the generated password, read explicitly.
    let db = l.json(&["show", WEBAPP, "--address", "db", "--secret"]);
    let password = db["properties"]["owner_password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 24);
    let shown = l.json(&["show", WEBAPP, "--address", "db"]);
    assert_eq!(shown["properties"]["owner_password"], "(secret)");
    let psql = cairn_local::postgres::find_binaries().unwrap().psql;
    let host = db["attributes"]["address"].as_str().unwrap().to_string();
    let q = std::process::Command::new(psql)
        .args([
            "-h",
            &host,
            "-p",
            "5432",
            "-U",
            "app",
            "-d",
            "app",
            "-tAc",
            "select current_user",
        ])
        .env("PGPASSWORD", &password)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        "app",
        "{}",
        String::from_utf8_lossy(&q.stderr)
    );

    // The first web server's public address: its firewall takes port 8080
    // from the load balancer only, so this client is reset.
    let outputs = l.json(&["output", WEBAPP]);
    let admin = outputs["admin_address"].as_str().unwrap().to_string();
    assert!(
        get(&format!("{admin}:8080")).is_none_or(|b| b.is_empty()),
        "the web firewall let 127.0.0.1 in through {admin}"
    );

    // A second up changes nothing.
    assert_eq!(l.json(&["up", WEBAPP, "--yes"])["result"], "no_changes");
    let web0 = l.json(&["show", WEBAPP, "--address", "web[0]"]);
    assert_eq!(web0["attributes"]["public_ip"], admin.as_str(), "{web0}");

    // Without --allow-data-loss the database is protected.
    let refused = l.run(&["destroy", WEBAPP, "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--allow-data-loss"),
        "{}",
        refused.stderr
    );

    // What the deployment runs, to look for after the destroy: its
    // processes and the addresses it listens on.
    let before = l.json(&["local", "status"]);
    let before = before.as_array().unwrap();
    let pids: Vec<u64> = before.iter().filter_map(|r| r["pid"].as_u64()).collect();
    let ips: Vec<std::net::Ipv4Addr> = before
        .iter()
        .filter_map(|r| r["ip"].as_str()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{before:?}");
    assert!(ips.len() >= 5, "{before:?}");
    assert!(
        listening(&ips).len() >= 4,
        "servers, load balancer and database listen: {:?}",
        listening(&ips)
    );
    let sandboxes = [l.root.join("local/servers"), l.root.join("local/databases")];
    assert!(!processes_under(&sandboxes).is_empty(), "PostgreSQL runs");

    let destroyed = l.json(&["destroy", WEBAPP, "--yes", "--allow-data-loss"]);
    assert_eq!(destroyed["counts"]["deleted"], 15, "{destroyed}");
    assert!(get(&front).is_none(), "the load balancer still answers");
    assert!(
        std::net::TcpStream::connect((host.as_str(), 5432)).is_err(),
        "PostgreSQL still listens"
    );
    let status = l.json(&["local", "status"]);
    assert_eq!(status.as_array().map(Vec::len), Some(0), "{status}");
    let servers = l.root.join("local/servers");
    assert!(
        std::fs::read_dir(&servers).map_or(true, |mut d| d.next().is_none()),
        "a sandbox remains"
    );
    let dbs = l.root.join("local/databases");
    assert!(
        std::fs::read_dir(&dbs).map_or(true, |mut d| d.next().is_none()),
        "a data directory remains"
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "server process {pid} remains"
        );
    }
    assert_eq!(processes_under(&sandboxes), Vec::<String>::new());
    assert_eq!(listening(&ips), Vec::<String>::new());
}

/// Listening TCP sockets on any of `ips`.
fn listening(ips: &[std::net::Ipv4Addr]) -> Vec<String> {
    procfs::net::tcp()
        .unwrap()
        .into_iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen)
        .filter(|e| ips.iter().any(|ip| e.local_address.ip() == *ip))
        .map(|e| e.local_address.to_string())
        .collect()
}

/// Processes whose command line or working directory is under one of
/// `dirs` (a server's sandbox, a database's data directory).
fn processes_under(dirs: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for p in procfs::process::all_processes().unwrap().flatten() {
        let cmdline = p.cmdline().unwrap_or_default().join(" ");
        let cwd = p.cwd().unwrap_or_default();
        if dirs
            .iter()
            .any(|d| cwd.starts_with(d) || cmdline.contains(d.to_str().unwrap()))
        {
            found.push(format!("{} {cmdline}", p.pid));
        }
    }
    found
}

#[test]
fn up_refuses_without_a_terminal_or_yes() {
    let l = Local::new("noyes");
    let out = l.run(&["up", WEBAPP]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
}

fn server_row(l: &Local, address: &str) -> serde_json::Value {
    let status = l.json(&["local", "status"]);
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("{address} not in {status}"))
}

/// Kill a web server's process: it is back within 5 s, and once the load
/// balancer's health checks have seen it (two intervals of 2 s), a bounded
/// client loop through the load balancer sees no failed request.
#[test]
fn a_killed_web_server_comes_back_and_the_load_balancer_routes_around_it() {
    let l = Local::new("heal");
    assert_eq!(l.json(&["up", WEBAPP, "--yes"])["result"], "applied");
    let lb = l.json(&["show", WEBAPP, "--address", "lb"]);
    let front = format!(
        "{}:{}",
        lb["attributes"]["address"].as_str().unwrap(),
        lb["attributes"]["port"]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&front).is_none_or(|b| !b.contains("hello from")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }

    let before = server_row(&l, "web[0]");
    let pid = before["pid"].as_i64().unwrap();
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();

    // A bounded client loop: 10 s, at most 1,000 requests.
    let (mut failed_after_window, mut total) = (0, 0);
    let mut back_after = None;
    while killed_at.elapsed() < Duration::from_secs(10) && total < 1000 {
        let ok = get(&front)
            .is_some_and(|b| b.starts_with("HTTP/1.1 200") || b.starts_with("HTTP/1.0 200"));
        total += 1;
        if !ok && killed_at.elapsed() > Duration::from_secs(4) {
            failed_after_window += 1;
        }
        if back_after.is_none() && total % 10 == 0 {
            let row = server_row(&l, "web[0]");
            if row["pid"].as_i64().is_some_and(|p| p != pid) && row["health"] == "running" {
                back_after = Some(killed_at.elapsed());
                assert_eq!(row["restarts"], 1);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let back = back_after.expect("web[0] was not restarted within 10 s");
    eprintln!("web[0] was back after {back:?}");
    assert_eq!(
        failed_after_window, 0,
        "{failed_after_window} of {total} requests failed after the health-check window"
    );
    let _ = l.run(&[
        "destroy",
        WEBAPP,
        "--yes",
        "--allow-data-loss",
        "-o",
        "none",
    ]);
}

/// `web_count` 2 → 4 → 1 while a bounded client loop runs through the load
/// balancer: no request fails during the changes.
#[test]
fn scaling_under_load_fails_no_request() {
    let l = Local::new("scale");
    assert_eq!(
        l.json(&["up", WEBAPP, "--yes", "-p", "web_count=2"])["result"],
        "applied"
    );
    let lb = l.json(&["show", WEBAPP, "--address", "lb"]);
    let front = format!(
        "{}:{}",
        lb["attributes"]["address"].as_str().unwrap(),
        lb["attributes"]["port"]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&front).is_none_or(|b| !b.contains("hello from")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, front2) = (stop.clone(), front.clone());
    // Bounded: until told to stop, at most 60 s and 20,000 requests.
    let client = std::thread::spawn(move || {
        let started = Instant::now();
        let (mut ok, mut failed) = (0u32, 0u32);
        let mut seen = std::collections::BTreeSet::new();
        while !stop2.load(std::sync::atomic::Ordering::SeqCst)
            && started.elapsed() < Duration::from_secs(60)
            && ok + failed < 20_000
        {
            match get(&front2) {
                Some(b) if b.starts_with("HTTP/1.1 200") || b.starts_with("HTTP/1.0 200") => {
                    ok += 1;
                    if let Some(line) = b.lines().last() {
                        seen.insert(line.to_string());
                    }
                }
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failed, seen)
    });
    for count in ["4", "1"] {
        let r = l.json(&["up", WEBAPP, "--yes", "-p", &format!("web_count={count}")]);
        assert_eq!(r["result"], "applied", "{r}");
        // Long enough for new backends to pass their checks.
        std::thread::sleep(Duration::from_secs(3));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed, seen) = client.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed while scaling",
        ok + failed
    );
    assert!(
        seen.contains("hello from 3"),
        "the scaled-up servers never answered: {seen:?}"
    );
    let _ = l.run(&[
        "destroy",
        WEBAPP,
        "--yes",
        "--allow-data-loss",
        "-o",
        "none",
    ]);
}
