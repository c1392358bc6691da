//! Local servers run the agent, enrolled by the cloud (issue 12), through
//! the binary: after `cairn up` of two servers, `cairn run all --via
//! agent` answers from each with no SSH and no `cairn keys accept`; the
//! keys are accepted under the servers' ids; `--via auto` takes the
//! agents; a server destroyed takes its key and its agent with it;
//! `local stop` says the master is not running, and `local start` brings
//! the agents back. In `process` isolation always; in `runc` isolation
//! when the machine can (skipped, saying why, otherwise), where each
//! answer is the server's own hostname.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Local;
use super::hosts::{RuncCloud, free_cidr, unready};
use crate::Output;

fn template(cidr: &str) -> String {
    format!(
        r#"cairn: 1
parameters:
  app_count: {{type: int, min: 1, max: 50, default: 2}}
resources:
  net:
    type: network
    properties: {{cidr: {cidr}}}
  sub:
    type: subnet
    properties: {{network: "{{{{ net.id }}}}", cidr: {cidr}}}
  app:
    type: server
    count: "{{{{ params.app_count }}}}"
    properties:
      name: "app-{{{{ index }}}}"
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      user_data: |
        #!/bin/sh
        exec sleep 1000000
"#
    )
}

/// How a test drives its cloud: `Local` (process) or `RuncCloud`.
trait Cloud {
    fn cairn(&self, args: &[&str]) -> Output;

    /// The test's directory, the cloud's under it.
    fn root(&self) -> PathBuf;

    /// A `runc` cloud's tag (its namespace's name), which its containers'
    /// cgroups carry.
    fn tag(&self) -> Option<String> {
        None
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.cairn(&all);
        assert_eq!(out.code, 0, "{args:?}:\n{}", out.snapshot());
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", out.stdout))
    }
}

impl Cloud for Local {
    fn cairn(&self, args: &[&str]) -> Output {
        self.run(args)
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }
}

impl Cloud for RuncCloud {
    fn cairn(&self, args: &[&str]) -> Output {
        self.run(args)
    }

    fn root(&self) -> PathBuf {
        RuncCloud::root(self).to_path_buf()
    }

    fn tag(&self) -> Option<String> {
        Some(self.netns())
    }
}

/// `cairn run all --via VIA -- hostname` on template `t`, as JSON.
fn run_hostname(c: &dyn Cloud, t: &str, via: &str) -> (i32, Value) {
    let out = c.cairn(&[
        "run", "all", "-C", t, "--via", via, "-T", "20", "-o", "json", "--", "hostname",
    ]);
    let job = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, job)
}

/// Runs `hostname` through the agents until every host of `t` answers
/// (bounded: agents connect a moment after `up`); the job and how long.
fn until_all_answer(c: &dyn Cloud, t: &str, hosts: usize) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let (code, job) = run_hostname(c, t, "agent");
        let n = job["hosts"].as_array().map_or(0, Vec::len);
        if code == 0 && n == hosts {
            return (job, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the agents did not all answer within 30 s: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The servers' resource ids of template `t`, by name.
fn server_ids(c: &dyn Cloud, t: &str) -> Vec<(String, String)> {
    let inv = c.json(&["inventory", "--list", t]);
    let vars = &inv["_meta"]["hostvars"];
    let mut out: Vec<(String, String)> = vars
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| (name.clone(), v["cairn_id"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

/// The agent keys of the cloud's master, by id, with their status.
fn keys(c: &dyn Cloud) -> Vec<(String, String)> {
    let keys = c.json(&["keys", "--local", "list"]);
    let mut out: Vec<(String, String)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Processes of cloud `c` running `cairn agent --id ID`: beside a
/// process server (the cloud's directory in the command line) or in a
/// runc server (in the server's container's cgroup).
fn agent_processes(c: &dyn Cloud, id: &str) -> Vec<i32> {
    let root = c.root();
    let container = c.tag().map(|t| format!("{t}-{id}"));
    procfs::process::all_processes()
        .unwrap()
        .flatten()
        .filter(|p| {
            let cmd = p.cmdline().unwrap_or_default();
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid));
            let ours = cmd.iter().any(|a| a.contains(root.to_str().unwrap()))
                || container
                    .as_ref()
                    .is_some_and(|c| cgroup.is_ok_and(|g| g.contains(c.as_str())));
            // `cairn agent`, or the `cairn-agent` it runs (beside cairn).
            let agent = cmd.iter().any(|a| a == "agent")
                || cmd.first().is_some_and(|a| a.ends_with("/cairn-agent"));
            ours && agent && cmd.windows(2).any(|w| w[0] == "--id" && w[1] == id)
        })
        .map(|p| p.pid)
        .collect()
}

/// The whole story on one cloud; `hostnames`: each host's answer is its
/// own name (a `runc` server's hostname), else the machine's.
fn agents_answer_without_ssh(c: &dyn Cloud, t: &str, hostnames: bool) {
    let up = c.json(&["up", t, "--yes"]);
    assert_eq!(up["result"], "applied", "{up}");
    let ids = server_ids(c, t);
    assert_eq!(ids.len(), 2, "{ids:?}");

    // Every server answers through its agent, nobody accepted a key.
    let (job, after) = until_all_answer(c, t, 2);
    eprintln!("all agents answered {after:?} after `up` returned");
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for h in job["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], "changed", "{h}");
        let stdout = h["stdout"].as_str().unwrap_or_default().trim().to_string();
        let expected = if hostnames {
            h["host"].as_str().unwrap().to_string()
        } else {
            machine.trim().to_string()
        };
        assert_eq!(stdout, expected, "{h}");
    }
    // Servers are made in parallel: ids follow the order they were made
    // in, not their names; `keys` is sorted by id.
    let mut accepted: Vec<(String, String)> = ids
        .iter()
        .map(|(_, id)| (id.clone(), "accepted".to_string()))
        .collect();
    accepted.sort();
    assert_eq!(keys(c), accepted);

    // auto takes the agents: the same answers (over SSH a process server
    // would be unreachable, a runc one without a key pair refused)...
    let (code, auto) = run_hostname(c, t, "auto");
    assert_eq!(code, 0, "{auto}");
    assert!(
        auto["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "changed"),
        "{auto}"
    );

    // And so does the default on a deployment of the local target.
    let out = c.cairn(&["run", "all", "-C", t, "-o", "json", "--", "hostname"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());

    // One server fewer: its key is gone and its agent stopped.
    let (_, gone) = ids.iter().find(|(n, _)| n == "app-1").unwrap().clone();
    let kept: Vec<(String, String)> = accepted
        .iter()
        .filter(|(id, _)| *id != gone)
        .cloned()
        .collect();
    assert_eq!(agent_processes(c, &gone).len(), 1, "{gone}'s agent runs");
    let down = c.json(&["up", t, "--yes", "-p", "app_count=1"]);
    assert_eq!(down["counts"]["deleted"], 1, "{down}");
    assert_eq!(keys(c), kept);
    assert_eq!(agent_processes(c, &gone), Vec::<i32>::new());
    let (job, _) = until_all_answer(c, t, 1);
    assert_eq!(job["hosts"][0]["status"], "changed", "{job}");

    // The cloud stopped: its master is not running, and `--via agent`
    // says so and how to start it; `auto` falls back to SSH.
    let stopped = c.cairn(&["local", "stop"]);
    assert_eq!(stopped.code, 0, "{}", stopped.snapshot());
    let out = c.cairn(&["run", "all", "-C", t, "--via", "agent", "--", "hostname"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("the local cloud's master is not running")
            && out.stderr.contains("cairn local start"),
        "{}",
        out.snapshot()
    );
    let events = c.cairn(&["events", "--local"]);
    assert_eq!(events.code, 2, "{}", events.snapshot());
    assert!(
        events
            .stderr
            .contains("the local cloud's master is not running"),
        "{}",
        events.snapshot()
    );
    // The key list is still there to read (from the master's directory).
    assert_eq!(keys(c), kept);
    let started = c.cairn(&["local", "start"]);
    assert_eq!(started.code, 0, "{}", started.snapshot());
    let (job, after) = until_all_answer(c, t, 1);
    eprintln!("the agent answered {after:?} after `local start`");
    assert_eq!(job["hosts"][0]["status"], "changed", "{job}");
    assert_eq!(keys(c), kept);

    let destroyed = c.json(&["destroy", t, "--yes"]);
    assert_eq!(destroyed["counts"]["deleted"], 3, "{destroyed}");
    assert_eq!(keys(c), Vec::<(String, String)>::new());
    assert_eq!(agent_processes(c, &ids[0].1), Vec::<i32>::new());
}

#[test]
fn process_servers_run_agents_the_cloud_enrolled() {
    let l = Local::new("agents-proc");
    let t = l.template("agents", &template("10.30.0.0/16"));
    agents_answer_without_ssh(&l, &t, false);
}

#[test]
fn runc_servers_run_agents_the_cloud_enrolled() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("agents-runc");
    let cidr = free_cidr(11);
    let t = c.template("agents", &template(&cidr), &cidr);
    agents_answer_without_ssh(&c, &t, true);
}

/// A daemon killed with SIGKILL leaves its `process` agents running (and
/// its servers, as before agents): the next start stops each agent it
/// left (by the pid file in the agent's directory), so every server has
/// one agent, which answers.
#[test]
fn a_killed_daemons_agents_are_stopped_by_the_next_start() {
    let l = Local::new("agents-kill9");
    let t = l.template("agents", &template("10.31.0.0/16"));
    let up = l.json(&["up", &t, "--yes", "-p", "app_count=1"]);
    assert_eq!(up["result"], "applied", "{up}");
    let (_, id) = server_ids(&l, &t).remove(0);
    until_all_answer(&l, &t, 1);
    let old = agent_processes(&l, &id);
    assert_eq!(old.len(), 1, "{old:?}");
    // What the killed daemon leaves: its servers' processes, stopped by
    // this test at the end.
    let servers: Vec<i64> = l
        .json(&["local", "status"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_i64())
        .collect();
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(l.root.join("local/daemon.json")).unwrap())
            .unwrap();
    let daemon = published["pid"].as_i64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &daemon.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{daemon}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{daemon}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the daemon outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(agent_processes(&l, &id), old, "the orphaned agent runs");

    let started = l.run(&["local", "start"]);
    assert_eq!(started.code, 0, "{}", started.snapshot());
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_processes(&l, &id).contains(&old[0]) {
        assert!(Instant::now() < deadline, "the orphaned agent still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (job, _) = until_all_answer(&l, &t, 1);
    assert_eq!(job["hosts"][0]["status"], "changed", "{job}");
    assert_eq!(agent_processes(&l, &id).len(), 1);
    for pid in servers {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}
