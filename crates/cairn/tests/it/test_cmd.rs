//! `cairn test DIR` through the real binary on a local cloud of each
//! test's own: the webapp's tests pass and nothing is left behind; a
//! failing expectation fails readably and still destroys; a bad `tests:`
//! entry is a template error before anything is deployed; SIGINT (SIGTERM)
//! in the middle destroys and exits 130 (143); `--keep-on-failure` keeps
//! the deployment and prints the command that destroys it.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::local::Local;

const WEBAPP: &str = "../../examples/webapp";

/// The webapp's template with `from` replaced by `to` (which must occur).
fn webapp_with(l: &Local, name: &str, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(Path::new(WEBAPP).join("cairn.yaml")).unwrap();
    assert!(text.contains(from), "the example no longer holds {from:?}");
    l.template(name, &text.replacen(from, to, 1))
}

fn cloud_is_empty(l: &Local) -> serde_json::Value {
    l.json(&["local", "status"])
}

/// The temporary directory `cairn test` keeps a deployment's state in.
fn work_dir(deployment: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cairn-{deployment}"))
}

#[test]
fn the_webapp_passes_and_nothing_is_left() {
    let l = Local::new("ctest-pass");
    // Someone's own deployment in the same cloud, with its own state: the
    // test run must leave both alone.
    let own = l.template(
        "own",
        "cairn: 1\nresources:\n  files:\n    type: bucket\n    properties: {versioning: false}\n",
    );
    assert_eq!(l.json(&["up", &own, "--yes"])["result"], "applied");
    let state = l.root.join("state.db");
    let state_before = std::fs::read(&state).unwrap();
    let junit = l.root.join("junit.xml");

    let started = Instant::now();
    let out = l.run(&[
        "test",
        WEBAPP,
        "-o",
        "json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["result"], "passed", "{r}");
    assert_eq!(
        (
            r["passed"].as_u64(),
            r["failed"].as_u64(),
            r["skipped"].as_u64()
        ),
        (Some(3), Some(0), Some(1))
    );
    assert_eq!(r["destroyed"], true);
    let name = r["deployment"].as_str().unwrap();
    assert!(name.starts_with("webapp-dev-test-"), "{name}");
    let kinds: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["http", "dns", "sql", "command"]);
    for t in &r["tests"].as_array().unwrap()[..3] {
        assert_eq!(t["status"], "passed", "{t}");
        assert!(
            t["location"].as_str().unwrap().contains("cairn.yaml:"),
            "{t}"
        );
    }
    assert!(
        out.stderr.contains("3 passed, 0 failed, 1 skipped") && out.stderr.contains("destroyed"),
        "{}",
        out.stderr
    );
    // This cloud's servers are processes: the command test cannot run, and
    // says so rather than passing.
    let cmd = &r["tests"][3];
    assert_eq!(cmd["status"], "skipped", "{cmd}");
    assert!(
        cmd["message"]
            .as_str()
            .unwrap()
            .contains("`process` isolation"),
        "{cmd}"
    );
    eprintln!("cairn test examples/webapp took {took:?}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("tests=\"4\" failures=\"0\" errors=\"0\" skipped=\"1\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert_eq!(xml.matches("<skipped ").count(), 1, "{xml}");

    // Only the user's own bucket is left in the cloud, and its state is as it was.
    let left = cloud_is_empty(&l);
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0]["type"].as_str(), left[0]["deployment"].as_str()),
        (Some("bucket"), Some("own-dev")),
        "{left:?}"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        state_before,
        "the user's state changed"
    );
    assert!(!work_dir(name).exists(), "the temporary state stays");
    let out = l.run(&["destroy", &own, "--yes", "--allow-data-loss", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_failing_expectation_fails_readably_and_still_destroys() {
    let l = Local::new("ctest-fail");
    let dir = webapp_with(
        &l,
        "webapp",
        "expect: {status: 200, body_contains: hello from}\n    timeout: 60s",
        "expect: {status: 200, body_contains: goodbye from}\n    timeout: 2s",
    );
    let out = l.run(&["test", &dir, "-o", "json"]);
    assert_eq!(out.code, 1, "{}", out.snapshot());
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["result"], "failed", "{r}");
    assert_eq!(
        (r["passed"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(r["destroyed"], true, "{r}");
    // Which test, where it is written, what was expected, what came.
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("FAILED web_through_lb"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    // The line `web_through_lb:` is written on, in the copy that ran.
    let text = std::fs::read_to_string(Path::new(&dir).join("cairn.yaml")).unwrap();
    let at = text
        .lines()
        .position(|l| l == "  web_through_lb:")
        .expect("the example's HTTP test")
        + 1;
    assert!(
        line.contains(&format!("webapp/cairn.yaml:{at}:3")),
        "{line}"
    );
    assert!(
        line.contains("expected a body containing \"goodbye from\", got \"hello from"),
        "{line}"
    );
    assert_eq!(cloud_is_empty(&l), serde_json::json!([]));
    assert!(!work_dir(r["deployment"].as_str().unwrap()).exists());
}

#[test]
fn a_bad_test_entry_is_a_template_error_and_deploys_nothing() {
    let l = Local::new("ctest-bad");
    let dir = l.template(
        "bad",
        "cairn: 1\nresources:\n  site:\n    type: bucket\ntests:\n  site_answers:\n    http: {url: \"http://127.0.0.1:1/\"}\n    expect: {staus: 200}\n",
    );
    let out = l.run(&["test", &dir]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("bad/cairn.yaml:8:14"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("unknown key `staus` in the `expect` of test `site_answers`")
            && out.stderr.contains("did you mean `status`?"),
        "{}",
        out.stderr
    );
    // Only the local target: an environment on aws is refused, saying so.
    let aws = l.run(&["test", WEBAPP, "-e", "prod"]);
    assert_eq!(aws.code, 2, "{}", aws.snapshot());
    assert!(
        aws.stderr.contains(
            "`cairn test` deploys to the local target; environment `prod` deploys to aws"
        ),
        "{}",
        aws.stderr
    );
    // Nothing was started, let alone deployed.
    assert!(!l.root.join("local").exists(), "a local cloud was started");
}

#[test]
fn sigint_in_the_middle_destroys_and_exits_130() {
    interrupted(nix::sys::signal::Signal::SIGINT, 130, false);
}

/// While `up` is making resources: the run is dropped half-way, and the
/// destroy (which reconciles its journal first) removes what it made.
#[test]
fn sigint_during_up_destroys_what_was_made() {
    interrupted(nix::sys::signal::Signal::SIGINT, 130, true);
}

#[test]
fn sigterm_in_the_middle_destroys_and_exits_143() {
    interrupted(nix::sys::signal::Signal::SIGTERM, 143, false);
}

fn interrupted(signal: nix::sys::signal::Signal, code: i32, during_up: bool) {
    let l = Local::new(&format!("ctest-{code}-{during_up}"));
    // A test that never passes and waits long: the run is in its tests
    // when the signal comes.
    let dir = webapp_with(
        &l,
        "webapp",
        "expect: {status: 200, body_contains: hello from}\n    timeout: 60s",
        "expect: {status: 200, body_contains: never}\n    timeout: 120s",
    );
    let vars = l.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = crate::command(&["test", &dir, "-o", "json"], &vars)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Up means a database and a load balancer in the cloud (at most 90 s);
    // during up, the first resource made.
    let enough = if during_up { 1 } else { 5 };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the deployment never came up");
        assert!(
            child.try_wait().unwrap().is_none(),
            "cairn test ended early"
        );
        let status = l.run(&["local", "status", "-o", "json"]);
        let up = serde_json::from_str::<serde_json::Value>(&status.stdout)
            .ok()
            .and_then(|s| s.as_array().cloned())
            .is_some_and(|rows| rows.len() >= enough);
        if up {
            break;
        }
        std::thread::sleep(Duration::from_millis(if during_up { 20 } else { 200 }));
    }
    if !during_up {
        // Into the tests (the HTTP one is retrying).
        std::thread::sleep(Duration::from_secs(2));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn test did not end within 90 s of {signal}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(code), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["result"], "interrupted", "{r}");
    assert_eq!(r["destroyed"], true, "{r}");
    assert!(
        stderr.contains(&format!("{signal}: destroying")),
        "{stderr}"
    );
    assert_eq!(cloud_is_empty(&l), serde_json::json!([]));
    assert!(!work_dir(r["deployment"].as_str().unwrap()).exists());
}

#[test]
fn keep_on_failure_keeps_it_and_says_how_to_destroy_it() {
    let l = Local::new("ctest-keep");
    let dir = webapp_with(
        &l,
        "webapp",
        "expect: {first_value: 1}\n    timeout: 60s",
        "expect: {first_value: 2}\n    timeout: 2s",
    );
    let out = l.run(&["test", &dir, "-o", "json", "--keep-on-failure"]);
    assert_eq!(out.code, 1, "{}", out.snapshot());
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["destroyed"], false, "{r}");
    let failed = &r["tests"][2];
    assert_eq!(failed["name"], "db_answers");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("expected the first value \"2\", got \"1\""),
        "{failed}"
    );
    assert!(!cloud_is_empty(&l).as_array().unwrap().is_empty());
    // The command it prints destroys what it kept.
    let name = r["deployment"].as_str().unwrap();
    let printed = out
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("CAIRN_DEPLOYMENT="))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(words[0], format!("CAIRN_DEPLOYMENT={name}"));
    assert_eq!(&words[1..3], ["cairn", "destroy"], "{printed}");
    let mut vars = l.vars();
    vars.push(("CAIRN_DEPLOYMENT", name.to_string()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = words[2..].to_vec();
    args.extend(["-o", "json"]);
    let destroyed = crate::cairn_env(&args, &vars);
    assert_eq!(destroyed.code, 0, "{}", destroyed.snapshot());
    assert_eq!(cloud_is_empty(&l), serde_json::json!([]));
    let _ = std::fs::remove_dir_all(work_dir(name));
}
