//! Checks of an artifact on this machine, in the order that trusts nothing
//! early: the signature over the manifest bytes first (so every later
//! check compares against signed values), then the archive's size and
//! digest (before any byte of it is unpacked), then each unpacked file.
//! The host script does the same checks on a host with the shell's tools.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use ring::digest::{Context, SHA256};

use crate::artifact::manifest::{FileEntry, Manifest};
use crate::artifact::sign::{PublicKey, Signature};
use crate::error::{ReleaseError, Result, VerifyError};

/// The signature over exactly these bytes, then their parse.
pub fn verify_manifest(bytes: &[u8], signature: &Signature, key: &PublicKey) -> Result<Manifest> {
    key.verify(bytes, signature)?;
    Manifest::from_bytes(bytes)
}

/// Size first: it is cheap and catches truncation without reading.
pub fn verify_archive(manifest: &Manifest, archive: &Path) -> Result<()> {
    let size = fs::metadata(archive)
        .map_err(ReleaseError::io(archive))?
        .len();
    if size != manifest.archive.size {
        return Err(VerifyError::ArchiveSize {
            expected: manifest.archive.size,
            found: size,
        }
        .into());
    }
    let found = file_sha256(archive)?;
    if found != manifest.archive.sha256 {
        return Err(VerifyError::ArchiveDigest {
            expected: manifest.archive.sha256.clone(),
            found,
        }
        .into());
    }
    Ok(())
}

/// Every file and symlink of the manifest is in `dir` as recorded, and
/// `dir` holds no other file or symlink (directories are not listed).
pub fn verify_tree(manifest: &Manifest, dir: &Path) -> Result<()> {
    let mut found = BTreeMap::new();
    walk(dir, "", &mut found)?;
    for entry in &manifest.files {
        let Some(kind) = found.remove(entry.path.as_str()) else {
            return Err(VerifyError::FileMissing {
                path: entry.path.clone(),
            }
            .into());
        };
        check_entry(entry, kind, &dir.join(&entry.path))?;
    }
    if let Some(path) = found.into_keys().next() {
        return Err(VerifyError::FileUnexpected { path }.into());
    }
    Ok(())
}

/// All of the above: signature, archive, unpack into `dest`, files.
pub fn verify_and_unpack(
    manifest_bytes: &[u8],
    signature: &Signature,
    key: &PublicKey,
    archive: &Path,
    dest: &Path,
) -> Result<Manifest> {
    let manifest = verify_manifest(manifest_bytes, signature, key)?;
    verify_archive(&manifest, archive)?;
    crate::artifact::pack::unpack(archive, dest)?;
    verify_tree(&manifest, dest)?;
    Ok(manifest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Symlink,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Symlink => "symlink",
        }
    }
}

fn check_entry(entry: &FileEntry, kind: Kind, path: &Path) -> Result<()> {
    let expected_kind = if entry.is_symlink() {
        Kind::Symlink
    } else {
        Kind::File
    };
    if kind != expected_kind {
        return Err(VerifyError::FileKind {
            path: entry.path.clone(),
            expected: expected_kind.name(),
            found: kind.name(),
        }
        .into());
    }
    if let Some(expected) = &entry.link {
        let target = fs::read_link(path).map_err(ReleaseError::io(path))?;
        let target = target.to_string_lossy();
        if target != expected.as_str() {
            return Err(VerifyError::LinkTarget {
                path: entry.path.clone(),
                expected: expected.clone(),
                found: target.into_owned(),
            }
            .into());
        }
        return Ok(());
    }
    let size = fs::metadata(path).map_err(ReleaseError::io(path))?.len();
    if size != entry.size {
        return Err(VerifyError::FileSize {
            path: entry.path.clone(),
            expected: entry.size,
            found: size,
        }
        .into());
    }
    let found = file_sha256(path)?;
    if found != entry.sha256 {
        return Err(VerifyError::FileDigest {
            path: entry.path.clone(),
            expected: entry.sha256.clone(),
            found,
        }
        .into());
    }
    Ok(())
}

fn walk(dir: &Path, prefix: &str, found: &mut BTreeMap<String, Kind>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(ReleaseError::io(dir))? {
        let entry = entry.map_err(ReleaseError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(ReleaseError::io(entry.path()))?;
        if kind.is_dir() {
            walk(&entry.path(), &rel, found)?;
        } else if kind.is_symlink() {
            found.insert(rel, Kind::Symlink);
        } else {
            found.insert(rel, Kind::File);
        }
    }
    Ok(())
}

/// Lowercase hex sha256 of a file, read in large blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(ReleaseError::io(path))?;
    let mut digest = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io::Read::read(&mut file, &mut buf).map_err(ReleaseError::io(path))?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(hex::encode(digest.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::pack::tests::{head, sample_tree};
    use crate::artifact::pack::{pack, unpack};
    use crate::artifact::sign::SigningKey;

    fn packed(tmp: &Path) -> (Manifest, Vec<u8>, Signature, SigningKey) {
        let src = tmp.join("src");
        sample_tree(&src);
        let m = pack(&src, &tmp.join("a.tar.zst"), head("v1")).unwrap();
        let key = SigningKey::generate().unwrap();
        let bytes = m.canonical_bytes();
        let sig = key.sign(&bytes);
        (m, bytes, sig, key)
    }

    #[test]
    fn a_good_artifact_verifies_and_unpacks() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, bytes, sig, key) = packed(tmp.path());
        let out = tmp.path().join("out");
        let got = verify_and_unpack(
            &bytes,
            &sig,
            &key.public(),
            &tmp.path().join("a.tar.zst"),
            &out,
        )
        .unwrap();
        assert_eq!(got, m);
    }

    #[test]
    fn a_tampered_manifest_or_another_key_fails_the_signature() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut bytes, sig, key) = packed(tmp.path());
        let other = SigningKey::generate().unwrap();
        let err = verify_manifest(&bytes, &sig, &other.public()).unwrap_err();
        assert!(
            matches!(err, ReleaseError::Verify(VerifyError::BadSignature { .. })),
            "{err}"
        );
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        let err = verify_manifest(&bytes, &sig, &key.public()).unwrap_err();
        assert!(
            matches!(err, ReleaseError::Verify(VerifyError::BadSignature { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_changed_archive_byte_or_length_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, ..) = packed(tmp.path());
        let path = tmp.path().join("a.tar.zst");
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = verify_archive(&m, &path).unwrap_err().to_string();
        assert!(err.contains(&m.archive.sha256), "{err}");
        bytes.push(0);
        fs::write(&path, &bytes).unwrap();
        let err = verify_archive(&m, &path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("the manifest says {}", m.archive.size)),
            "{err}"
        );
    }

    /// A file or a symlink at a relative path.
    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, u32),
        Link(String),
    }

    fn node() -> impl proptest::strategy::Strategy<Value = Node> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (proptest::collection::vec(any::<u8>(), 0..3000), prop_oneof![Just(0o644u32), Just(0o755), Just(0o600), Just(0o400)])
                .prop_map(|(b, m)| Node::File(b, m)),
            1 => "[a-z ]{1,12}".prop_map(Node::Link),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any tree of files and symlinks packs to the same bytes twice,
        /// and unpacks to what its manifest says.
        #[test]
        fn any_tree_round_trips_and_packs_deterministically(
            tree in proptest::collection::btree_map("[a-c]{1,3}(/[a-c_. -]{1,4}){0,2}", node(), 0..12)
        ) {
            use std::os::unix::fs::PermissionsExt;
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("src");
            fs::create_dir(&src).unwrap();
            let mut made = 0;
            for (path, node) in &tree {
                if path.split('/').any(|p| p.trim().is_empty() || p == "." || p == "..") {
                    continue;
                }
                let full = src.join(path);
                // A path under what is already a file, or over a directory: skip.
                if fs::create_dir_all(full.parent().unwrap()).is_err() || full.exists() {
                    continue;
                }
                match node {
                    Node::File(bytes, mode) => {
                        fs::write(&full, bytes).unwrap();
                        fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
                    }
                    Node::Link(target) => std::os::unix::fs::symlink(target, &full).unwrap(),
                }
                made += 1;
            }
            let m1 = pack(&src, &tmp.path().join("1"), head("v1")).unwrap();
            let m2 = pack(&src, &tmp.path().join("2"), head("v1")).unwrap();
            proptest::prop_assert_eq!(&m1, &m2);
            proptest::prop_assert_eq!(fs::read(tmp.path().join("1")).unwrap(), fs::read(tmp.path().join("2")).unwrap());
            proptest::prop_assert_eq!(m1.files.len(), made);
            proptest::prop_assert_eq!(&Manifest::from_bytes(&m1.canonical_bytes()).unwrap(), &m1);
            let key = SigningKey::from_seed(&[9; 32]).unwrap();
            let bytes = m1.canonical_bytes();
            let out = tmp.path().join("out");
            let got = verify_and_unpack(&bytes, &key.sign(&bytes), &key.public(), &tmp.path().join("1"), &out).unwrap();
            proptest::prop_assert_eq!(got, m1);
        }
    }

    #[test]
    fn a_changed_missing_or_extra_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, ..) = packed(tmp.path());
        let out = tmp.path().join("out");
        unpack(&tmp.path().join("a.tar.zst"), &out).unwrap();
        verify_tree(&m, &out).unwrap();

        fs::write(
            out.join("static/css/site.css"),
            "body{}\n".repeat(100).replace('y', "Y"),
        )
        .unwrap();
        let err = verify_tree(&m, &out).unwrap_err();
        match err {
            ReleaseError::Verify(VerifyError::FileDigest {
                path,
                expected,
                found,
            }) => {
                assert_eq!(path, "static/css/site.css");
                assert_ne!(expected, found);
            }
            other => panic!("{other}"),
        }
        fs::remove_file(out.join("static/css/site.css")).unwrap();
        let err = verify_tree(&m, &out).unwrap_err().to_string();
        assert!(
            err.contains("static/css/site.css is in the manifest but not"),
            "{err}"
        );

        unpack(&tmp.path().join("a.tar.zst"), &tmp.path().join("o2")).unwrap();
        fs::write(tmp.path().join("o2/extra"), "").unwrap();
        let err = verify_tree(&m, &tmp.path().join("o2"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("extra is in the archive but not in the manifest"),
            "{err}"
        );

        unpack(&tmp.path().join("a.tar.zst"), &tmp.path().join("o3")).unwrap();
        fs::remove_file(tmp.path().join("o3/run")).unwrap();
        std::os::unix::fs::symlink("elsewhere", tmp.path().join("o3/run")).unwrap();
        let err = verify_tree(&m, &tmp.path().join("o3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("points to `elsewhere`"), "{err}");
    }
}
