//! The SSH transport against real OpenSSH servers (`scripts/test-hosts`).
//! Each test has its own loopback range (127.0.3X.0/24) and directory, as
//! tests run in parallel.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_orch::transport::{
    DialFn, HostKeyPolicy, KeyPassphrase, KnownHosts, SshAuth, SshHost, SshOptions, SshPool,
    SshStream, SshTarget, TcpDialer,
};
use cairn_orch::{Exec, Remote, TransportError};

use cairn_test_support::poll::wait_until;

use crate::test_hosts::{TestHosts, connections_to, running};

fn host(target: SshTarget) -> SshHost {
    SshHost::new(target, SshOptions::default(), Arc::new(TcpDialer))
}

/// Runs `true` over a new connection to `target`: whether it succeeded, or
/// why the connection failed.
async fn run_true(target: SshTarget) -> Result<bool, TransportError> {
    host(target)
        .exec(Exec::new("true"))
        .await
        .map(|out| out.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_script_and_returns_stdout_stderr_and_status() {
    let th = TestHosts::up("run", 1, "127.0.31.1");
    let h = host(th.target("h1"));
    let out = h
        .exec(Exec::new(
            "echo out; echo err >&2; printf 'it'\"'\"'s'; exit 3",
        ))
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_str(), "out\nit's");
    assert_eq!(out.stderr_str(), "err\n");
    let out = h.exec(Exec::new("id -un")).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout_str(), "root\n");
    // A script killed by a signal has no status.
    let out = h.exec(Exec::new("kill -9 $$")).await.unwrap();
    assert_eq!(out.status, None, "{out:?}");
    assert_eq!(h.connections_opened(), 1);
    assert_eq!(
        h.host_key().as_deref(),
        Some(
            th.host_key("h1")
                .rsplit_once(' ')
                .map(|(k, _comment)| k)
                .unwrap()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_passes_through_byte_for_byte() {
    let th = TestHosts::up("stdin", 1, "127.0.32.1");
    let h = host(th.target("h1"));
    let out = h
        .exec(Exec::new("read x; echo \"got $x\"").stdin("hello\n"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "got hello\n");
    // More than a channel window (2 MiB) both ways, through cat.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = h.exec(Exec::new("cat").stdin(big.clone())).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big);
    // A script that never reads its stdin still finishes.
    let out = h
        .exec(Exec::new("echo done").stdin(vec![b'x'; 5_000_000]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "done\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_execs_share_one_connection() {
    let th = TestHosts::up("fifty", 1, "127.0.33.1");
    let addr = th.address("h1");
    // The test hosts' sshd allows 1000 sessions per connection.
    let options = SshOptions {
        max_channels: 50,
        ..SshOptions::default()
    };
    let h = Arc::new(SshHost::new(th.target("h1"), options, Arc::new(TcpDialer)));
    // Each script says it started, then waits for the test's word (at most
    // 15 s): all fifty can only have started if they run at once.
    let dir = th.dir.display().to_string();
    let runs: Vec<_> = (0..50)
        .map(|i| {
            let h = h.clone();
            let script = format!(
                "touch {dir}/started.{i}; n=0; \
                 until [ -e {dir}/release ] || [ $n -ge 300 ]; do sleep 0.05; n=$((n+1)); done; \
                 echo {i}"
            );
            tokio::spawn(async move { h.exec(Exec::new(script)).await })
        })
        .collect();
    let started = |i: usize| th.dir.join(format!("started.{i}")).exists();
    tokio::task::block_in_place(|| {
        wait_until(
            "fifty scripts running at once",
            Duration::from_secs(30),
            || (0..50).all(started),
        )
    });
    // While the fifty wait: count this machine's connections to the host.
    let during = connections_to(&addr);
    std::fs::write(th.dir.join("release"), "").unwrap();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.await.unwrap().unwrap();
        assert_eq!(out.stdout_str(), format!("{i}\n"));
    }
    assert_eq!(during, 1, "TCP connections to {addr} while 50 execs ran");
    assert_eq!(h.connections_opened(), 1);
    let accepted = th.sshd_log("h1").matches("Accepted publickey").count();
    assert_eq!(accepted, 1, "sshd log:\n{}", th.sshd_log("h1"));

    // By default ten at a time, as a stock sshd allows: thirty half-second
    // scripts take three rounds, and none is refused a channel.
    let h = Arc::new(host(th.target("h1")));
    let started = Instant::now();
    let runs: Vec<_> = (0..30)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.exec(Exec::new("sleep 0.5")).await })
        })
        .collect();
    for r in runs {
        assert!(r.await.unwrap().unwrap().success());
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_gives_one_host_per_name() {
    let th = TestHosts::up("pool", 2, "127.0.34.1");
    let pool = SshPool::new(SshOptions::default(), Arc::new(TcpDialer));
    let a = pool.host(th.target("h1"));
    let b = pool.host(th.target("h1"));
    let c = pool.host(th.target("h2"));
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
    let (x, y) = tokio::join!(a.exec(Exec::new("true")), b.exec(Exec::new("true")));
    assert!(x.unwrap().success() && y.unwrap().success());
    assert_eq!(a.connections_opened(), 1);
    assert!(c.exec(Exec::new("true")).await.unwrap().success());
    pool.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_recorded_host_key_is_a_mismatch() {
    let th = TestHosts::up("record", 2, "127.0.35.1");
    // h2's key recorded for h1; known_hosts does not know h1 at all.
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::new()))
        .host_key(Some(th.host_key("h2")));
    let err = run_true(target).await.unwrap_err();
    match &err {
        TransportError::HostKeyMismatch {
            expected_from,
            expected,
            found,
            ..
        } => {
            assert_eq!(expected_from, "the deployment's record");
            assert!(th.host_key("h2").starts_with(expected.as_str()));
            assert!(th.host_key("h1").starts_with(found.as_str()));
        }
        e => panic!("not a mismatch: {e}"),
    }
    // The right record alone is enough.
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::new()))
        .host_key(Some(th.host_key("h1")));
    assert!(run_true(target).await.unwrap());
    // And a right record does not outvote a known_hosts line that says
    // otherwise.
    let known = th.dir.join("known_hosts.h2");
    std::fs::write(
        &known,
        format!("{} {}\n", th.address("h1"), th.host_key("h2")),
    )
    .unwrap();
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::load(&[&known]).unwrap()))
        .host_key(Some(th.host_key("h1")));
    let err = run_true(target).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyMismatch { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_hosts_mismatch_names_the_file_and_line() {
    let th = TestHosts::up("known", 2, "127.0.36.1");
    let file = th.dir.join("known_hosts.wrong");
    std::fs::write(
        &file,
        format!(
            "# written by hand\n{} {}\n{} {}\n",
            th.address("h2"),
            th.host_key("h2"),
            th.address("h1"),
            th.host_key("h2"),
        ),
    )
    .unwrap();
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::load(&[&file]).unwrap()));
    let err = run_true(target).await.unwrap_err();
    match &err {
        TransportError::HostKeyMismatch { expected_from, .. } => {
            assert_eq!(expected_from, &format!("known_hosts {}:3", file.display()));
        }
        e => panic!("not a mismatch: {e}"),
    }
    assert!(err.to_string().contains(":3"), "{err}");

    // The same file hashed by ssh-keygen -H, with h1's right key: accepted.
    let hashed = th.dir.join("known_hosts.hashed");
    std::fs::copy(th.dir.join("known_hosts"), &hashed).unwrap();
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::load(&[&hashed]).unwrap()));
    assert!(run_true(target).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_another_port_is_known_as_host_port() {
    let th = TestHosts::up_on_port("port", 1, "127.0.45.1", 2222);
    let target = th.target("h1");
    assert_eq!(target.port, 2222);
    let text = std::fs::read_to_string(th.dir.join("known_hosts")).unwrap();
    assert!(text.starts_with("[127.0.45.1]:2222 "), "{text}");
    assert!(run_true(target).await.unwrap());
    // The same key under the bare address does not vouch for port 2222.
    let bare = th.dir.join("known_hosts.bare");
    std::fs::write(&bare, format!("127.0.45.1 {}\n", th.host_key("h1"))).unwrap();
    let target = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::load(&[&bare]).unwrap()));
    let err = run_true(target).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_key_is_refused_unless_accept_new() {
    let th = TestHosts::up("unknown", 1, "127.0.37.1");
    let target = th.target("h1").known_hosts(Arc::new(KnownHosts::new()));
    let err = run_true(target.clone()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err}"
    );
    // Nothing reached the shell: sshd saw no authentication.
    assert!(!th.sshd_log("h1").contains("Accepted publickey"));

    let h = host(target.host_key_policy(HostKeyPolicy::AcceptNew));
    assert!(h.exec(Exec::new("true")).await.unwrap().success());
    assert!(th.host_key("h1").starts_with(&h.host_key().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_key_is_an_auth_error_and_the_next_credential_is_tried() {
    let th = TestHosts::up("auth", 1, "127.0.38.1");
    let mut target = th.target("h1");
    target.auth = vec![SshAuth::KeyFile(th.stranger_key())];
    let err = run_true(target.clone()).await.unwrap_err();
    match &err {
        TransportError::Auth { user, reason, .. } => {
            assert_eq!(user, "root");
            assert!(reason.contains("stranger"), "{reason}");
        }
        e => panic!("not an auth error: {e}"),
    }
    // The stranger first, then the right key given in memory.
    let pem = std::fs::read_to_string(th.client_key()).unwrap();
    target.auth.push(SshAuth::Key {
        pem,
        label: "the deployment's key pair".into(),
    });
    let out = host(target).exec(Exec::new("echo in")).await.unwrap();
    assert_eq!(out.stdout_str(), "in\n");
}

/// `ssh-agent -D` on a socket of our own, stopped by its pid.
struct Agent {
    child: Child,
    socket: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_agent_signs_for_us() {
    let th = TestHosts::up("agent", 1, "127.0.39.1");
    let socket = th.dir.join("agent.sock");
    let agent = Agent {
        child: Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !agent.socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent made no socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let add = Command::new("ssh-add")
        .arg(th.client_key())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let mut target = th.target("h1");
    target.auth = vec![SshAuth::Agent(agent.socket.clone())];
    let out = host(target).exec(Exec::new("echo agent")).await.unwrap();
    assert_eq!(out.stdout_str(), "agent\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_host_is_unreachable_at_once() {
    let th = TestHosts::up("stopped", 1, "127.0.40.1");
    th.kill("h1");
    let err = run_true(th.target("h1")).await.unwrap_err();
    // Refused at once, not the connect timeout's "no answer".
    assert!(
        matches!(&err, TransportError::Unreachable { reason, .. } if reason.contains("refused")),
        "{err}"
    );
    // Nobody listens there at all: also unreachable.
    let target = SshTarget::new("nowhere", "127.0.40.250", "root");
    let err = run_true(target).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_script_times_out_and_the_connection_stays_usable() {
    let th = TestHosts::up("timeout", 1, "127.0.41.1");
    let h = host(th.target("h1"));
    // A command under the script's `sh`, and one it left in the
    // background (as a start script leaves a server).
    let mut e = Exec::new("(sleep 29.61 &); sleep 29.62");
    e.timeout = Some(Duration::from_millis(500));
    let err = h.exec(e).await.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { after, .. } if after == Duration::from_millis(500)),
        "{err}"
    );
    // Gone with it, not left running on the host.
    assert!(!running("sleep 29.61") && !running("sleep 29.62"));
    let out = h.exec(Exec::new("echo still")).await.unwrap();
    assert_eq!(out.stdout_str(), "still\n");
    assert_eq!(h.connections_opened(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_script_is_dropped_and_the_next_exec_reconnects() {
    let th = TestHosts::up("dropped", 1, "127.0.42.1");
    let h = Arc::new(host(th.target("h1")));
    let marker = th.dir.join("running");
    let running = {
        let h = h.clone();
        let script = format!("touch {}; sleep 30", marker.display());
        tokio::spawn(async move { h.exec(Exec::new(script)).await })
    };
    tokio::task::block_in_place(|| {
        wait_until("the script running", Duration::from_secs(30), || {
            marker.exists()
        });
        th.kill("h1");
    });
    // The connection's end is seen, not the command's timeout (300 s).
    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(err, TransportError::Dropped { .. }), "{err}");
    // Back up: the next exec opens a new connection by itself.
    tokio::task::block_in_place(|| th.restart(1));
    let out = h.exec(Exec::new("echo back")).await.unwrap();
    assert_eq!(out.stdout_str(), "back\n");
    assert_eq!(h.connections_opened(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn become_runs_as_another_user_through_sudo() {
    let th = TestHosts::up("become", 1, "127.0.43.1");
    let h = host(th.target("h1"));
    let out = h
        .exec(
            Exec::new("id -un; cat")
                .become_user(Some("nobody".into()))
                .stdin("via sudo\n"),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "nobody\nvia sudo\n", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_gives_the_stream() {
    let th = TestHosts::up("dialer", 1, "127.0.44.1");
    let dials = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = dials.clone();
    let dialer = DialFn(move |address: String, port: u16| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let s = tokio::net::TcpStream::connect((address.as_str(), port)).await?;
            Ok(Box::new(s) as Box<dyn SshStream>)
        }
    });
    let h = SshHost::new(th.target("h1"), SshOptions::default(), Arc::new(dialer));
    assert!(h.exec(Exec::new("true")).await.unwrap().success());
    assert!(h.exec(Exec::new("true")).await.unwrap().success());
    assert_eq!(dials.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Connect and run `true` on many hosts at once; prints the figures.
/// `cargo test -p cairn-orch --test it -- --ignored --nocapture many_hosts`
/// (`CAIRN_TEST_HOSTS=50` for one size only; the machine's load shows in
/// the figures, so it is printed too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: starts 250 sshd"]
async fn many_hosts_connect_and_run_true() {
    let sizes: Vec<usize> = match std::env::var("CAIRN_TEST_HOSTS") {
        Ok(n) => vec![n.parse().unwrap()],
        Err(_) => vec![50, 200],
    };
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for n in sizes {
        let base = if n <= 50 { "127.0.50.1" } else { "127.0.51.1" };
        let up = Instant::now();
        let th = TestHosts::up(&format!("many-{n}"), n, base);
        let up = up.elapsed();
        let pool = SshPool::new(SshOptions::default(), Arc::new(TcpDialer));
        let hosts: Vec<_> = (1..=n)
            .map(|i| pool.host(th.target(&format!("h{i}"))))
            .collect();
        let started = Instant::now();
        let connects: Vec<_> = hosts
            .iter()
            .cloned()
            .map(|h| tokio::spawn(async move { h.connect().await }))
            .collect();
        for c in connects {
            c.await.unwrap().unwrap();
        }
        let connect = started.elapsed();
        let started = Instant::now();
        let runs: Vec<_> = hosts
            .iter()
            .cloned()
            .map(|h| tokio::spawn(async move { h.exec(Exec::new("true")).await }))
            .collect();
        for r in runs {
            assert!(r.await.unwrap().unwrap().success());
        }
        let run = started.elapsed();
        // One host, one exec after the other: the round trip of a channel
        // plus the host's shell starting (root's bash reads ~/.bashrc for
        // a command over SSH: on a machine whose .bashrc does much, that is
        // most of it).
        let started = Instant::now();
        for _ in 0..10 {
            assert!(hosts[0].exec(Exec::new("true")).await.unwrap().success());
        }
        let one = started.elapsed() / 10;
        println!(
            "{n} hosts: test-hosts up {:.2}s; connect to all at once {:.2}s; \
             then `true` on all at once {:.2}s (total {:.2}s); one `true` on one host {:.1}ms; \
             loadavg {}",
            up.as_secs_f64(),
            connect.as_secs_f64(),
            run.as_secs_f64(),
            (connect + run).as_secs_f64(),
            one.as_secs_f64() * 1000.0,
            load().trim()
        );
        assert_eq!(
            hosts.iter().map(|h| h.connections_opened()).sum::<usize>(),
            n
        );
        pool.disconnect_all().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_key_file_needs_its_passphrase() {
    let th = TestHosts::up("passphrase", 1, "127.0.47.1");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::copy(th.client_key(), &key).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "open sesame", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut target = th.target("h1");
    target.auth = vec![SshAuth::KeyFile(key.clone())];
    let with = |passphrase: Option<&str>| SshOptions {
        key_passphrase: passphrase.map(KeyPassphrase::new),
        ..SshOptions::default()
    };
    let run = |options: SshOptions| {
        let h = SshHost::new(target.clone(), options, Arc::new(TcpDialer));
        async move { h.exec(Exec::new("echo in")).await }
    };
    let reason = |e: TransportError| match e {
        TransportError::Auth { reason, .. } => reason,
        e => panic!("not an auth error: {e}"),
    };
    let none = reason(run(with(None)).await.unwrap_err());
    assert!(
        none.contains("encrypted, and no passphrase was given") && none.contains("ssh-add"),
        "{none}"
    );
    let wrong = reason(run(with(Some("nope"))).await.unwrap_err());
    assert!(
        wrong.contains("not decrypted with the passphrase given"),
        "{wrong}"
    );
    let out = run(with(Some("open sesame"))).await.unwrap();
    assert_eq!(out.stdout_str(), "in\n");
    // The options print without it.
    assert!(!format!("{:?}", with(Some("open sesame"))).contains("sesame"));
    // Read (and its KDF run) once for all hosts given the same options:
    // the file gone bad after the first, the second still logs in with
    // what was read; options of their own read it anew.
    let shared = with(Some("open sesame"));
    run(shared.clone()).await.unwrap();
    std::fs::write(&key, "not a key any more\n").unwrap();
    let out = run(shared.clone()).await.unwrap();
    assert_eq!(out.stdout_str(), "in\n");
    let anew = reason(run(with(Some("open sesame"))).await.unwrap_err());
    assert!(
        anew.contains("not decrypted") || anew.contains("unusable"),
        "{anew}"
    );
}

/// A host's shell runs scripts in turn on one channel: byte-exact output
/// and input, statuses, nothing carried from one script to the next; one
/// session in sshd's log for all of them; a script that outlives its time
/// breaks the shell, not the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_runs_scripts_in_turn_on_one_channel() {
    let th = TestHosts::up("shell", 1, "127.0.46.1");
    let h = host(th.target("h1"));
    let mut shell = h.shell(None).await.unwrap().expect("SSH keeps a shell");
    let out = shell
        .run(Exec::new(
            "x=1; echo out; echo err >&2; printf 'no newline'; exit 3",
        ))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout_str(), out.stderr_str()),
        (Some(3), "out\nno newline".into(), "err\n".into())
    );
    let out = shell
        .run(Exec::new(
            "echo \"${x-unset} ${N-unset} ${T-unset}\"; id -un",
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "unset unset unset\nroot\n");
    // Input larger than a channel window, and binary; then input a script
    // does not read, and no input at all.
    crate::assert_cat_relays_3_mb(&mut shell).await;
    let out = shell
        .run(Exec::new("echo skipped").stdin(vec![0u8; 100_000]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "skipped\n");
    let out = shell.run(Exec::new("wc -c")).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "0");
    let sessions = th.sshd_log("h1").matches("Starting session").count();
    let mut late = Exec::new("sleep 30");
    late.timeout = Some(Duration::from_millis(300));
    let err = shell.run(late).await.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err}"
    );
    let err = shell.run(Exec::new("true")).await.unwrap_err();
    assert!(matches!(err, TransportError::Other { .. }), "{err}");
    shell.close().await;
    assert_eq!(sessions, 1, "sshd log:\n{}", th.sshd_log("h1"));
    let out = h.exec(Exec::new("echo still")).await.unwrap();
    assert_eq!(out.stdout_str(), "still\n");
    assert_eq!(h.connections_opened(), 1);
}
