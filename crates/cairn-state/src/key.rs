//! Where the encryption key comes from, and the key file's life cycle.
//!
//! The CLI decides the path (`CAIRN_KEY_FILE`, `~/.config/cairn/key`); this
//! module only reads it, or creates it when the state has no secrets yet.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_engine::store::{StoreError, StoreResult};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Generate, Key};

/// Key length in bytes: XChaCha20-Poly1305 takes a 256-bit key.
pub const KEY_LEN: usize = 32;

/// The key that encrypts the state's secrets.
#[derive(Clone)]
pub enum KeySource {
    /// A key file holding 64 hex digits (surrounding whitespace ignored) or
    /// 32 raw bytes. When it does not exist and the state holds no secrets
    /// yet, it is created with 32 random bytes written as hex, mode 0600,
    /// and its missing directories 0700.
    File(PathBuf),
    /// The key itself: tests, or a key the caller fetched from elsewhere.
    Bytes([u8; KEY_LEN]),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySource::Bytes(_) => f.write_str("Bytes(<redacted>)"),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "the key file {}", path.display()),
            KeySource::Bytes(_) => f.write_str("the key given by the caller"),
        }
    }
}

impl KeySource {
    /// The key. A missing key file is created only when `create` is set: a
    /// fresh key cannot open a state that already holds secrets, so for such
    /// a state the missing file is an error that says to restore it.
    pub(crate) fn load(&self, create: bool) -> StoreResult<[u8; KEY_LEN]> {
        match self {
            KeySource::Bytes(key) => Ok(*key),
            KeySource::File(path) => match fs::read(path) {
                Ok(bytes) => {
                    warn_if_exposed(path);
                    parse(&bytes).map_err(|why| {
                        StoreError::Key(format!("key file {}: {why}", path.display()))
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => create_file(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Key(format!(
                    "the key file {} does not exist, and this state's secrets were encrypted \
                     with a key: restore that key file or point cairn at it",
                    path.display()
                ))),
                Err(e) => Err(StoreError::Key(format!(
                    "cannot read the key file {}: {e}",
                    path.display()
                ))),
            },
        }
    }
}

/// 64 hex digits (whitespace around them ignored) or exactly 32 raw bytes.
fn parse(bytes: &[u8]) -> Result<[u8; KEY_LEN], String> {
    let text = bytes.trim_ascii();
    let mut key = [0u8; KEY_LEN];
    if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, &mut key).is_ok() {
        Ok(key)
    } else if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
        Ok(key)
    } else {
        Err(format!(
            "expected 64 hex digits or 32 raw bytes, found {} bytes",
            bytes.len()
        ))
    }
}

pub(crate) fn generate() -> StoreResult<[u8; KEY_LEN]> {
    let key = Key::<XChaCha20Poly1305>::try_generate()
        .map_err(|e| StoreError::Key(format!("cannot draw a random key: {e}")))?;
    Ok(key.into())
}

/// Creates the key file atomically: the key is written to a private
/// temporary file that is then hard-linked to `path`. Linking fails when
/// `path` exists, so two processes creating it at once agree on one key,
/// and no reader ever sees a half-written file.
fn create_file(path: &Path) -> StoreResult<[u8; KEY_LEN]> {
    let fail = |what: &str, e: io::Error| {
        StoreError::Key(format!(
            "cannot create the key file {}: {what}: {e}",
            path.display()
        ))
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    private_dir_builder()
        .create(dir)
        .map_err(|e| fail("creating its directory", e))?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let key = generate()?;
    let written = (|| {
        let mut file = private_file_options().open(&tmp)?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new state encryption key");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let bytes = fs::read(path).map_err(|e| fail("reading it back", e))?;
            parse(&bytes)
                .map_err(|why| StoreError::Key(format!("key file {}: {why}", path.display())))
        }
        Err(e) => Err(fail("writing it", e)),
    }
}

#[cfg(unix)]
fn private_dir_builder() -> fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
}

#[cfg(not(unix))]
fn private_dir_builder() -> fs::DirBuilder {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    builder
}

#[cfg(unix)]
fn private_file_options() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    options
}

#[cfg(not(unix))]
fn private_file_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    options
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the state key file is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!(
            "cairn-state-key-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn parses_hex_with_whitespace_and_raw_bytes() {
        let key: Vec<u8> = (0u8..32).collect();
        let hex = format!("  {}\n", hex::encode(&key));
        assert_eq!(parse(hex.as_bytes()).unwrap().as_slice(), key.as_slice());
        assert_eq!(
            parse(hex.to_uppercase().as_bytes()).unwrap().as_slice(),
            key.as_slice()
        );
        // 32 raw bytes, some of which are whitespace: taken as they are.
        let raw = [b' '; 32];
        assert_eq!(parse(&raw).unwrap(), raw);
    }

    #[test]
    fn rejects_keys_of_the_wrong_length() {
        assert!(parse(b"abcd").unwrap_err().contains("found 4 bytes"));
        assert!(parse(&[b'a'; 63]).is_err());
        let not_hex = [b'z'; 64];
        assert!(parse(&not_hex).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let key = generate().unwrap();
        assert_eq!(parse(hex::encode(key).as_bytes()).unwrap(), key);
        assert_ne!(generate().unwrap(), key, "two draws gave one key");
    }

    #[test]
    fn creates_a_private_key_file_once() {
        let root = scratch("create");
        let path = root.join("a/b/key");
        let source = KeySource::File(path.clone());
        let first = source.load(true).unwrap();
        let second = source.load(true).unwrap();
        assert_eq!(
            first, second,
            "the second load must read the file, not make a new key"
        );
        assert_eq!(fs::read_to_string(&path).unwrap().trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&root.join("a/b")), 0o700);
            assert_eq!(mode(&root.join("a")), 0o700);
        }
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(root.join("a/b")).unwrap().count(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_file_is_not_created_when_the_state_has_secrets() {
        let root = scratch("missing");
        let path = root.join("key");
        let err = KeySource::File(path.clone()).load(false).unwrap_err();
        assert!(
            matches!(&err, StoreError::Key(m) if m.contains("does not exist")),
            "{err}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let root = scratch("race");
        let path = root.join("key");
        let keys: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| KeySource::File(path.clone()).load(true).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(parse(&fs::read(&path).unwrap()).unwrap(), keys[0]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn debug_redacts_the_key() {
        let shown = format!("{:?}", KeySource::Bytes([0xab; 32]));
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }
}
