//! Releases through the binary on a `runc` local cloud: the webapp's app
//! (examples/webapp/app) built into signed artifacts and rolled out onto
//! four servers behind the app's load balancer, in batches of one, while a
//! bounded client loop goes through the balancer; a version whose health
//! check fails goes back by itself; a tampered artifact is refused on the
//! host; a rollback on request. Skipped, saying why, where servers cannot
//! be hosts (not root, no runc or nft).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_test_support::poll::wait_until;

use super::hosts::{RuncCloud, free_cidr, one_network, unready, web_firewalls};

/// The webapp's servers and app, on a CIDR of the test's own and the
/// machine's root as the image (`image: host`: python3 is there).
pub(super) fn template(cidr: &str, count: usize) -> String {
    format!(
        r#"{}{}  deployer:
    type: key_pair
    properties: {{name: deployer}}
  web:
    type: server
    count: {count}
    properties:
      name: "web-{{{{ index }}}}"
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ web_fw.id }}}}"]
      key_pair: "{{{{ deployer.id }}}}"
      tags: {{role: web}}
  app_lb:
    type: load_balancer
    properties:
      listen: {{protocol: http, port: 80}}
      firewalls: ["{{{{ lb_fw.id }}}}"]
      health_check: {{path: /healthz, interval: 1s, timeout: 1s, healthy: 1, unhealthy: 2}}
      backends: "{{{{ web | map(attribute='address') | list }}}}"
      backend_port: 8081
apps:
  hello:
    build: {{command: "mkdir -p dist && cp serve.py dist/ && echo \"$CAIRN_VERSION\" > dist/VERSION", dir: app, output: dist}}
    install: /srv/hello
    service: {{command: "exec python3 serve.py", stop_timeout: 5s}}
    port: 8081
    health: {{path: /healthz, timeout: 10s, interval: 200ms}}
    load_balancer: "{{{{ app_lb.id }}}}"
    servers: "G@role:web"
    keep: 3
outputs:
  front: "{{{{ app_lb.address }}}}:{{{{ app_lb.port }}}}"
"#,
        one_network(cidr),
        web_firewalls(8081)
    )
}

/// Copies the webapp's app next to the test's template.
pub(super) fn copy_app(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/webapp/app");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("app").join(e.file_name())).unwrap();
    }
}

/// The first release onto servers just made: sshd may still be starting
/// in them, so it is retried until the hosts answer (at most 60 s: with
/// every runc test at once on two cores, 20 s was seen to run out).
pub(super) fn first_release(c: &RuncCloud, args: &[&str]) -> crate::Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.run(args);
        if out.code == 0 || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One HTTP/1.0 GET: the status line's code and the body.
pub(super) fn get(addr: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: app\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

/// Clients through the balancer until stopped, at most `max` requests or
/// `limit`: what each answer was.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    answers: Arc<Mutex<Vec<Result<String, String>>>>,
}

impl Load {
    fn start(front: &str, clients: usize, max: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..clients)
            .map(|_| {
                let (stop, answers, front) = (stop.clone(), answers.clone(), front.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        let a = match get(&front) {
                            Ok((200, body)) => Ok(body.trim().to_string()),
                            Ok((code, body)) => Err(format!("{code}: {}", body.trim())),
                            Err(e) => Err(e),
                        };
                        let mut all = answers.lock().unwrap();
                        all.push(a);
                        if all.len() >= max {
                            return;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            answers,
        }
    }

    /// Answers (and failures) so far.
    fn answered(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    /// Whether a client still sends (none past its count or time limit).
    fn running(&self) -> bool {
        self.threads.iter().any(|t| !t.is_finished())
    }

    fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.answers).unwrap().into_inner().unwrap()
    }
}

/// Versions answered, and every failure.
fn tally(answers: &[Result<String, String>]) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let mut versions = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for a in answers {
        match a {
            Ok(body) => {
                versions.insert(body.split_whitespace().nth(1).unwrap_or("").to_string());
            }
            Err(e) => failed.push(e.clone()),
        }
    }
    (versions, failed)
}

#[test]
fn release_in_batches_with_zero_failed_requests_roll_back_refuse_tampering() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("release");
    let cidr = free_cidr(7);
    let t = c.template("release", &template(&cidr, 4), &cidr);
    copy_app(Path::new(&t));
    let up = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let front = c.json(&["output", &t])["front"]
        .as_str()
        .unwrap()
        .to_string();

    for v in ["v1", "v2"] {
        let built = c.json(&["artifact", "build", "hello", "--version", v, &t]);
        assert_eq!(built["version"], v, "{built}");
    }
    // A version is immutable: the same content again is fine, other
    // content is refused.
    let again = c.run(&[
        "artifact",
        "build",
        "hello",
        "--version",
        "v1",
        &t,
        "-o",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let listed = c.json(&["artifact", "list", "hello", &t]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let verified = c.json(&["artifact", "verify", "hello", "v2", &t]);
    assert_eq!(verified["verified"], true);

    let v1 = first_release(
        &c,
        &[
            "release", "hello", "v1", "-C", &t, "--batch", "2", "-o", "json",
        ],
    );
    assert_eq!(v1.code, 0, "{}", v1.snapshot());

    // v2 in batches of one under load: no request fails, every answer is
    // v1 or v2.
    let load = Load::start(&front, 4, 20_000, Duration::from_secs(60));
    wait_until("the load answered", Duration::from_secs(30), || {
        load.answered() >= 20
    });
    let started = Instant::now();
    let running = c.spawn(&[
        "release", "hello", "v2", "-C", &t, "--batch", "1", "-o", "json",
    ]);
    // A second release in the same environment meanwhile is refused,
    // naming the one that runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.json(&["lock", "show", &t])["locked"] != true {
        assert!(
            Instant::now() < deadline,
            "the release never took the lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = c.run(&["release", "hello", "v1", "-C", &t, "-o", "json"]);
    assert_ne!(second.code, 0, "{}", second.snapshot());
    assert!(second.stderr.contains("release"), "{}", second.stderr);
    assert!(second.stderr.contains("locked"), "{}", second.stderr);
    let v2 = running.wait_with_output().unwrap();
    let v2 = crate::Output {
        code: v2.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&v2.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&v2.stderr).into_owned(),
    };
    let took = started.elapsed();
    // Some answers after the release, from v2 alone.
    let at = load.answered();
    wait_until("answers after the release", Duration::from_secs(30), || {
        load.answered() >= at + 20 || !load.running()
    });
    let answers = load.finish();
    assert_eq!(v2.code, 0, "{}", v2.snapshot());
    let record: serde_json::Value = serde_json::from_str(&v2.stdout).unwrap();
    assert_eq!(record["outcome"], "succeeded");
    assert_eq!(record["batches"], 4);
    let (versions, failed) = tally(&answers);
    eprintln!(
        "release v2 to 4 servers in batches of 1: {} ms; {} requests through the balancer, {} failed",
        took.as_millis(),
        answers.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        versions.is_subset(&["v1".to_string(), "v2".to_string()].into()),
        "{versions:?}"
    );
    assert!(versions.contains("v2"), "{versions:?}");

    // v3's health check fails: the first batch's host goes back to v2,
    // the rollout stops there, and no request fails meanwhile.
    let app = Path::new(&t).join("app/serve.py");
    let src = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        src.replace("body = b\"ok\\n\"", "self.send_error(500); return"),
    )
    .unwrap();
    c.json(&["artifact", "build", "hello", "--version", "v3", &t]);
    let load = Load::start(&front, 2, 20_000, Duration::from_secs(60));
    let v3 = c.run(&[
        "release", "hello", "v3", "-C", &t, "--batch", "1", "-o", "json",
    ]);
    let answers = load.finish();
    assert_eq!(v3.code, 1, "{}", v3.snapshot());
    let record: serde_json::Value = serde_json::from_str(&v3.stdout).unwrap();
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    let hosts = record["hosts"].as_array().unwrap();
    let failed_hosts: Vec<_> = hosts.iter().filter(|h| h["outcome"] == "failed").collect();
    assert_eq!(failed_hosts.len(), 1, "{record:#}");
    assert!(
        failed_hosts[0]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer 2xx"),
        "{record:#}"
    );
    assert_eq!(
        hosts.iter().filter(|h| h["outcome"] == "skipped").count(),
        3
    );
    let events = record["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["step"] == "stop"),
        "the trail says why it stopped"
    );
    let (versions, failed) = tally(&answers);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(versions, ["v2".to_string()].into());

    // A tampered artifact (one byte of the archive in the store) is refused
    // on the host, before anything is switched.
    std::fs::write(&app, &src).unwrap();
    c.json(&["artifact", "build", "hello", "--version", "v4", &t]);
    let archive = Path::new(&t).join(".cairn/artifacts/hello/v4/artifact.tar.zst");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let v4 = c.run(&[
        "release", "hello", "v4", "-C", &t, "--batch", "1", "-o", "json",
    ]);
    assert_eq!(v4.code, 1, "{}", v4.snapshot());
    let record: serde_json::Value = serde_json::from_str(&v4.stdout).unwrap();
    let events = record["events"].as_array().unwrap();
    assert!(
        !events.iter().any(|e| e["step"] == "switch"),
        "nothing switched: {record:#}"
    );
    let refused = events
        .iter()
        .find(|e| e["step"] == "stage" && e["ok"] == false)
        .expect("a refused stage");
    assert!(
        refused["message"].as_str().unwrap().contains("checksum"),
        "{refused}"
    );
    let verify = c.run(&["artifact", "verify", "hello", "v4", &t]);
    assert_eq!(verify.code, 1, "{}", verify.stderr);

    // Rollback on request: back to v1, which the hosts kept.
    let back = c.run(&[
        "release", "rollback", "hello", "--to", "v1", "-C", &t, "--batch", "50%", "-o", "json",
    ]);
    assert_eq!(back.code, 0, "{}", back.snapshot());
    for _ in 0..8 {
        let (code, body) = get(&front).unwrap();
        assert_eq!(code, 200);
        assert!(body.starts_with("hello v1 from web-"), "{body}");
    }

    // The trail: newest first, with the digests and who ran them.
    let trail = c.json(&["releases", "hello", "-C", &t]);
    let kinds: Vec<(&str, &str, &str)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["version"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("rollback", "v1", "succeeded"),
            ("release", "v4", "rolled_back"),
            ("release", "v3", "rolled_back"),
            ("release", "v2", "succeeded"),
            ("release", "v1", "succeeded"),
        ]
    );
    assert!(trail[0]["author"].as_str().unwrap().contains('@'));
    let leftovers = {
        let out = c.run(&["destroy", &t, "--yes", "-o", "none"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        c.leftovers()
    };
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn promotion_releases_the_very_artifact_from_test_to_prod() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("promote");
    let (test_cidr, prod_cidr) = (free_cidr(11), free_cidr(13));
    assert_ne!(test_cidr, prod_cidr);
    // One template, two environments of the local target, one server each.
    let t = c.template("promote", &template("\"{{ params.cidr }}\"", 1), &test_cidr);
    c.also_cidr(&prod_cidr);
    let t_path = Path::new(&t);
    let yaml = std::fs::read_to_string(t_path.join("cairn.yaml")).unwrap();
    std::fs::write(
        t_path.join("cairn.yaml"),
        yaml.replacen(
            "cairn: 1\n",
            "cairn: 1\nparameters:\n  cidr: {type: string}\n",
            1,
        ),
    )
    .unwrap();
    std::fs::create_dir_all(t_path.join("env")).unwrap();
    for (env, cidr) in [("test", &test_cidr), ("prod", &prod_cidr)] {
        std::fs::write(
            t_path.join(format!("env/{env}.yaml")),
            format!("target: local\nparameters:\n  cidr: {cidr}\n"),
        )
        .unwrap();
    }
    copy_app(t_path);
    for env in ["test", "prod"] {
        let up = c.run(&["up", &t, "-e", env, "--yes", "-o", "json"]);
        assert_eq!(up.code, 0, "{env}: {}", up.snapshot());
    }
    let built = c.json(&[
        "artifact",
        "build",
        "hello",
        "--version",
        "1.0.0",
        &t,
        "-e",
        "test",
    ]);
    let digest = built["digest"].as_str().unwrap().to_string();
    for env in ["test", "prod"] {
        let out = first_release(
            &c,
            &[
                "release", "hello", "1.0.0", "-C", &t, "-e", env, "-o", "json",
            ],
        );
        assert_eq!(out.code, 0, "{env}: {}", out.snapshot());
    }
    let trail = c.json(&["releases", "hello", "-C", &t]);
    let rows: Vec<(&str, &str, &str)> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "succeeded")
        .map(|r| {
            (
                r["environment"].as_str().unwrap(),
                r["digest"].as_str().unwrap(),
                r["author"].as_str().unwrap(),
            )
        })
        .collect();
    let envs: Vec<&str> = rows.iter().map(|r| r.0).collect();
    assert!(
        envs.contains(&"test") && envs.contains(&"prod"),
        "{trail:#}"
    );
    assert!(
        rows.iter().all(|r| r.1 == digest),
        "one digest everywhere: {trail:#}"
    );
    assert!(rows.iter().all(|r| r.2.contains('@')), "{trail:#}");
    // The trail and the signing key move with the state: after a migrate,
    // the other state shows the same releases and verifies the artifact.
    let moved = t_path.join("moved.db");
    let (from, to) = (c.state(), moved.display().to_string());
    let out = c.run(&[
        "state", "migrate", "--from", &from, "--to", &to, "--all", "-o", "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let checked: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        checked
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["table"] == "releases"),
        "{checked:#}"
    );
    let there = c.json(&["releases", "hello", "-C", &t, "--state", &to]);
    assert_eq!(there, trail);
    let verified = c.json(&[
        "artifact", "verify", "hello", "1.0.0", &t, "-e", "test", "--state", &to,
    ]);
    assert_eq!(verified["digest"], digest.as_str());
    for env in ["prod", "test"] {
        let out = c.run(&["destroy", &t, "-e", env, "--yes", "-o", "none"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

/// `store: bucket:NAME`: the artifacts go into the deployment's own bucket
/// (on the local target its directory), not beside the template; before
/// the bucket is deployed, or naming one that is not there, the build says
/// what to do. Needs no hosts: only the bucket.
#[test]
fn the_deployments_own_bucket_keeps_the_artifacts() {
    let c = super::Local::new("bucket-store");
    let yaml = |store: &str| {
        format!(
            "cairn: 1\nresources:\n  artifacts:\n    type: bucket\n    properties: {{name: artifacts}}\n\
             apps:\n  hello:\n    build: {{command: \"mkdir -p out && cp serve.py out/\", dir: app, output: out}}\n    \
             install: /srv/hello\n    service: exec python3 serve.py\n    port: 8081\n    servers: web\n    store: \"{store}\"\n"
        )
    };
    let t = c.template("bucket", &yaml("bucket:artifacts"));
    copy_app(Path::new(&t));

    let out = c.run(&["artifact", "build", "hello", "--version", "v1", &t]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("has no bucket yet: deploy the template first"),
        "{}",
        out.stderr
    );

    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let built = c.json(&["artifact", "build", "hello", "--version", "v1", &t]);
    let bucket = c.json(&["show", &t, "--address", "artifacts"]);
    let dir = bucket["attributes"]["url"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_string();
    assert!(built["store"].as_str().unwrap().contains(&dir), "{built:#}");
    assert!(
        Path::new(&dir)
            .join("cairn/artifacts/hello/v1/manifest.json")
            .is_file()
    );
    assert!(!Path::new(&t).join(".cairn/artifacts").exists());
    let listed = c.json(&["artifact", "list", "hello", &t]);
    assert_eq!(listed[0]["version"], "v1", "{listed:#}");
    let verified = c.json(&["artifact", "verify", "hello", "v1", &t]);
    assert_eq!(verified["digest"], built["digest"]);

    std::fs::write(Path::new(&t).join("cairn.yaml"), yaml("bucket:artefacts")).unwrap();
    let out = c.run(&["artifact", "list", "hello", &t]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("has no bucket `artefacts` (its buckets: artifacts)"),
        "{}",
        out.stderr
    );
    c.destroy(&t);
}

/// `service: {command, unit}`: the app runs as a unit of the server's init
/// (cairn's own on a local server), written by the release: it answers
/// through the balancer, `cairn service` knows it, and when it is killed
/// the init starts it again, with no release and no heal involved.
#[test]
fn an_app_as_a_unit_is_supervised_by_the_servers_init() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("release-unit");
    let cidr = free_cidr(19);
    let yaml = template(&cidr, 1).replace(
        "service: {command: \"exec python3 serve.py\", stop_timeout: 5s}",
        "service: {command: \"exec python3 serve.py\", stop_timeout: 5s, unit: hello-app}",
    );
    assert!(yaml.contains("unit: hello-app"));
    let t = c.template("release-unit", &yaml, &cidr);
    copy_app(Path::new(&t));
    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let front = c.json(&["output", &t])["front"]
        .as_str()
        .unwrap()
        .to_string();
    c.json(&["artifact", "build", "hello", "--version", "v1", &t]);
    // The release leaves its connection with a keeper (the test's own
    // directory), which the next command uses instead of logging in.
    let keeper = c.root().join("keeper").display().to_string();
    c.extra.push(("CAIRN_KEEPER_DIR", keeper));
    let _stop = StopKeeper(&c);
    let out = first_release(
        &c,
        &[
            "release",
            "hello",
            "v1",
            "-C",
            &t,
            "--keep-connections",
            "60s",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let (code, body) = get(&front).unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("hello v1 from web-0"), "{body}");
    let kept = || {
        let list = c.json(&["connections", "list"]);
        let list = list.as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "{list:?}");
        let one = &list[0];
        assert_eq!(one["connected"], true, "{one}");
        (
            one["opened"].as_u64().unwrap(),
            one["requests"].as_u64().unwrap(),
        )
    };
    let (opened, served) = kept();
    let out = c.run(&[
        "run",
        "-C",
        &t,
        "all",
        "--via",
        "ssh",
        "--keep-connections",
        "60s",
        "--",
        "true",
    ]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let (opened_after, served_after) = kept();
    assert_eq!(opened_after, opened, "the run connected again");
    assert!(served_after > served, "{served} -> {served_after}");

    let exec = |args: &[&str]| {
        let mut all = vec!["local", "exec", "web[0]", "--"];
        all.extend(args);
        c.run(&all)
    };
    let status = exec(&["cairn", "service", "hello-app", "status", "-o", "json"]);
    assert_eq!(status.code, 0, "{}", status.snapshot());
    let pid = |status: &crate::Output| {
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        v["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {v}"))
    };
    let before = pid(&status);
    let unit = exec(&["cat", "/etc/systemd/system/hello-app.service"]);
    assert!(unit.stdout.contains("Restart=always"), "{}", unit.stdout);

    let kill = exec(&["kill", "-KILL", &before.to_string()]);
    assert_eq!(kill.code, 0, "{}", kill.snapshot());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = exec(&["cairn", "service", "hello-app", "status", "-o", "json"]);
        if now.code == 0 && pid(&now) != before && get(&front).is_ok_and(|(c, _)| c == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never restarted: {}",
            now.snapshot()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ends the test's connection keeper, however the test ends.
struct StopKeeper<'a>(&'a RuncCloud);

impl Drop for StopKeeper<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["connections", "stop"]);
    }
}
