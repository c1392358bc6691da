//! `cairn events` and `cairn master --reactors` through the binary, with the
//! master and agents as real processes on loopback (see `agents`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value as J, json};

use crate::agents::{Fleet, status, until_served, wait};
use crate::{cairn_env, command};

fn events(fleet: &Fleet, tag: &str) -> Vec<J> {
    let out = fleet.cairn(&["events", "--tag", tag, "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    serde_json::from_str::<Vec<J>>(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

pub fn append(path: &Path, line: &J) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// `cairn events --follow`, its JSON lines read on a thread.
pub struct Follower {
    child: Child,
    lines: mpsc::Receiver<J>,
}

impl Follower {
    fn start(fleet: &Fleet, tag: &str) -> Follower {
        Follower::start_in(&fleet.master_dir(), tag)
    }

    /// On the masters of the directory `md`.
    pub fn start_in(md: &str, tag: &str) -> Follower {
        let mut child = command(
            &["events", "--follow", "--tag", tag, "--master-dir", md],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line).unwrap_or(J::String(line));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The lines up to the first `f` accepts (10 s at most).
    pub fn until(&self, f: impl Fn(&J) -> bool) -> Vec<J> {
        let mut seen = vec![];
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(v) => {
                    let done = f(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("{e}; saw {seen:?}"),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_show_agents_and_jobs_follow_streams_and_an_oversize_event_is_refused() {
    let mut fleet = Fleet::start("events", true);
    fleet.agent("e1");
    until_served(&fleet, "e1", Duration::from_secs(10)).expect("enrolled by token");
    let (job, _) = fleet.run("e1", "e1,", "echo hi");
    let jid = job["id"].as_str().unwrap().to_string();

    // The recent events: the agent connected, the job started and returned.
    let all = events(&fleet, "**");
    let tags: Vec<&str> = all.iter().map(|e| e["tag"].as_str().unwrap()).collect();
    assert!(tags.contains(&"cairn/agent/e1/connected"), "{tags:?}");
    let ret = all
        .iter()
        .find(|e| e["tag"] == format!("cairn/job/{jid}/ret/e1"))
        .unwrap_or_else(|| panic!("no ret of {jid} in {tags:?}"));
    assert_eq!(ret["source"], "master");
    assert_eq!(ret["host"], "e1");
    assert_eq!(ret["data"]["status"], "changed");
    assert!(tags.contains(&format!("cairn/job/{jid}/started").as_str()));
    // A tag glob keeps only the job events.
    let jobs = events(&fleet, "cairn/job/**");
    assert!(!jobs.is_empty());
    assert!(
        jobs.iter()
            .all(|e| e["tag"].as_str().unwrap().starts_with("cairn/job/"))
    );
    // The table form is the default on a terminal; `-o tsv` is the same data.
    let out = fleet.cairn(&["events", "--tag", "cairn/agent/*/connected", "-o", "tsv"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert!(
        out.stdout.contains("cairn/agent/e1/connected"),
        "{}",
        out.snapshot()
    );
    // A bad glob, and no master, are usage errors that say what to do.
    let out = fleet.cairn(&["events", "--tag", "cairn/{x"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr.contains("tag glob `cairn/{x`"),
        "{}",
        out.snapshot()
    );
    let out = cairn_env(
        &["events", "--master-dir", "/nonexistent/cairn-master"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr.contains("no master is running"),
        "{}",
        out.snapshot()
    );

    // Following: the init's service events, forwarded by the agent, as
    // JSON lines.
    let follower = Follower::start(&fleet, "cairn/service/**");
    let services = fleet.services("e1");
    append(
        &services,
        &json!({"tag": "cairn/service/nginx/stopped", "time": 1764900000, "pid": 42}),
    );
    let seen = follower.until(|e| e["tag"] == "cairn/service/e1/nginx/stopped");
    let e = seen.last().unwrap();
    assert_eq!(e["source"], "e1");
    assert_eq!(e["data"]["pid"], 42);
    assert_eq!(e["data"]["name"], "nginx");

    // An oversize event is refused by the master with a log line; the
    // agent's next event still arrives.
    append(
        &services,
        &json!({"tag": "cairn/service/big/stopped", "pad": "x".repeat(100_000)}),
    );
    append(&services, &json!({"tag": "cairn/service/db/started"}));
    let seen = follower.until(|e| e["tag"] == "cairn/service/e1/db/started");
    assert!(
        seen.iter()
            .all(|e| e["tag"] != "cairn/service/e1/big/stopped"),
        "{seen:?}"
    );
    wait(Duration::from_secs(5), || {
        fleet
            .log("master")
            .contains("refused an event from e1: event of")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no log line:\n{}", fleet.log("master")));
    assert!(events(&fleet, "cairn/service/*/big/*").is_empty());
}

/// `cairn jobs ARGS -o json` on the fleet's state (`jobs` takes no
/// `--master-dir`).
fn jobs(fleet: &Fleet, args: &[&str]) -> crate::Output {
    let state = fleet.dir.join("state.db").display().to_string();
    let key = fleet.dir.join("key").display().to_string();
    let mut all = vec!["jobs"];
    all.extend(args);
    all.extend(["-o", "json", "--state", &state]);
    cairn_env(&all, &[("CAIRN_KEY_FILE", &key)])
}

/// A directory for the files a test gives the master (the fleet's own
/// directory is made anew when the fleet starts).
fn files(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-events-files-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_reactor_restores_an_edited_managed_file_and_restarts_a_stopped_service() {
    let files = files("react");
    let managed = files.join("motd");
    let marker = files.join("restarted");
    std::fs::write(
        files.join("motd.sls"),
        format!(
            "motd:\n  file.managed:\n    - name: {}\n    - contents: \"managed by cairn\"\n",
            managed.display()
        ),
    )
    .unwrap();
    let reactors = files.join("reactors.yaml");
    std::fs::write(
        &reactors,
        format!(
            "- name: restore managed files\n  tag: cairn/file/*/changed\n  state: motd.sls\n\
             - name: restart stopped services\n  tag: cairn/service/*/*/stopped\n  \
             run: \"echo restarted {{{{ event.data.name }}}} on {{{{ event.host }}}} >> {}\"\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut fleet = Fleet::start_with("react", true, &["--reactors", reactors.to_str().unwrap()]);
    fleet.agent("r1");
    until_served(&fleet, "r1", Duration::from_secs(10)).expect("enrolled by token");
    let sls = files.join("motd.sls");
    let out = fleet.cairn(&[
        "state",
        "apply",
        "r1",
        "-i",
        "r1,",
        sls.to_str().unwrap(),
        "--via",
        "agent",
        "-o",
        "json",
    ]);
    let job: J =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.snapshot()));
    assert_eq!(status(&job, "r1").0, "changed");
    let content = std::fs::read_to_string(&managed).unwrap();

    // Someone edits the managed file: the agent reports it, the reactor
    // re-applies the state, the file comes back.
    std::fs::write(&managed, "tampered\n").unwrap();
    wait(Duration::from_secs(15), || {
        (std::fs::read_to_string(&managed).ok()? == content).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not restored:\n{}\n{}",
            fleet.log("master"),
            fleet.log("agent-r1")
        )
    });
    let changed = events(&fleet, "cairn/file/**");
    assert_eq!(changed[0]["tag"], "cairn/file/r1/changed");
    assert_eq!(changed[0]["data"]["path"], managed.display().to_string());
    // The reaction is a job like any: recorded, with its events marked.
    let listed = jobs(&fleet, &["list"]);
    let list: Vec<J> = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", listed.snapshot()));
    let reaction = list
        .iter()
        .find(|j| j["kind"] == "reaction")
        .unwrap_or_else(|| panic!("no reaction job in {list:?}"));
    let rid = reaction["id"].as_str().unwrap();
    let shown = jobs(&fleet, &["show", rid]);
    let shown: J = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(status(&shown, "r1").0, "changed", "{shown}");
    let own = events(&fleet, &format!("cairn/job/{rid}/**"));
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["reaction"] == rid), "{own:?}");

    // The init reports a service stopped: the reactor runs its command on
    // that host.
    append(
        &fleet.services("r1"),
        &json!({"tag": "cairn/service/nginx/stopped", "pid": 7}),
    );
    // The shell makes the file, then writes the line: wait for the line.
    let said = wait(Duration::from_secs(15), || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .unwrap_or_else(|| panic!("not restarted:\n{}", fleet.log("master")));
    assert_eq!(said, "restarted nginx on r1\n");
    // By now the restore's own write had long been looked at: it was
    // never reported as a change, so it never fed the reactor again.
    let changed = events(&fleet, "cairn/file/**");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let reactions: Vec<_> = list.iter().filter(|j| j["kind"] == "reaction").collect();
    assert_eq!(reactions.len(), 1, "{list:?}");
    drop(fleet);
    let _ = std::fs::remove_dir_all(&files);
}

#[test]
fn a_bad_reactors_file_stops_the_master_at_its_line_and_column() {
    let files = files("bad");
    let bad = files.join("bad.yaml");
    std::fs::write(
        &bad,
        "- tag: cairn/file/*/changed\n  run: true\n  rnu: oops\n",
    )
    .unwrap();
    let mdir = files.join("master");
    let out = cairn_env(
        &[
            "master",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            mdir.to_str().unwrap(),
            "--reactors",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr.contains(&format!(
            "{}:3:3: unknown key `rnu` in a rule (did you mean `run`?)",
            bad.display()
        )),
        "{}",
        out.snapshot()
    );
    // It never started: no admin socket was made.
    assert!(!mdir.join("admin.sock").exists());
    let _ = std::fs::remove_dir_all(&files);
}
