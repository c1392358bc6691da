//! `cairn run`, `cairn state apply` and `cairn jobs` through the binary,
//! against real OpenSSH servers (`scripts/test-hosts`), each test on its
//! own loopback range.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as J;

use cairn_test_support::poll::wait_until;
use cairn_test_support::test_hosts::{TestHosts, running};

use crate::{Output, cairn_env};

/// A scratch directory holding the job state and the files hosts write.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("cairn-orch-cli-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cairn ARGS -i inventory --known-hosts ... --state ...`.
fn orch(hosts: &TestHosts, scratch: &Scratch, args: &[&str]) -> Output {
    orch_env(hosts, scratch, args, &[])
}

/// [`orch`] with more environment variables.
fn orch_env(hosts: &TestHosts, scratch: &Scratch, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let inv = hosts.dir.join("inventory.ini");
    let known = hosts.dir.join("known_hosts");
    let state = scratch.path("state.db");
    let key = scratch.path("key");
    let mut all: Vec<&str> = args.to_vec();
    // Options go before a `--` command.
    let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
    let extra = [
        "-i",
        inv.to_str().unwrap(),
        "--known-hosts",
        known.to_str().unwrap(),
        "--state",
        &state,
    ];
    all.splice(at..at, extra);
    let mut env = vec![("CAIRN_KEY_FILE", key.as_str())];
    env.extend_from_slice(vars);
    cairn_env(&all, &env)
}

/// `cairn jobs ...` on the scratch state.
fn jobs(scratch: &Scratch, args: &[&str]) -> Output {
    let state = scratch.path("state.db");
    let key = scratch.path("key");
    let mut all = args.to_vec();
    all.extend(["--state", &state]);
    cairn_env(&all, &[("CAIRN_KEY_FILE", &key)])
}

fn job(out: &Output) -> J {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.snapshot()))
}

fn statuses(job: &J) -> Vec<(String, String)> {
    job["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(job: &J, status: &str) -> usize {
    statuses(job).iter().filter(|(_, s)| s == status).count()
}

#[test]
fn run_a_command_and_modules_apply_states_twice_and_read_the_jobs_back() {
    let hosts = TestHosts::up("cli-run", 4, "127.0.50.1");
    let s = Scratch::new("run");

    // A raw command on every host, each answering over its own connection.
    let out = orch(
        &hosts,
        &s,
        &[
            "run",
            "all",
            "-o",
            "json",
            "--",
            "id -un; echo $SSH_CONNECTION",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let j = job(&out);
    assert_eq!(count(&j, "changed"), 4);
    for (i, h) in j["hosts"].as_array().unwrap().iter().enumerate() {
        let stdout = h["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("root\n"), "{stdout}");
        // sshd saw the connection at the host's own address.
        assert!(
            stdout.contains(&format!("127.0.50.{} 22", i + 1)),
            "{stdout}"
        );
    }

    // A state file: a managed file per host and a command on its change.
    let sls = s.path("site.sls");
    let out_dir = s.path("out");
    std::fs::write(
        &sls,
        format!(
            "motd:\n  file.managed:\n    - name: {out_dir}/{{{{ host }}}}/motd\n    - makedirs: true\n    \
             - content: \"hello {{{{ host }}}} ({{{{ facts.cpus }}}} cpus)\\n\"\n\
             notify:\n  cmd.run:\n    - name: echo fired >> {out_dir}/{{{{ host }}}}/log\n    - onchanges:\n      - file: motd\n"
        ),
    )
    .unwrap();
    let first = orch(
        &hosts,
        &s,
        &["state", "apply", "test_hosts", &sls, "-o", "json"],
    );
    assert_eq!(first.code, 0, "{}", first.snapshot());
    assert_eq!(count(&job(&first), "changed"), 4);
    let motd = std::fs::read_to_string(Path::new(&out_dir).join("h2/motd")).unwrap();
    assert!(motd.starts_with("hello h2 ("), "{motd}");

    // The same again changes nothing, and the command does not run again.
    let second = orch(
        &hosts,
        &s,
        &["state", "apply", "test_hosts", &sls, "-o", "json"],
    );
    assert_eq!(second.code, 0, "{}", second.snapshot());
    assert_eq!(count(&job(&second), "ok"), 4, "{}", second.stdout);
    let log = std::fs::read_to_string(Path::new(&out_dir).join("h2/log")).unwrap();
    assert_eq!(log, "fired\n");

    // A dry run on a drifted file shows the diff and changes nothing.
    std::fs::write(Path::new(&out_dir).join("h3/motd"), "edited by hand\n").unwrap();
    let check = orch(
        &hosts,
        &s,
        &["state", "apply", "h3", &sls, "--check", "-o", "table"],
    );
    assert_eq!(check.code, 0, "{}", check.snapshot());
    assert!(check.stdout.contains("-edited by hand"), "{}", check.stdout);
    assert!(check.stdout.contains("+hello h3 ("), "{}", check.stdout);
    assert_eq!(
        std::fs::read_to_string(Path::new(&out_dir).join("h3/motd")).unwrap(),
        "edited by hand\n"
    );

    // A module with key=value arguments, targeted with a Salt expression.
    let file = s.path("out/h1/motd");
    let out = orch(
        &hosts,
        &s,
        &[
            "run",
            "L@h1",
            "file",
            &format!("path={file}"),
            "mode=0600",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let j = job(&out);
    assert_eq!(statuses(&j), [("h1".to_string(), "changed".to_string())]);
    assert_eq!(j["hosts"][0]["detail"]["diff"][0]["after"], "0600");

    // Every job was kept: the list has them newest first, show gives one.
    let list = jobs(&s, &["jobs", "list", "-o", "json"]);
    assert_eq!(list.code, 0, "{}", list.snapshot());
    let list: J = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(list[0]["id"], j["id"]);
    assert_eq!(list[3]["kind"], "state apply");
    let shown = jobs(
        &s,
        &["jobs", "show", j["id"].as_str().unwrap(), "-o", "json"],
    );
    assert_eq!(job(&shown), j);
}

#[test]
fn fifty_hosts_one_killed_mid_run_one_with_a_wrong_host_key_fail_alone() {
    let hosts = TestHosts::up("cli-fifty", 50, "127.0.51.1");
    let s = Scratch::new("fifty");
    // h7's known_hosts line now holds h8's key.
    let known = hosts.dir.join("known_hosts");
    let text = std::fs::read_to_string(&known).unwrap();
    let h7 = hosts.host_key("h7");
    let h8 = hosts.host_key("h8");
    let key = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    std::fs::write(&known, text.replace(&key(&h7), &key(&h8))).unwrap();

    // Each host says it started (by the address it was reached at).
    let started = PathBuf::from(s.path("started"));
    std::fs::create_dir_all(&started).unwrap();
    let script = format!(
        "touch {}/$(echo $SSH_CONNECTION | cut -d' ' -f3); sleep 3; echo done",
        started.display()
    );
    let child = {
        let inv = hosts.dir.join("inventory.ini");
        let state = s.path("state.db");
        let key = s.path("key");
        crate::command(
            &[
                "run",
                "all",
                "-i",
                inv.to_str().unwrap(),
                "--known-hosts",
                known.to_str().unwrap(),
                "--state",
                &state,
                "-o",
                "json",
                "--",
                &script,
            ],
            &[("CAIRN_KEY_FILE", &key)],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    // h3 dies while its command sleeps.
    wait_until("h3 running its command", Duration::from_secs(60), || {
        started.join("127.0.51.3").exists()
    });
    hosts.kill("h3");
    let out = child.wait_with_output().unwrap();
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(out.code, 1, "{}", out.snapshot());
    let j = job(&out);
    let by = |name: &str| {
        j["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(count(&j, "changed"), 48, "{}", out.stdout);
    let h7 = by("h7");
    assert_eq!(h7["status"], "unreachable");
    assert!(
        h7["error"].as_str().unwrap().contains("HOST KEY MISMATCH"),
        "{h7}"
    );
    let h3 = by("h3");
    assert_ne!(h3["status"], "changed", "{h3}");
    assert!(h3["error"].as_str().unwrap().contains("h3"), "{h3}");
    assert_eq!(by("h4")["stdout"], "done\n");

    // --max-fail 0, one host at a time: the first failure stops the job.
    let out = orch(
        &hosts,
        &s,
        &[
            "run",
            "h[0:9]",
            "-f",
            "1",
            "--max-fail",
            "0",
            "-o",
            "json",
            "--",
            "true",
        ],
    );
    // `h[0:9]` is no group: a pattern must name one.
    assert_eq!(out.code, 2, "{}", out.snapshot());
    let out = orch(
        &hosts,
        &s,
        &[
            "run",
            "test_hosts[0:9]",
            "-f",
            "1",
            "--max-fail",
            "0",
            "-o",
            "json",
            "--",
            "test $(echo $SSH_CONNECTION | cut -d' ' -f3) != 127.0.51.3",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.snapshot());
    let j = job(&out);
    // h1, h2 ran; h3 is dead (unreachable): the job starts no more.
    assert_eq!(count(&j, "changed"), 2, "{}", out.stdout);
    assert_eq!(count(&j, "unreachable"), 1, "{}", out.stdout);
    assert_eq!(count(&j, "skipped"), 7, "{}", out.stdout);
}

#[test]
fn bad_input_is_refused_before_any_host_is_touched() {
    let hosts = TestHosts::up("cli-bad", 1, "127.0.52.1");
    let s = Scratch::new("bad");
    let out = orch(&hosts, &s, &["run", "G@role:web and (", "--", "true"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("expr:1:"), "{}", out.stderr);

    let out = orch(&hosts, &s, &["run", "all", "fiel", "path=/tmp/x"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("did you mean `file`"), "{}", out.stderr);

    let out = orch(
        &hosts,
        &s,
        &["run", "all", "file", "path=/tmp/x", "mdoe=0644"],
    );
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("mode"), "{}", out.stderr);

    let out = orch(&hosts, &s, &["run", "nothing-matches", "--", "true"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("no host matches"), "{}", out.stderr);

    // A state file naming an unknown requisite: its place, exit 2, no job.
    let sls = s.path("bad.sls");
    std::fs::write(
        &sls,
        "a:\n  cmd.run:\n    - name: touch /tmp/never\n    - require:\n      - cmd: b\n",
    )
    .unwrap();
    let out = orch(&hosts, &s, &["state", "apply", "all", &sls]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("bad.sls:5:"), "{}", out.stderr);
    let list = jobs(&s, &["jobs", "list", "-o", "json"]);
    assert_eq!(list.stdout.trim(), "[]", "{}", list.snapshot());
}

#[test]
fn a_hanging_command_times_out_and_a_host_with_no_server_is_unreachable() {
    let hosts = TestHosts::up("cli-faults", 2, "127.0.53.1");
    let s = Scratch::new("faults");
    hosts.kill("h2");
    let out = orch(
        &hosts,
        &s,
        &["run", "all", "-T", "1", "-o", "json", "--", "sleep 30"],
    );
    assert_eq!(out.code, 1, "{}", out.snapshot());
    let j = job(&out);
    let h1 = &j["hosts"][0];
    // Reached, then too slow: failed, not unreachable.
    assert_eq!(h1["status"], "failed", "{h1}");
    assert!(
        h1["error"].as_str().unwrap().contains("ran past 1s"),
        "{h1}"
    );
    let h2 = &j["hosts"][1];
    assert_eq!(h2["status"], "unreachable", "{h2}");
    assert!(
        h2["error"].as_str().unwrap().contains("unreachable"),
        "{h2}"
    );

    // What a command past its time started goes with it: under its `sh`
    // and in the background, from `run` and from a state's step in its
    // host's shell (`creates` makes it a step read ahead in that shell).
    let out = orch(
        &hosts,
        &s,
        &[
            "run",
            "h1",
            "-T",
            "1",
            "-o",
            "json",
            "--",
            "(sleep 29.41 &); sleep 29.42",
        ],
    );
    assert_eq!(
        job(&out)["hosts"][0]["status"],
        "failed",
        "{}",
        out.snapshot()
    );
    assert!(!running("sleep 29.41") && !running("sleep 29.42"));
    let sls = s.path("hang.sls");
    std::fs::write(
        &sls,
        format!(
            "hang:\n  cmd.run:\n    - name: (sleep 29.43 &); sleep 29.44\n    - creates: {}\n",
            s.path("never")
        ),
    )
    .unwrap();
    let out = orch(
        &hosts,
        &s,
        &["state", "apply", "h1", &sls, "-T", "1", "-o", "json"],
    );
    let h1 = &job(&out)["hosts"][0];
    assert_eq!(h1["status"], "failed", "{}", out.snapshot());
    assert!(h1.to_string().contains("ran past 1s"), "{h1}");
    assert!(!running("sleep 29.43") && !running("sleep 29.44"));
}

/// `--keep-connections`: the first run leaves each host's connection with
/// a keeper process, the next runs (a command, a state applied twice) log
/// in nowhere; a keeper killed with SIGKILL is replaced by the next run;
/// `cairn connections stop` ends it. Bad values and an open keeper
/// directory are refused before any host is touched.
#[test]
fn kept_connections_spare_the_next_runs_their_logins_and_stop_ends_them() {
    let hosts = TestHosts::up("cli-kept", 2, "127.0.54.1");
    let s = Scratch::new("kept");
    let keeper_dir = s.path("keeper");
    let env = [("CAIRN_KEEPER_DIR", keeper_dir.as_str())];
    let logins = |name: &str| hosts.sshd_log(name).matches("Accepted publickey").count();
    let keeper_pid = || -> i32 {
        std::fs::read_to_string(Path::new(&keeper_dir).join("keeper.lock"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    let raw = [
        "run",
        "all",
        "--keep-connections",
        "30s",
        "-o",
        "json",
        "--",
        "hostname",
    ];

    for _ in 0..2 {
        let out = orch_env(&hosts, &s, &raw, &env);
        assert_eq!(out.code, 0, "{}", out.snapshot());
        assert_eq!(count(&job(&out), "changed"), 2);
    }
    // A state, applied twice: its host's shell relayed through the keeper.
    let sls = s.path("site.sls");
    let out_dir = s.path("out");
    std::fs::write(
        &sls,
        format!(
            "motd:\n  file.managed:\n    - name: {out_dir}/{{{{ host }}}}/motd\n    - makedirs: true\n    \
             - content: \"kept {{{{ host }}}}\\n\"\n"
        ),
    )
    .unwrap();
    let apply = [
        "state",
        "apply",
        "all",
        &sls,
        "--keep-connections",
        "30s",
        "-o",
        "json",
    ];
    let out = orch_env(&hosts, &s, &apply, &env);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(count(&job(&out), "changed"), 2, "{}", out.snapshot());
    let out = orch_env(&hosts, &s, &apply, &env);
    assert_eq!(count(&job(&out), "ok"), 2, "{}", out.snapshot());
    assert_eq!(
        std::fs::read_to_string(format!("{out_dir}/h1/motd")).unwrap(),
        "kept h1\n"
    );
    assert_eq!(
        (logins("h1"), logins("h2")),
        (1, 1),
        "one login each for four runs"
    );

    let out = cairn_env(&["connections", "list", "-o", "json"], &env);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let list: J = serde_json::from_str(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter()
            .all(|c| c["opened"] == 1 && c["connected"] == true),
        "{list:?}"
    );
    let out = cairn_env(&["connections", "list", "-o", "table"], &env);
    assert!(
        out.stdout.contains("Keep For") && out.stdout.contains("30.0 s"),
        "{}",
        out.snapshot()
    );

    // Killed: the next run starts another keeper in its place.
    let pid = keeper_pid();
    assert!(alive(pid));
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the keeper dies", Duration::from_secs(10), || !alive(pid));
    let out = orch_env(&hosts, &s, &raw, &env);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(count(&job(&out), "changed"), 2);
    assert_eq!((logins("h1"), logins("h2")), (2, 2));
    let second = keeper_pid();
    assert_ne!(second, pid);

    let out = cairn_env(&["connections", "stop"], &env);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    wait_until("the keeper ends", Duration::from_secs(10), || {
        !alive(second)
    });
    assert!(!Path::new(&keeper_dir).join("keeper.sock").exists());
    let out = cairn_env(&["connections", "stop"], &env);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert!(
        out.stderr.contains("no connection keeper runs"),
        "{}",
        out.snapshot()
    );
    let out = cairn_env(&["connections", "list", "-o", "json"], &env);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "[]"),
        "{}",
        out.snapshot()
    );
    assert!(
        out.stderr.contains("no connection keeper runs"),
        "{}",
        out.snapshot()
    );

    // Refused before any host is touched.
    let mut bad = raw;
    bad[3] = "5x";
    let out = orch_env(&hosts, &s, &bad, &env);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr.contains("unknown unit `x`"),
        "{}",
        out.snapshot()
    );
    let open = s.path("open");
    std::fs::create_dir_all(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = orch_env(&hosts, &s, &raw, &[("CAIRN_KEEPER_DIR", open.as_str())]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("mode 755"), "{}", out.snapshot());
    assert_eq!((logins("h1"), logins("h2")), (2, 2));

    // A keeper that cannot start (its lock file is a directory): the run
    // says so and connects on its own.
    let broken = s.path("broken");
    std::fs::create_dir_all(Path::new(&broken).join("keeper.lock")).unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = orch_env(&hosts, &s, &raw, &[("CAIRN_KEEPER_DIR", broken.as_str())]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(count(&job(&out), "changed"), 2);
    assert!(
        out.stderr.contains("did not answer") && out.stderr.contains("connecting directly"),
        "{}",
        out.snapshot()
    );
    assert_eq!((logins("h1"), logins("h2")), (3, 3));
}

/// A run holds a socket per host: started with an open-file limit below
/// the hosts' count (as a desktop session's 1,024 is below a fleet's), it
/// raises its own to the hard limit and reaches every host.
#[test]
fn a_run_raises_its_open_file_limit_to_reach_more_hosts_than_it_allowed() {
    let hosts = TestHosts::up("cli-nofile", 40, "127.0.55.1");
    let s = Scratch::new("nofile");
    let inv = hosts.dir.join("inventory.ini");
    let known = hosts.dir.join("known_hosts");
    let state = s.path("state.db");
    let key = s.path("key");
    let bin =
        std::env::var("CAIRN_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 24 && exec "$@""#)
        .arg("sh")
        .args([bin.as_str(), "run", "all", "-o", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(&known)
        .args(["--state", &state, "--", "sleep 1; echo up"])
        .env("CAIRN_KEY_FILE", &key)
        .output()
        .unwrap();
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(count(&job(&out), "changed"), 40, "{}", out.snapshot());
}
