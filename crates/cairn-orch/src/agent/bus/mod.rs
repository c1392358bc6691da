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
mod connect;
mod enrol;
mod envelope;
mod subject;

pub use connect::connect;
pub use enrol::{check_enrolment_proof, enrolment_proof};
pub use envelope::{Freshness, MAX_SKEW_MS, ToAgentBus, ToMasterBus};
pub use subject::{
    MASTERS_GROUP, absent_subject, check_token, ctl_subject, event_subject, hello_subject,
    job_subject, result_subject, subject_id,
};
