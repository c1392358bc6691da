//! A server's SSH identity: its own ed25519 host key, made in-process
//! (no `ssh-keygen` per server) and written into its layer, root's
//! `authorized_keys`, and the `host_key` attribute a `known_hosts` line is
//! made of. Images carry no host keys (the image recipe deletes the ones
//! openssh-server's postinst made; `image: host` shows the machine's, which
//! a server's layer hides), so no two servers share one.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey, PublicKey};

use super::error::HostError;
use super::runtime::SSH_MARKER;

/// The host key's path inside a server.
pub const HOST_KEY_PATH: &str = "etc/ssh/ssh_host_ed25519_key";

/// sshd settings cairn adds (Debian's sshd_config includes
/// sshd_config.d/*.conf first, so these win).
pub const SSHD_CONFIG: &str = "# written by cairn\n\
HostKey /etc/ssh/ssh_host_ed25519_key\n\
PermitRootLogin prohibit-password\n\
PasswordAuthentication no\n";

/// A new ed25519 key pair, from the OS's randomness (the `ssh-key` crate
/// needs no rand features for a seed we give it).
pub fn generate_key(comment: &str) -> Result<PrivateKey, HostError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| HostError::Key(format!("no randomness for a key: {e}")))?;
    PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
        comment,
    )
    .map_err(|e| HostError::Key(e.to_string()))
}

/// The `host_key` attribute: `ssh-ed25519 AAAA...` (algorithm and key, no
/// comment): a `known_hosts` line is the address, a space, and this.
pub fn host_key_attribute(key: &PublicKey) -> Result<String, HostError> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|s| s.trim().to_string())
        .map_err(|e| HostError::Key(e.to_string()))
}

fn write(root: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<(), HostError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| HostError::io(format!("create {}", parent.display()), e))?;
    }
    let _ = std::fs::remove_file(&path);
    // Made with its final mode: a private key is never readable by others.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, contents))
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| HostError::io(format!("write {}", path.display()), e))
}

/// Gives the server whose root is mounted at `root` its host key: removes
/// any other `ssh_host_*` file it sees (the image's or the machine's),
/// writes the key (0600) and its public half (0644), and the sshd settings
/// that use only this key. Returns the `host_key` attribute.
pub fn install_host_key(root: &Path, key: &PrivateKey) -> Result<String, HostError> {
    let ssh_dir = root.join("etc/ssh");
    if let Ok(entries) = std::fs::read_dir(&ssh_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(entry.path())
                    .map_err(|e| HostError::io(format!("remove {}", entry.path().display()), e))?;
            }
        }
    }
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostError::Key(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| HostError::Key(e.to_string()))?;
    write(root, HOST_KEY_PATH, private.as_bytes(), 0o600)?;
    write(
        root,
        &format!("{HOST_KEY_PATH}.pub"),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;
    write(
        root,
        "etc/ssh/sshd_config.d/cairn.conf",
        SSHD_CONFIG.as_bytes(),
        0o644,
    )?;
    host_key_attribute(key.public_key())
}

/// The `host_key` attribute of the key a server already has (after a
/// restart), if it has one.
pub fn read_host_key(root: &Path) -> Result<Option<String>, HostError> {
    let path = root.join(format!("{HOST_KEY_PATH}.pub"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = PublicKey::from_openssh(text.trim())
                .map_err(|e| HostError::Key(format!("{}: {e}", path.display())))?;
            host_key_attribute(&key).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::io(format!("read {}", path.display()), e)),
    }
}

/// Lets `public_key` (an OpenSSH public key line) log in as root on the
/// server whose root is mounted at `root`.
pub fn install_authorized_key(root: &Path, public_key: &str) -> Result<(), HostError> {
    let key = PublicKey::from_openssh(public_key.trim())
        .map_err(|e| HostError::Key(format!("not an OpenSSH public key: {e}")))?;
    let line = key
        .to_openssh()
        .map_err(|e| HostError::Key(e.to_string()))?;
    let dir = root.join("root/.ssh");
    std::fs::create_dir_all(&dir)
        .map_err(|e| HostError::io(format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| HostError::io(format!("chmod {}", dir.display()), e))?;
    write(
        root,
        "root/.ssh/authorized_keys",
        format!("{line}\n").as_bytes(),
        0o600,
    )?;
    // The init starts sshd only on a server that takes logins: this one.
    write(
        root,
        SSH_MARKER.trim_start_matches('/'),
        b"key_pair\n",
        0o644,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_host_key_goes_in_with_its_modes_and_replaces_others() {
        let root = std::env::temp_dir().join(format!("cairn-ssh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/ssh_host_rsa_key"), "old").unwrap();
        let key = generate_key("web0").unwrap();
        let attr = install_host_key(&root, &key).unwrap();
        assert!(attr.starts_with("ssh-ed25519 AAAA"), "{attr}");
        assert_eq!(attr.split(' ').count(), 2, "no comment: {attr}");
        assert!(!root.join("etc/ssh/ssh_host_rsa_key").exists());
        let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().mode() & 0o777;
        assert_eq!(mode(HOST_KEY_PATH), 0o600);
        assert_eq!(mode("etc/ssh/ssh_host_ed25519_key.pub"), 0o644);
        assert_eq!(
            read_host_key(&root).unwrap().as_deref(),
            Some(attr.as_str())
        );
        let private = std::fs::read_to_string(root.join(HOST_KEY_PATH)).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let client = generate_key("me").unwrap();
        install_authorized_key(&root, &client.public_key().to_openssh().unwrap()).unwrap();
        assert_eq!(mode("root/.ssh"), 0o700);
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert!(install_authorized_key(&root, "not a key").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
