//! The check on every message a master sends an agent, whatever carries
//! it (TLS, or the bus): for this agent, not expired, not seen before.

use std::collections::HashMap;

use super::protocol::JobMessage;

/// How far ahead a job's expiry may be: the nonce window is kept until
/// expiry, so an expiry years away would pin its nonce (and memory) forever.
pub const MAX_EXPIRY_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Checks every job message before anything runs: for this agent, not
/// expired, not seen before. Nonces are kept until their message expires
/// (after which the expiry check alone refuses a replay).
#[derive(Debug)]
pub struct Guard {
    id: String,
    seen: HashMap<String, u64>,
}

impl Guard {
    pub fn new(id: impl Into<String>) -> Guard {
        Guard {
            id: id.into(),
            seen: HashMap::new(),
        }
    }

    pub fn check(&mut self, msg: &JobMessage, now: u64) -> Result<(), String> {
        self.admit(
            &format!("job {}", msg.job_id),
            &msg.target,
            msg.expires_at,
            &msg.nonce,
            now,
        )
    }

    /// The checks of [`Guard::check`] on any message that names a target,
    /// an expiry and a nonce (`what` names it in the reason).
    pub fn admit(
        &mut self,
        what: &str,
        target: &str,
        expires_at: u64,
        nonce: &str,
        now: u64,
    ) -> Result<(), String> {
        self.seen.retain(|_, expiry| *expiry > now);
        if target != self.id {
            return Err(format!(
                "{what} is for `{target}`, not for this agent (`{}`)",
                self.id
            ));
        }
        if expires_at <= now {
            return Err(format!("{what} expired {} ms ago", now - expires_at));
        }
        if expires_at > now + MAX_EXPIRY_AHEAD_MS {
            return Err(format!(
                "{what} expires too far ahead ({} ms)",
                expires_at - now
            ));
        }
        if nonce.len() < 16 {
            return Err(format!("{what}: nonce too short"));
        }
        if self.seen.contains_key(nonce) {
            return Err(format!("{what}: nonce {nonce} already seen (replay)"));
        }
        self.seen.insert(nonce.to_string(), expires_at);
        Ok(())
    }

    /// How many nonces it remembers (those of messages not yet expired).
    pub fn nonces_kept(&self) -> usize {
        self.seen.len()
    }
}
