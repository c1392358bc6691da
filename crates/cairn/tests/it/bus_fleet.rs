//! A fleet on a bus as its operator sees it: `cairn events` shows what
//! every master recorded, and a job for an agent whose process is gone is
//! answered `unreachable` at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value as J, json};

use crate::agents::wait;
use crate::bus::{BusFleet, RawNats, host};
use crate::events::{Follower, append};

fn events(f: &BusFleet, tag: &str) -> Vec<J> {
    let out = f.cairn(&["events", "--tag", tag, "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn tags(events: &[J]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["tag"].as_str().unwrap().to_string())
        .collect()
}

/// Two masters, two agents: each agent's events go to one master of the
/// queue group, each master records its own; `cairn events` and `cairn
/// events --follow` show them all, once each, in time order.
#[test]
fn events_show_every_master_of_the_fleet_in_time_order() {
    let mut f = BusFleet::start("fleet-events");
    f.master("m1");
    f.master("m2");
    f.agent("a1", None, true);
    f.agent("a2", None, true);
    f.wait_log("m1", "agent connected (bus)", 2);
    f.wait_log("m2", "agent connected (bus)", 2);
    // Both agents tail this file: each line is an event of each.
    let services = f.dir.join("no-services.jsonl");
    for i in 1..=6 {
        append(
            &services,
            &json!({"tag": format!("cairn/service/svc{i}/stopped"), "pid": i}),
        );
    }
    let want: BTreeSet<String> = (1..=6)
        .flat_map(|i| ["a1", "a2"].map(|a| format!("cairn/service/{a}/svc{i}/stopped")))
        .collect();
    let seen = wait(Duration::from_secs(20), || {
        let all = tags(&events(&f, "cairn/service/**"));
        (all.len() >= want.len()).then_some(all)
    })
    .unwrap_or_else(|| panic!("not every event shown: {:?}", events(&f, "**")));
    let shown: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(shown, want, "{seen:?}");
    assert_eq!(seen.len(), want.len(), "an event shown twice: {seen:?}");
    // Each master's own events: both saw both agents connect.
    let connected: BTreeSet<(String, String)> = events(&f, "cairn/agent/*/connected")
        .iter()
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["data"]["master"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for a in ["a1", "a2"] {
        for m in ["m1", "m2"] {
            assert!(connected.contains(&(a.into(), m.into())), "{connected:?}");
        }
    }
    let all = events(&f, "**");
    let times: Vec<&str> = all.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.is_sorted(), "{times:?}");
    // Which master recorded which event: the queue group split them (this
    // is what the merge is for), or the test proved less than it says.
    let by_master: BTreeMap<String, usize> = ["m1", "m2"]
        .iter()
        .map(|m| {
            let log = f.master_dir().join("masters").join(m).join("events.jsonl");
            let n = std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("cairn/service/")
                .count();
            (m.to_string(), n)
        })
        .collect();
    eprintln!("service events recorded by master: {by_master:?}");

    // Following: the backlog of both masters, then new events from either.
    let md = f.master_dir().display().to_string();
    let follower = Follower::start_in(&md, "cairn/service/**");
    let backlog: Vec<String> = (0..want.len())
        .map(|_| {
            follower.until(|_| true)[0]["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(backlog, seen);
    for i in 7..=10 {
        append(
            &services,
            &json!({"tag": format!("cairn/service/svc{i}/stopped"), "pid": i}),
        );
    }
    let mut more = BTreeSet::new();
    while more.len() < 8 {
        let got = follower.until(|_| true);
        more.insert(got[0]["tag"].as_str().unwrap().to_string());
    }
    let want: BTreeSet<String> = (7..=10)
        .flat_map(|i| ["a1", "a2"].map(|a| format!("cairn/service/{a}/svc{i}/stopped")))
        .collect();
    assert_eq!(more, want);
    // A master that stops is left; the follower goes on with the other.
    f.kill_master("m2");
    append(
        &services,
        &json!({"tag": "cairn/service/svc11/stopped", "pid": 11}),
    );
    let mut last = BTreeSet::new();
    while last.len() < 2 {
        let got = follower.until(|_| true);
        last.insert(got[0]["tag"].as_str().unwrap().to_string());
    }
    assert!(last.contains("cairn/service/a1/svc11/stopped"), "{last:?}");
    assert!(last.contains("cairn/service/a2/svc11/stopped"), "{last:?}");
}

/// An agent SIGKILLed: a job sent to it at once is `unreachable` (the
/// NATS server says nothing is subscribed to its jobs), not left waiting
/// for its silence (15 s here, past the job's 10 s timeout); started
/// again, it is served again.
#[test]
fn a_job_for_a_killed_agent_is_unreachable_at_once() {
    let mut f = BusFleet::start("agent-gone");
    f.master("m1");
    f.agent("k1", None, true);
    f.wait_log("m1", "agent connected (bus)", 1);
    let job = f.run("k1", "k1,", "true");
    assert_eq!(host(&job, "k1")["status"], "changed", "{job}");
    // Only the NATS server's status is news on the absent subject: a
    // client's message there is refused and drops nothing.
    let mut raw = RawNats::connect(f.nats.port);
    raw.publish("cairn.master.m1.absent.k1.1", b"it is gone, believe me");
    f.wait_log("m1", "not the server's", 1);
    let job = f.run("k1", "k1,", "true");
    assert_eq!(host(&job, "k1")["status"], "changed", "{job}");
    f.kill_agent("k1");
    let job = f.run("k1", "k1,", "true");
    let h = host(&job, "k1");
    assert_eq!(h["status"], "unreachable", "{job}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("not on the bus"), "{job}");
    f.wait_log("m1", "agent disconnected: not on the bus", 1);
    let gone = events(&f, "cairn/agent/k1/disconnected");
    assert!(!gone.is_empty(), "{:?}", events(&f, "**"));
    // Back: its next hello registers it again.
    f.agent("k1", None, true);
    f.wait_log("m1", "agent connected (bus)", 2);
    let job = f.run("k1", "k1,", "true");
    assert_eq!(host(&job, "k1")["status"], "changed", "{job}");
}
