//! The host key's judge during the handshake.

use std::sync::{Arc, Mutex as StdMutex};

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};

use super::target::HostKeyPolicy;
use crate::remote::TransportError;
use crate::transport::known_hosts::{self, KnownHosts, Verdict};

/// Judges the host key during the handshake; russh calls it once per
/// connection.
pub(super) struct Checker {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) port: u16,
    pub(super) known: Arc<KnownHosts>,
    pub(super) recorded: Option<String>,
    pub(super) policy: HostKeyPolicy,
    pub(super) seen: Arc<StdMutex<Option<String>>>,
}

/// The handler's error: a refused host key carries the full
/// [`TransportError`] out of russh's handshake.
#[derive(Debug)]
pub(super) enum HandlerError {
    Ssh(russh::Error),
    HostKey(TransportError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> HandlerError {
        HandlerError::Ssh(e)
    }
}

impl Checker {
    fn judge(&self, key: &PublicKey) -> Result<(), TransportError> {
        let found = known_hosts::openssh_line(key);
        let mismatch = |expected: String, expected_from: String| TransportError::HostKeyMismatch {
            host: self.name.clone(),
            found: found.clone(),
            expected,
            expected_from,
        };
        let mut vouched = false;
        if let Some(line) = &self.recorded {
            match known_hosts::parse_public_key(line) {
                Some(rec) if rec.key_data() == key.key_data() => vouched = true,
                Some(rec) => {
                    return Err(mismatch(
                        known_hosts::openssh_line(&rec),
                        "the deployment's record".into(),
                    ));
                }
                None => {
                    return Err(TransportError::Other {
                        host: self.name.clone(),
                        reason: format!(
                            "the deployment's recorded host key is not an OpenSSH public key: {line}"
                        ),
                    });
                }
            }
        }
        match self.known.check(&self.address, self.port, key) {
            Verdict::Known { .. } => vouched = true,
            Verdict::Mismatch { origin, expected } => {
                return Err(mismatch(expected, format!("known_hosts {origin}")));
            }
            Verdict::Revoked { origin } => {
                return Err(mismatch(
                    "not this key (@revoked)".into(),
                    format!("known_hosts {origin}"),
                ));
            }
            Verdict::Unknown => {}
        }
        if !vouched {
            if self.policy != HostKeyPolicy::AcceptNew {
                return Err(TransportError::HostKeyUnknown {
                    host: self.name.clone(),
                    found,
                });
            }
            tracing::info!(host = %self.name, key = %found, "accepting a new host key");
        }
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(found);
        }
        Ok(())
    }
}

impl client::Handler for Checker {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(HandlerError::HostKey(TransportError::Other {
                    host: self.name.clone(),
                    reason: "the host presented a certificate; cairn checks plain host keys".into(),
                }));
            }
        };
        self.judge(key).map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}
