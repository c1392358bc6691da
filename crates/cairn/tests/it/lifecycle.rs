//! A deployment's life after the first `up`, through the real binary on the
//! local target: drift and its repair, import, saved plans, rollback,
//! `--prune`, one run at a time, and `cairn up` killed with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_engine::provider::{CreateRequest, Listed, Provider, UpdateRequest};
use cairn_engine::schema::Kind;
use cairn_local::cloud::LocalDirs;
use cairn_local::daemon::client::LocalClient;
use serde_json::{Value as J, json};

use crate::Lcg;
use crate::local::Local;

const SITE: &str = r#"cairn: 1
parameters:
  ttl: {type: int, default: 60}
resources:
  zone:
    type: dns_zone
    properties: {name: life.test}
  www:
    type: dns_record
    properties: {zone: "{{ zone.id }}", name: www, type: A, ttl: "{{ params.ttl }}", values: [10.1.2.3]}
  logs:
    type: bucket
"#;

/// A template directory of this test's own.
pub(crate) fn site(l: &Local, text: &str) -> PathBuf {
    let dir = l.root.join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cairn.yaml"), text).unwrap();
    dir
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The local cloud's own API, as another user of it (or a console) would call it.
fn cloud<T>(l: &Local, f: impl AsyncFnOnce(LocalClient) -> T) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let c = LocalClient::connect(&LocalDirs::new(l.root.join("local")))
            .await
            .expect("the local cloud runs");
        f(c).await
    })
}

/// The TTL and value dig reads for `name`.
fn dig(l: &Local, name: &str) -> String {
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &l.dns_port.to_string(),
            name,
            "A",
            "+noall",
            "+answer",
        ])
        .output()
        .expect("dig is installed by scripts/install-deps");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn deployment_of(dir: &Path) -> String {
    format!("{}-dev", dir.file_name().unwrap().to_str().unwrap())
}

#[test]
fn drift_names_the_changed_property_and_up_puts_it_back() {
    let l = Local::new("drift");
    let dir = site(&l, SITE);
    assert_eq!(l.json(&["up", s(&dir), "--yes"])["result"], "applied");
    let clean = l.run(&["drift", s(&dir), "--detailed-exitcode", "-o", "json"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert_eq!(clean.stdout.trim(), "[]");

    // Someone changes the record's TTL through the cloud's own API.
    let www = l.json(&["show", s(&dir), "--address", "www"]);
    let id = www["id"].as_str().unwrap().to_string();
    let mut changed = www["properties"].clone();
    changed["ttl"] = json!(300);
    cloud(&l, async |c| {
        c.update(UpdateRequest {
            deployment: deployment_of(&dir),
            address: "www".into(),
            kind: Kind::DnsRecord,
            id: id.clone(),
            prior: www["properties"].clone(),
            properties: changed,
            tags: BTreeMap::new(),
            changed: vec!["ttl".into()],
            token: "by-hand".into(),
            sensitive: Vec::new(),
        })
        .await
        .unwrap()
    });
    assert!(dig(&l, "www.life.test").contains("300\tIN\tA\t10.1.2.3"));

    let drift = l.run(&["drift", s(&dir), "--detailed-exitcode", "-o", "json"]);
    assert_eq!(drift.code, 3, "{}", drift.stderr);
    assert!(
        drift.stderr.contains("www.ttl: 60 -> 300"),
        "{}",
        drift.stderr
    );
    let report: J = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(
        report,
        json!([{"address": "www", "type": "dns_record", "id": id, "status": "changed",
                "properties": [{"path": "ttl", "recorded": 60, "actual": 300}]}])
    );
    // `drift` only reads: the state still says 60.
    assert_eq!(
        l.json(&["show", s(&dir), "--address", "www"])["properties"]["ttl"],
        60
    );

    // `plan` shows the repair; `up` makes it.
    let plan = l.json(&["plan", s(&dir)]);
    assert_eq!(plan["summary"]["update"], 1, "{plan}");
    let up = l.json(&["up", s(&dir), "--yes"]);
    assert_eq!(up["counts"]["updated"], 1, "{up}");
    assert!(dig(&l, "www.life.test").contains("60\tIN\tA\t10.1.2.3"));
    let after = l.run(&["drift", s(&dir), "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "{}", after.stderr);
}

#[test]
fn import_adopts_a_bucket_made_elsewhere_and_writes_yaml_that_plans_clean() {
    let l = Local::new("import");
    let dir = site(&l, SITE);
    assert_eq!(l.json(&["up", s(&dir), "--yes"])["result"], "applied");
    let made = cloud(&l, async |c| {
        c.create(CreateRequest {
            deployment: "someone-else".into(),
            address: "assets".into(),
            kind: Kind::Bucket,
            properties: json!({"name": "team-assets", "versioning": true, "public": false}),
            tags: BTreeMap::new(),
            target: None,
            token: "made-by-hand".into(),
            sensitive: Vec::new(),
            may_exist: true,
        })
        .await
        .unwrap()
    });

    // A name in use, an unknown type and a missing id are refused; nothing changes.
    let taken = l.run(&["import", "bucket", &made.id, "--as", "logs", s(&dir)]);
    assert_eq!(taken.code, 2, "{}", taken.stderr);
    assert!(
        taken.stderr.contains("already has logs"),
        "{}",
        taken.stderr
    );
    let bad_type = l.run(&["import", "bukket", &made.id, "--as", "assets", s(&dir)]);
    assert_eq!(bad_type.code, 2);
    assert!(bad_type.stderr.contains("`bukket` is not a resource type"));
    let missing = l.run(&["import", "bucket", "bkt-nope", "--as", "assets", s(&dir)]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no bucket with id bkt-nope"),
        "{}",
        missing.stderr
    );
    assert_eq!(l.json(&["list", s(&dir)]).as_array().unwrap().len(), 3);

    let out = l.json(&[
        "import",
        "bucket",
        &made.id,
        "--as",
        "assets",
        "--write",
        s(&dir),
    ]);
    assert_eq!(out["id"], made.id.as_str());
    let text = std::fs::read_to_string(dir.join("cairn.yaml")).unwrap();
    assert!(
        text.ends_with("  assets:\n    type: bucket\n    properties:\n      name: team-assets\n      versioning: true\n"),
        "{text}"
    );
    let valid = l.run(&["validate", s(&dir)]);
    assert_eq!(valid.code, 0, "{}", valid.stderr);

    // The state has it; the only change left is tagging it as this
    // deployment's, and after that nothing.
    let list = l.json(&["list", s(&dir)]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == "assets")
    );
    let plan = l.json(&["plan", s(&dir)]);
    let changes: Vec<&J> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no_op")
        .collect();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["address"], "assets");
    assert_eq!(changes[0]["action"], "update");
    assert_eq!(changes[0]["diff"][0]["path"], "tags");
    assert_eq!(changes[0]["diff"].as_array().unwrap().len(), 1);
    l.json(&["up", s(&dir), "--yes"]);
    let again = l.run(&["plan", s(&dir), "--detailed-exitcode", "-o", "none"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let history = l.json(&["history", s(&dir)]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["command"] == "import"),
        "{history}"
    );
}

#[test]
fn a_saved_plan_applies_once_and_is_refused_when_the_state_moved() {
    let l = Local::new("saved");
    let dir = site(&l, SITE);
    let plan_file = l.root.join("release.plan");
    let planned = l.json(&["plan", s(&dir), "--out", s(&plan_file)]);
    assert_eq!(planned["summary"]["create"], 3);
    // Planning created nothing.
    assert_eq!(l.json(&["list", s(&dir)]), json!([]));

    let applied = l.json(&["apply", s(&plan_file)]);
    assert_eq!(applied["counts"]["created"], 3, "{applied}");
    let again = l.run(&["apply", s(&plan_file)]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("the state changed since the plan was made"),
        "{}",
        again.stderr
    );

    // A plan made, then someone else's `up` moves the state: refused, and
    // the other run's change stays.
    l.json(&["plan", s(&dir), "-p", "ttl=120", "--out", s(&plan_file)]);
    l.json(&["up", s(&dir), "-p", "ttl=90", "--yes"]);
    let stale = l.run(&["apply", s(&plan_file)]);
    assert_eq!(stale.code, 1);
    assert!(dig(&l, "www.life.test").contains("90\tIN\tA"));

    // The template edited after the plan: planning again differs, refused.
    l.json(&["plan", s(&dir), "-p", "ttl=120", "--out", s(&plan_file)]);
    std::fs::write(dir.join("cairn.yaml"), SITE.replace("10.1.2.3", "10.1.2.4")).unwrap();
    let moved = l.run(&["apply", s(&plan_file)]);
    assert_eq!(moved.code, 1);
    assert!(
        moved.stderr.contains("other changes than the saved plan"),
        "{}",
        moved.stderr
    );
    assert!(dig(&l, "www.life.test").contains("90\tIN\tA\t10.1.2.3"));

    let garbage = l.root.join("not-a-plan");
    std::fs::write(&garbage, "{\"hello\": 1}").unwrap();
    let bad = l.run(&["apply", s(&garbage)]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("is not a plan saved by `cairn plan --out`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn rollback_returns_to_the_template_and_values_of_an_earlier_run() {
    let l = Local::new("rollback");
    let dir = site(&l, SITE);
    l.json(&["up", s(&dir), "--yes"]);
    // Run 2: another record and another TTL.
    let more = format!(
        "{SITE}  api:\n    type: dns_record\n    properties: {{zone: \"{{{{ zone.id }}}}\", name: api, type: A, ttl: 30, values: [10.1.2.9]}}\n"
    );
    std::fs::write(dir.join("cairn.yaml"), &more).unwrap();
    l.json(&["up", s(&dir), "-p", "ttl=300", "--yes"]);
    assert!(dig(&l, "api.life.test").contains("10.1.2.9"));
    assert!(dig(&l, "www.life.test").contains("300\tIN\tA"));

    let nothing = l.run(&["rollback", s(&dir), "--to", "9", "--yes"]);
    assert_eq!(nothing.code, 2);
    assert!(nothing.stderr.contains("no run 9"), "{}", nothing.stderr);

    let back = l.json(&["rollback", s(&dir), "--to", "1", "--yes"]);
    assert_eq!(back["result"], "applied", "{back}");
    assert_eq!(back["counts"]["deleted"], 1);
    assert_eq!(back["counts"]["updated"], 1);
    assert_eq!(dig(&l, "api.life.test"), "");
    assert!(dig(&l, "www.life.test").contains("60\tIN\tA\t10.1.2.3"));
    let history = l.json(&["history", s(&dir)]);
    let commands: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["up", "up", "rollback"], "{history}");
    // The file on disk is untouched: the next `up` goes forward again.
    assert_eq!(
        std::fs::read_to_string(dir.join("cairn.yaml")).unwrap(),
        more
    );
}

pub(crate) fn inventory(l: &Local, deployment: &str) -> Vec<Listed> {
    cloud(l, async |c| c.list(deployment).await.unwrap())
}

#[test]
fn prune_deletes_what_is_tagged_for_the_deployment_but_not_in_its_state() {
    let l = Local::new("prune");
    let dir = site(&l, SITE);
    l.json(&["up", s(&dir), "--yes"]);
    let deployment = deployment_of(&dir);
    let lost = cloud(&l, async |c| {
        c.create(CreateRequest {
            deployment: deployment.clone(),
            address: "old".into(),
            kind: Kind::Bucket,
            properties: json!({"name": "left-behind"}),
            tags: [
                ("cairn:deployment".to_string(), deployment.clone()),
                ("cairn:resource".to_string(), "old".to_string()),
            ]
            .into(),
            target: None,
            token: "crashed-run".into(),
            sensitive: Vec::new(),
            may_exist: true,
        })
        .await
        .unwrap()
    });
    assert_eq!(inventory(&l, &deployment).len(), 4);
    let plain = l.json(&["up", s(&dir), "--yes"]);
    assert_eq!(plain["result"], "no_changes");
    // A bucket holds data: pruning it needs the same consent as deleting it.
    let refused = l.run(&["up", s(&dir), "--prune", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--allow-data-loss"),
        "{}",
        refused.stderr
    );
    let pruned = l.json(&["up", s(&dir), "--prune", "--allow-data-loss", "--yes"]);
    assert_eq!(pruned["counts"]["deleted"], 1, "{pruned}");
    let left: Vec<String> = inventory(&l, &deployment)
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&lost.id));
}

/// Many resources of cheap types and two servers: the template the
/// concurrency and kill tests run.
pub(crate) const FLEET: &str = r#"cairn: 1
parameters:
  n: {type: int, default: 4}
  ttl: {type: int, default: 60}
  web_count: {type: int, default: 2}
resources:
  net:
    type: network
    properties: {cidr: 10.60.0.0/16}
  sub:
    type: subnet
    count: 2
    properties: {network: "{{ net.id }}", cidr: "{{ cidr_subnet(net.cidr, 8, index) }}"}
  fw:
    type: firewall
    properties:
      network: "{{ net.id }}"
      ingress: [{protocol: tcp, port: 8080, from: 127.0.0.0/8}]
  zone:
    type: dns_zone
    properties: {name: fleet.test}
  rec:
    type: dns_record
    count: "{{ params.n * 2 }}"
    properties: {zone: "{{ zone.id }}", name: "h{{ index }}", type: A, ttl: "{{ params.ttl }}", values: ["10.0.0.{{ index + 1 }}"]}
  box:
    type: bucket
    count: "{{ params.n }}"
  token:
    type: secret
    count: "{{ params.n }}"
    properties: {value: "token-{{ index }}-{{ params.ttl }}"}
  keys:
    type: key_pair
    count: 2
    properties: {name: "fleet-{{ index }}"}
  ip:
    type: ip_address
    count: "{{ params.n }}"
  vol:
    type: volume
    count: "{{ params.n }}"
    properties: {size_gb: 1}
  web:
    type: server
    count: "{{ params.web_count }}"
    properties:
      image: debian-12
      subnet: "{{ sub[0].id }}"
      firewalls: ["{{ fw.id }}"]
      user_data: |
        #!/bin/sh
        exec cairn util http-echo --port 8080 --text "web {{ index }}"
"#;

/// The deployment's resources on the target against its state: nothing
/// live that the state does not know, nothing known that is not live, and
/// no address made twice.
pub(crate) fn assert_converged(l: &Local, dir: &Path, trial: usize) {
    let deployment = deployment_of(dir);
    let live = inventory(l, &deployment);
    let state: BTreeSet<String> = l
        .json(&["list", s(dir)])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let live_ids: BTreeSet<String> = live.iter().map(|r| r.id.clone()).collect();
    let orphans: Vec<&String> = live_ids.difference(&state).collect();
    let missing: Vec<&String> = state.difference(&live_ids).collect();
    assert!(orphans.is_empty(), "trial {trial}: orphans {orphans:?}");
    assert!(
        missing.is_empty(),
        "trial {trial}: in state, not live {missing:?}"
    );
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for r in &live {
        *per_address
            .entry(r.address.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_address.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "trial {trial}: duplicates {twice:?}");
}

pub(crate) fn spawn_up(
    l: &Local,
    dir: &Path,
    extra: &[&str],
    lease_ttl: &str,
) -> std::process::Child {
    let mut args = vec!["up", s(dir), "--yes", "-o", "json"];
    args.extend(extra);
    let mut vars = l.vars();
    vars.push(("CAIRN_LEASE_TTL", lease_ttl.to_string()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::command(&args, &vars)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cairn starts")
}

/// Waits for a child that was killed or ran to its end, so no zombie stays.
pub(crate) fn reap(mut child: std::process::Child) -> std::process::Output {
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn ten_concurrent_ups_one_runs_and_a_killed_owner_is_taken_over_at_once() {
    let l = Local::new("concurrent");
    let dir = site(&l, FLEET);
    assert_eq!(l.json(&["local", "start"])["running"], true);

    let children: Vec<_> = (0..10)
        .map(|_| {
            let started = Instant::now();
            // One resource at a time: the run outlasts the refusals by a
            // wide margin even when ten processes share two busy cores.
            (spawn_up(&l, &dir, &["--parallelism", "1"], "30"), started)
        })
        .collect();
    // Each child is waited for on a thread of its own, so that its time is
    // its own and not the time until this loop got to it.
    let waiting: Vec<_> = children
        .into_iter()
        .map(|(child, started)| {
            std::thread::spawn(move || {
                let pid = child.id();
                let out = child.wait_with_output().unwrap();
                (pid, out, started.elapsed())
            })
        })
        .collect();
    let finished: Vec<_> = waiting.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<_> = finished
        .iter()
        .filter(|(_, o, _)| o.status.success())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one runs");
    let (winner_pid, _, winner_took) = winners[0];
    for (pid, out, _) in finished.iter().filter(|(_, o, _)| !o.status.success()) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{pid}: {err}");
        assert!(
            err.contains("is locked by") && err.contains(&format!("(pid {winner_pid})")),
            "{pid} names the owner: {err}"
        );
        // Refused, not queued: a run that waited for the lease would have
        // taken it after the winner and succeeded.
    }
    let slowest = finished
        .iter()
        .filter(|(_, o, _)| !o.status.success())
        .map(|(_, _, t)| *t)
        .max()
        .unwrap();
    eprintln!("the nine refused runs took at most {slowest:?}; the run {winner_took:?}");
    assert_converged(&l, &dir, 0);

    // The owner is killed holding the lease. It ran on this machine and its
    // process is gone, so the next run takes the lease over at once (no
    // wait for the expiry) and finishes the work.
    // Four more servers one at a time: each must stay up 300 ms to count
    // as made, so the run holds the lease for over a second, long enough
    // to be seen holding it even on a busy machine.
    let slow = ["-p", "n=6", "-p", "web_count=6", "--parallelism", "1"];
    let mut child = spawn_up(&l, &dir, &slow, "30");
    let deadline = Instant::now() + Duration::from_secs(20);
    while l.json(&["lock", "show", s(&dir)])["locked"] != true {
        if let Ok(Some(_)) = child.try_wait() {
            let out = reap(child);
            panic!(
                "the run ended before it was seen holding the lease: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the run never took the lease");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_pid = child.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    reap(child);
    // The killed run's parameters, as its owner would run it again.
    let up_six = ["up", s(&dir), "-p", "n=6", "-p", "web_count=6", "--yes"];
    let taken_over = l.run(&[&up_six[..], &["-o", "json"]].concat());
    assert_eq!(taken_over.code, 0, "{}", taken_over.stderr);
    let v: J = serde_json::from_str(&taken_over.stdout).unwrap();
    assert!(
        v["result"] == "applied" || v["result"] == "no_changes",
        "{v}"
    );
    assert_converged(&l, &dir, 1);
    assert_eq!(l.json(&up_six)["result"], "no_changes");
    l.json(&[&["destroy"], &up_six[1..], &["--allow-data-loss"]].concat());
    assert!(inventory(&l, &deployment_of(&dir)).is_empty());
}

#[test]
fn cairn_up_killed_at_random_moments_converges_without_orphans_or_duplicates() {
    let l = Local::new("kill9");
    kill_up_at_random_moments(&l, 50, 150);
}

/// `cairn up` of [`FLEET`], each trial changing counts and values, killed
/// with SIGKILL after a random wait; the rerun at once (no `lock break`)
/// must converge with no orphan and no duplicate and leave nothing to do.
/// Stops after `kills` kills that landed mid-run, failing past
/// `max_trials` trials. Ends with a destroy that leaves nothing.
pub(crate) fn kill_up_at_random_moments(l: &Local, kills_wanted: usize, max_trials: usize) {
    let dir = site(l, FLEET);
    // How long a full run of the fleet takes here sets the first kill window;
    // it then adapts so that most kills land while the run is working.
    let t = Instant::now();
    assert_eq!(l.json(&["up", s(&dir), "--yes"])["result"], "applied");
    let mut window = (t.elapsed().as_millis() as u64).clamp(100, 5_000);
    // Before this, a run is still starting (on PostgreSQL, connecting takes
    // a good part of a short run): raised by each kill that found no lease
    // held, at most to half the window.
    let mut floor = 0;
    let mut rng = Lcg(0x5eed_0000 + std::process::id() as u64);
    let (mut kills, mut trials, mut holding_lease, mut recovered) = (0, 0, 0, 0);
    while kills < kills_wanted && trials < max_trials {
        trials += 1;
        // Each trial changes something: counts go up and down, values change.
        let n = format!("n={}", 2 + rng.below(5));
        let ttl = format!("ttl={}", 60 + rng.below(3) * 30);
        // Scaling down deletes buckets and volumes, which hold data.
        let child = spawn_up(l, &dir, &["-p", &n, "-p", &ttl, "--allow-data-loss"], "30");
        floor = floor.min(window / 2);
        let wait = floor + rng.below(window - floor);
        std::thread::sleep(Duration::from_millis(wait));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let out = reap(child);
        if out.status.code().is_none() {
            kills += 1;
            window = window * 21 / 20;
            // No `lock break`: the rerun below takes a dead holder's lease
            // over at once, as a CI job retried at once would.
            if l.json(&["lock", "show", s(&dir)])["locked"] == true {
                holding_lease += 1;
            } else {
                floor = floor.max(wait);
            }
        } else {
            window = (window * 4 / 5).max(20);
        }
        // The rerun converges...
        let rerun = l.run(&[
            "up",
            s(&dir),
            "-p",
            &n,
            "-p",
            &ttl,
            "--allow-data-loss",
            "--yes",
            "-o",
            "json",
        ]);
        assert_eq!(rerun.code, 0, "trial {trials}: {}", rerun.stderr);
        if rerun.stderr.contains("recovered ") {
            recovered += 1;
        }
        assert_converged(l, &dir, trials);
        // ...and leaves nothing more to do.
        let again = l.run(&[
            "plan",
            s(&dir),
            "-p",
            &n,
            "-p",
            &ttl,
            "--detailed-exitcode",
            "-o",
            "none",
        ]);
        assert_eq!(again.code, 0, "trial {trials}: {}", again.stderr);
    }
    eprintln!(
        "{kills} of {trials} runs were killed before they ended; {holding_lease} held the lease, \
         {recovered} reruns reconciled an interrupted journal"
    );
    assert_eq!(
        kills, kills_wanted,
        "only {kills} kills landed mid-run in {trials} trials"
    );
    // Most kills must hit a run at work, not one still starting.
    assert!(
        holding_lease >= kills_wanted / 2,
        "{holding_lease} kills hit a run holding the lease"
    );
    assert!(recovered > 0, "no kill interrupted a provider call");
    l.json(&["destroy", s(&dir), "--yes", "--allow-data-loss"]);
    assert!(inventory(l, &deployment_of(&dir)).is_empty());
}

#[test]
fn no_secret_value_reaches_logs_plans_history_or_the_state_file() {
    const TOKEN: &str = "tok-3f9a81c2e7d54b06";
    let l = Local::new("secrets");
    let dir = site(
        &l,
        r##"cairn: 1
parameters:
  api_token: {type: secret}
  pw: {type: secret, generate: {length: 24}}
resources:
  token:
    type: secret
    properties: {value: "{{ params.api_token }}"}
  pw_store:
    type: secret
    properties: {value: "{{ params.pw }}"}
  keys:
    type: key_pair
    properties: {name: admin}
  net:
    type: network
    properties: {cidr: 10.80.0.0/16}
  sub:
    type: subnet
    properties: {network: "{{ net.id }}", cidr: 10.80.1.0/24}
  app:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "#!/bin/sh\nexport API_TOKEN={{ params.api_token }}\nexec sleep 600\n"
outputs:
  pw: {value: "{{ params.pw }}", secret: true}
  key: {value: "{{ keys.private_key }}", secret: true}
"##,
    );
    let plan_file = l.root.join("secret.plan");
    let token_arg = format!("api_token={TOKEN}");
    let mut seen = String::new();
    for args in [
        vec![
            "plan",
            s(&dir),
            "-vvv",
            "-p",
            &token_arg,
            "--out",
            s(&plan_file),
        ],
        vec!["up", s(&dir), "-vvv", "-p", &token_arg, "--yes"],
        vec!["plan", s(&dir), "-vvv", "-p", &token_arg],
        vec!["drift", s(&dir), "-vvv"],
        vec!["history", s(&dir), "-vvv"],
        vec!["show", s(&dir), "-vvv"],
        vec!["output", s(&dir), "-vvv"],
        vec!["list", s(&dir), "-vvv"],
    ] {
        let out = l.run(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    // The values exist, and cairn gives them when asked explicitly.
    let revealed = l.json(&["output", s(&dir), "--secret"]);
    let pw = revealed["pw"].as_str().unwrap().to_string();
    let key = revealed["key"].as_str().unwrap().to_string();
    assert_eq!(pw.len(), 24);
    assert!(key.contains("PRIVATE KEY"), "{key}");
    let key_line = key.lines().nth(1).unwrap().to_string();
    let shown = l.json(&["show", s(&dir), "--address", "token", "--secret"]);
    assert_eq!(shown["properties"]["value"], TOKEN);

    seen.push_str(&std::fs::read_to_string(&plan_file).unwrap());
    // The local cloud's own record too: a user_data built from the token
    // is sealed there like the schema's secrets.
    let cloud_json = ["cloud.db", "cloud.db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(l.root.join("local").join(f)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(cloud_json.contains("debian-12"), "{cloud_json}");
    seen.push_str(&cloud_json);
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        if let Ok(bytes) = std::fs::read(l.root.join(f)) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for secret in [TOKEN, pw.as_str(), key_line.as_str()] {
        assert!(!seen.contains(secret), "a secret leaked: {secret}");
    }
    assert!(seen.contains("(secret)"), "secrets are shown as (secret)");
    assert!(seen.contains("DEBUG"), "-vvv logs");
}

#[test]
fn a_failed_up_rolls_back_to_the_last_good_run_or_keeps_what_succeeded() {
    let l = Local::new("onfailure");
    let dir = site(&l, SITE);
    l.json(&["up", s(&dir), "--yes"]);
    let before = l.json(&["list", s(&dir)]);
    // The next version changes the TTL and adds a server that dies at once.
    let broken = format!(
        "{SITE}  net:\n    type: network\n    properties: {{cidr: 10.70.0.0/16}}\n  sub:\n    type: subnet\n    properties: {{network: \"{{{{ net.id }}}}\", cidr: 10.70.1.0/24}}\n  bad:\n    type: server\n    depends_on: [www]\n    properties: {{image: debian-12, subnet: \"{{{{ sub.id }}}}\", user_data: \"#!/bin/sh\\nexit 3\\n\"}}\n"
    );
    std::fs::write(dir.join("cairn.yaml"), &broken).unwrap();

    let failed = l.run(&["up", s(&dir), "-p", "ttl=300", "--yes", "-o", "json"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let v: J = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(v["result"], "rolled_back", "{v}");
    let bad = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "bad")
        .unwrap();
    assert_eq!(bad["status"], "failed", "{v}");
    // Exactly as after the last good run: same resources, the old TTL.
    assert_eq!(l.json(&["list", s(&dir)]), before);
    assert!(dig(&l, "www.life.test").contains("60\tIN\tA"));
    assert_converged(&l, &dir, 0);

    let kept = l.run(&[
        "up",
        s(&dir),
        "-p",
        "ttl=300",
        "--on-failure",
        "keep",
        "--yes",
        "-o",
        "json",
    ]);
    assert_eq!(kept.code, 1, "{}", kept.stderr);
    let v: J = serde_json::from_str(&kept.stdout).unwrap();
    assert_eq!(v["result"], "failed", "{v}");
    // What succeeded stays, the server that failed is not there, and the
    // state says exactly that.
    assert!(dig(&l, "www.life.test").contains("300\tIN\tA"));
    let listed = l.json(&["list", s(&dir)]);
    let addresses: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert!(
        addresses.contains("sub") && !addresses.contains("bad"),
        "{listed}"
    );
    assert_converged(&l, &dir, 1);
}
