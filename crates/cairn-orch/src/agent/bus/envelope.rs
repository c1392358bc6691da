//! The signed messages on the bus, and how a master refuses replays.

use serde::{Deserialize, Serialize};

use crate::agent::protocol::{ToAgent, ToMaster};

/// How far a message's `sent_at` may be from the reader's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
