//! Masters and agents on a NATS bus (`--bus nats://ADDR`): several masters
//! serve one fleet, and a job outlives the master that sent it.
//!
//! NATS is only transport. Any client of the server may publish on any
//! subject, so nothing read from the bus is believed for where it came
//! from: every message is a signed envelope ([`super::seal`]) over its
//! subject and body.
//!
//! - Master → agent ([`ToAgentBus`]): signed with the fleet's master key
//!   (`DIR/master.key`, shared by the masters as Salt's multi-master shares
//!   `master.pem`), which the agent pins (`--master-fingerprint`, or the
//!   file a TLS session saved; over the bus there is no trust on first
//!   use: anyone can publish). It names its target, an expiry and a nonce;
//!   the agent refuses one for another id, past its expiry or with a nonce
//!   it saw (the same [`super::Guard`] as over TLS), and runs nothing until
//!   a master told it, signed, that its key is accepted.
//! - Agent → master ([`ToMasterBus`]): signed with the agent's key; a
//!   master takes it only if that key's fingerprint is accepted under the
//!   id the message and its subject name, sent within [`MAX_SKEW_MS`] of
//!   now, with a nonce not seen in that window. A pending key's hello is
//!   recorded (that is enrolment) and nothing else of it is read.
//!
//! Subjects (`ID` is the agent id, `NAME` a master's name):
//!
//! | subject | from → to | what |
//! | --- | --- | --- |
//! | `cairn.hello.ID` | agent → every master (request) | its hello and heartbeat; each master answers `Welcome`, `Pending` or `Refused`, the agent takes the first |
//! | `cairn.agent.ID.job` | a master → agent | a job; the result goes to the `reply` subject the signed body names |
//! | `cairn.agent.ID.ctl` | a master → agent | `Refused` when its key is revoked, rejected or deleted |
//! | `cairn.master.NAME.result` | agent → the master that sent the job | results, and jobs it refused |
//! | `cairn.event.ID` | agent → one master (queue group) | its events, recorded and reacted to once |
//! | `cairn.master.NAME.absent.ID.N` | the NATS server → the master | "no responders": a job found nobody subscribed to the agent's job subject |
//!
//! An agent that is gone (its process killed, its connection closed) is
//! known at its next job, not after `--silence`: a master publishes each
//! job with the reply subject `cairn.master.NAME.absent.ID.N`, to which the
//! NATS server answers "no responders" (status 503) when nothing is
//! subscribed to the job's subject; the master then drops the agent and
//! answers its jobs `unreachable`. Agents never answer on that subject.
//!
//! A job's id is the unit of failover: when the master a CLI asked dies
//! mid-job, the CLI asks another, which sends the job again (fresh nonce,
//! same job id, its own reply subject); the agent runs a job id at most
//! once and answers a repeat with the result it kept (or, still running,
//! sends it to every master that asked when done).

pub mod agent;

use serde::{Deserialize, Serialize};

use super::protocol::{ToAgent, ToMaster};

/// How far a message's `sent_at` may be from the reader's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

/// The queue group of a fleet's masters, for what one of them handles.
pub const MASTERS_GROUP: &str = "cairn-masters";

pub fn hello_subject(id: &str) -> String {
    format!("cairn.hello.{id}")
}

pub fn job_subject(id: &str) -> String {
    format!("cairn.agent.{id}.job")
}

pub fn ctl_subject(id: &str) -> String {
    format!("cairn.agent.{id}.ctl")
}

pub fn result_subject(master: &str) -> String {
    format!("cairn.master.{master}.result")
}

/// Where the NATS server says a job found no subscriber: the reply
/// subject of every job a master publishes (the result goes to the one
/// the signed body names). `serial`: the master's registration of the
/// agent the job was sent to, so a late answer cannot drop it once back.
pub fn absent_subject(master: &str, id: &str, serial: &str) -> String {
    format!("cairn.master.{master}.absent.{id}.{serial}")
}

pub fn event_subject(id: &str) -> String {
    format!("cairn.event.{id}")
}

/// The agent id a subject `PREFIX.ID[.SUFFIX]` names.
pub fn subject_id<'a>(subject: &'a str, prefix: &str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .split('.')
        .next()
        .filter(|s| !s.is_empty())
}

/// A name usable as one subject token (agent ids, master names): no dots,
/// wildcards or whitespace, which would address other subjects.
pub fn check_token(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(format!(
            "{what} `{s}` cannot be used on the bus: use letters, digits, `-` and `_` (at most 128)"
        ));
    }
    Ok(())
}

/// Master → agent: signed with the master key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToAgentBus {
    pub target: String,
    /// Unix milliseconds; for a job, its own expiry.
    pub expires_at: u64,
    /// For a job, its own nonce.
    pub nonce: String,
    /// Where the answer goes (a job's result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    pub msg: ToAgent,
}

/// Agent → master: signed with the agent's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToMasterBus {
    pub id: String,
    /// Unix milliseconds.
    pub sent_at: u64,
    pub nonce: String,
    pub msg: ToMaster,
}

/// The proof of the enrolment token an agent sends over the bus, where the
/// token itself would be read by every subscriber: an HMAC of its id and
/// key fingerprint under the token, so it enrols that key and no other.
pub fn enrolment_proof(token: &str, id: &str, fingerprint: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, format!("cairn-enrol\0{id}\0{fingerprint}").as_bytes());
    hex::encode(tag.as_ref())
}

/// Checks a proof in constant time.
pub fn check_enrolment_proof(token: &str, id: &str, fingerprint: &str, proof: &str) -> bool {
    let Some(bytes) = (0..proof.len())
        .step_by(2)
        .map(|i| {
            proof
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    ring::hmac::verify(
        &key,
        format!("cairn-enrol\0{id}\0{fingerprint}").as_bytes(),
        &bytes,
    )
    .is_ok()
}

/// The messages an agent sent that a master has seen: a replay within the
/// skew window is refused by its nonce, one outside it by its time.
#[derive(Debug, Default)]
pub struct Freshness {
    seen: std::collections::HashMap<String, u64>,
    swept: u64,
}

impl Freshness {
    pub fn check(&mut self, msg: &ToMasterBus, now: u64) -> Result<(), String> {
        if now > self.swept + 1000 {
            self.seen.retain(|_, t| *t + 2 * MAX_SKEW_MS > now);
            self.swept = now;
        }
        if now.abs_diff(msg.sent_at) > MAX_SKEW_MS {
            return Err(format!(
                "sent {} ms from now (more than {MAX_SKEW_MS} apart: a replay, or a clock off)",
                i128::from(msg.sent_at) - i128::from(now)
            ));
        }
        if msg.nonce.len() < 16 {
            return Err("nonce too short".into());
        }
        if self.seen.insert(msg.nonce.clone(), msg.sent_at).is_some() {
            return Err(format!("nonce {} already seen (replay)", msg.nonce));
        }
        Ok(())
    }
}

/// Connects to the bus, retrying in the background when the server is not
/// up yet (the process starts anyway and says so).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, String> {
    if !url.starts_with("nats://") && !url.starts_with("tls://") {
        return Err(format!(
            "--bus {url}: give a NATS server as nats://HOST:PORT (user:password@ and tls:// work too)"
        ));
    }
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        // A master is sent a result for every host of a job at once.
        .subscription_capacity(1 << 16)
        .client_capacity(1 << 14)
        .event_callback(|e| async move {
            tracing::warn!("bus: {e}");
        })
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to the bus at {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_agent_and_names_stay_one_token() {
        assert_eq!(subject_id(&hello_subject("a1"), "cairn.hello"), Some("a1"));
        assert_eq!(subject_id(&job_subject("a-2"), "cairn.agent"), Some("a-2"));
        assert_eq!(subject_id("cairn.hellox.a1", "cairn.hello"), None);
        assert_eq!(subject_id("cairn.hello.", "cairn.hello"), None);
        check_token("id", "web-01_a").unwrap();
        for bad in ["a.b", "a*", ">", "a b", ""] {
            assert!(check_token("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_enrolment_proof_binds_the_token_to_one_key() {
        let p = enrolment_proof("s3cret", "a1", "f1");
        assert!(check_enrolment_proof("s3cret", "a1", "f1", &p));
        assert!(!check_enrolment_proof("s3cret", "a1", "f2", &p));
        assert!(!check_enrolment_proof("s3cret", "a2", "f1", &p));
        assert!(!check_enrolment_proof("other", "a1", "f1", &p));
        assert!(!check_enrolment_proof("s3cret", "a1", "f1", "zz"));
        assert!(!check_enrolment_proof("s3cret", "a1", "f1", "abc"));
    }

    #[test]
    fn a_replayed_or_stale_message_is_refused() {
        let mut f = Freshness::default();
        let now = 1_000_000_000;
        let msg = |nonce: &str, sent_at| ToMasterBus {
            id: "a1".into(),
            sent_at,
            nonce: nonce.into(),
            msg: ToMaster::Heartbeat,
        };
        let n = "00112233445566778899aabbccddeeff";
        f.check(&msg(n, now), now).unwrap();
        let e = f.check(&msg(n, now), now + 10).unwrap_err();
        assert!(e.contains("replay"), "{e}");
        let e = f
            .check(
                &msg("ffeeddccbbaa99887766554433221100", now - MAX_SKEW_MS - 1),
                now,
            )
            .unwrap_err();
        assert!(e.contains("apart"), "{e}");
        let e = f.check(&msg("short", now), now).unwrap_err();
        assert!(e.contains("nonce"), "{e}");
        // Past the window the nonce is forgotten; its time refuses it.
        let later = now + 3 * MAX_SKEW_MS;
        let e = f.check(&msg(n, now), later).unwrap_err();
        assert!(e.contains("apart"), "{e}");
        assert!(f.seen.is_empty());
    }
}
