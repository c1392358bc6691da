//! Keys, certificates and the two rustls verifiers.
//!
//! There is no certificate authority: each end is pinned by the SHA-256 of
//! its certificate's SubjectPublicKeyInfo (its key fingerprint), as SSH pins
//! host keys. The master keeps the accepted fingerprints anyway (salt-key's
//! list); a CA signing agent certificates would be a second source of truth
//! that revocation would have to reach (CRLs), for no added check. The
//! certificates are only the envelope TLS 1.3 needs for each side to prove,
//! by signing the handshake, that it holds the private key of the key it
//! shows. Keys are Ed25519, made on first start and kept 0600; the
//! certificate around a key is made afresh at each start (it carries no
//! trust of its own).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// The name the agent asks TLS for; the master's certificate is checked by
/// its key fingerprint, not by name.
pub const MASTER_NAME: &str = "cairn-master";

/// One end's key pair and the self-signed certificate around it.
#[derive(Debug)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
    /// Hex SHA-256 of the public key (SubjectPublicKeyInfo).
    pub fingerprint: String,
}

impl Identity {
    /// Reads `DIR/NAME.key`, or makes it (0600) on first start; the
    /// directory is made 0700.
    pub fn load_or_create(dir: &Path, file: &str, subject: &str) -> Result<Identity, String> {
        private_dir(dir)?;
        let path = dir.join(format!("{file}.key"));
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|e| e.to_string())?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by others (mode {:o}); it must be 0600",
                        path.display(),
                        mode & 0o777
                    ));
                }
                rcgen::KeyPair::from_pem(&pem)
                    .map_err(|e| format!("{}: not a private key: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                    .map_err(|e| e.to_string())?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                f.write_all(key.serialize_pem().as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(key = %path.display(), "made a new key pair");
                key
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut params =
            rcgen::CertificateParams::new(vec![subject.to_string()]).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let cert = cert.der().clone();
        let fingerprint = fingerprint(&cert).map_err(|e| e.to_string())?;
        Ok(Identity {
            cert,
            key_pkcs8: key.serialize_der(),
            fingerprint,
        })
    }

    /// The same key, to sign bus envelopes ([`super::seal`]).
    pub fn signer(&self) -> Result<super::seal::Signer, String> {
        super::seal::Signer::from_pkcs8(&self.key_pkcs8)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// Makes `dir` (and its parents) and restricts it to its owner.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))
}

/// The hex SHA-256 of a certificate's SubjectPublicKeyInfo; an error for
/// bytes that are not a well-formed certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    Ok(hex::encode(Sha256::digest(spki.as_ref())))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The master's TLS: 1.3 only, a client certificate required.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, String> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(AnyClientKey {
            algorithms: algorithms(),
        }))
        .with_single_cert(vec![id.cert.clone()], id.key())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// The agent's TLS: 1.3 only, its certificate offered, the master's key
/// checked by [`PinnedMaster`].
pub fn client_config(
    id: &Identity,
    master: Arc<PinnedMaster>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(master)
        .with_client_auth_cert(vec![id.cert.clone()], id.key())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// The master's client verifier: at the TLS layer, any well-formed
/// certificate whose key signs the handshake (so the peer holds that key).
/// Whether that key may do anything is the application's question, asked
/// right after the handshake and before any frame is read: the master looks
/// the fingerprint up among the accepted keys (see `master.rs`). A client
/// with no certificate fails the handshake (`client_auth_mandatory`).
#[derive(Debug)]
struct AnyClientKey {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The agent's server verifier: the master's key must have the fingerprint
/// given (`--master-fingerprint`, or the one saved at the first connection:
/// trust on first use, as SSH does). With none, the first key seen is
/// accepted and kept in [`PinnedMaster::seen`] for the agent to save.
#[derive(Debug)]
pub struct PinnedMaster {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedMaster {
    pub fn new(expected: Option<String>) -> PinnedMaster {
        PinnedMaster {
            expected: expected.map(|e| e.trim().to_ascii_lowercase()),
            seen: Mutex::new(None),
            algorithms: algorithms(),
        }
    }

    /// The fingerprint of the last master key accepted.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl ServerCertVerifier for PinnedMaster {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = fingerprint(end_entity)?;
        if let Some(expected) = &self.expected
            && *expected != found
        {
            return Err(rustls::Error::General(format!(
                "MASTER KEY MISMATCH: the master offered key {found}, but {expected} is pinned"
            )));
        }
        *self.seen.lock().expect("not poisoned") = Some(found);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// 16 random bytes as hex (nonces, jitter seeds).
pub fn random_hex() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system's random source works");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_0600_and_its_fingerprint_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), "agent", "a1").unwrap();
        let mode = std::fs::metadata(dir.path().join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Identity::load_or_create(dir.path(), "agent", "a1").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        let other = tempfile::tempdir().unwrap();
        let c = Identity::load_or_create(other.path(), "agent", "a1").unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
        // A key others can read is refused.
        std::fs::set_permissions(
            dir.path().join("agent.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Identity::load_or_create(dir.path(), "agent", "a1").unwrap_err();
        assert!(err.contains("0600"), "{err}");
    }
}
