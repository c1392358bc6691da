//! The manifest: what an artifact holds, file by file, and the bytes that
//! are signed. Its canonical form is `serde_json::to_vec` of [`Manifest`]
//! (fields in declaration order, no whitespace); a manifest read back is
//! checked byte for byte against that form, so two encodings of the same
//! content can never both verify.

use serde::{Deserialize, Serialize};

use crate::error::{ReleaseError, Result};

/// The manifest format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// The name a release's manifest gets inside its installed directory (the
/// host script keeps it there to recognise a reinstall); so no artifact
/// may carry a file of that name at its top.
pub const INSTALLED_MANIFEST: &str = ".cairn-manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub app: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `user@host` of whoever ran the build.
    pub built_by: String,
    pub archive: ArchiveDigest,
    /// Sorted by `path`; regular files and symlinks (directories are
    /// implied by their contents; empty ones are in the archive).
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveDigest {
    /// Lowercase hex of the sha256 of the `.tar.zst` bytes.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative, `/`-separated, no `.` or `..` components.
    pub path: String,
    /// For a symlink: the length of its target.
    pub size: u64,
    /// For a symlink: the sha256 of its target's bytes.
    pub sha256: String,
    /// Permission bits (`0o755`); 0o777 for a symlink.
    pub mode: u32,
    /// Set for a symlink only: where it points, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FileEntry {
    pub fn is_symlink(&self) -> bool {
        self.link.is_some()
    }
}

impl Manifest {
    /// The bytes that are signed and stored.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// Lowercase hex sha256 of the canonical bytes: the artifact's identity
    /// (the same digest in dev and prod means the same artifact).
    pub fn digest(&self) -> String {
        sha256_hex(&self.canonical_bytes())
    }

    /// Parses stored bytes; refuses anything that is not exactly the
    /// canonical form of a valid manifest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ReleaseError::Manifest(format!("not a manifest: {e}")))?;
        manifest.check()?;
        if manifest.canonical_bytes() != bytes {
            return Err(ReleaseError::Manifest(
                "not in canonical form (re-encoded, its bytes differ)".into(),
            ));
        }
        Ok(manifest)
    }

    /// The invariants every manifest holds, whoever made it.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ReleaseError::Manifest(m));
        if self.format != FORMAT {
            return bad(format!(
                "format {} (this cairn reads format {FORMAT})",
                self.format
            ));
        }
        crate::artifact::name::check_name("app", &self.app)?;
        crate::artifact::name::check_name("version", &self.version)?;
        if time::OffsetDateTime::parse(
            &self.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .is_err()
        {
            return bad(format!("created_at `{}` is not RFC 3339", self.created_at));
        }
        if !is_sha256_hex(&self.archive.sha256) {
            return bad(format!(
                "archive sha256 `{}` is not 64 lowercase hex digits",
                self.archive.sha256
            ));
        }
        for (i, f) in self.files.iter().enumerate() {
            check_path(&f.path).map_err(|why| ReleaseError::Manifest(why.to_string()))?;
            if f.path == INSTALLED_MANIFEST {
                return bad(format!("{INSTALLED_MANIFEST} is reserved for cairn"));
            }
            if !is_sha256_hex(&f.sha256) {
                return bad(format!("{}: sha256 `{}` is not valid", f.path, f.sha256));
            }
            if f.mode > 0o777 {
                return bad(format!("{}: mode {:o} beyond 0777", f.path, f.mode));
            }
            if let Some(link) = &f.link {
                check_link_target(link).map_err(|why| {
                    ReleaseError::Manifest(format!("{}: symlink target {why}", f.path))
                })?;
            }
            if i > 0 && self.files[i - 1].path >= f.path {
                return bad(format!(
                    "files not sorted by path or repeated: `{}` then `{}`",
                    self.files[i - 1].path,
                    f.path
                ));
            }
        }
        Ok(())
    }
}

/// Why a path cannot be in a manifest, if it cannot. Paths end up in
/// `sha256sum` check lists and shell words on hosts, so besides being
/// relative and staying inside the tree they carry no control characters
/// or backslashes (which `sha256sum` would escape).
pub fn check_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!("`{path}` is absolute"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("`{path}` has an empty, `.` or `..` component"));
        }
    }
    check_link_target(path).map_err(|why| format!("`{path}` {why}"))
}

fn check_link_target(target: &str) -> std::result::Result<(), &'static str> {
    if target.is_empty() {
        return Err("is empty");
    }
    if target.chars().any(|c| c.is_control() || c == '\\') {
        return Err("has a control character or a backslash");
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            app: "web".into(),
            version: "v1".into(),
            created_at: "2026-12-05T06:00:00Z".into(),
            built_by: "ci@build-1".into(),
            archive: ArchiveDigest {
                sha256: sha256_hex(b"archive"),
                size: 7,
            },
            files: vec![
                FileEntry {
                    path: "bin/web".into(),
                    size: 3,
                    sha256: sha256_hex(b"abc"),
                    mode: 0o755,
                    link: None,
                },
                FileEntry {
                    path: "current-config".into(),
                    size: 11,
                    sha256: sha256_hex(b"etc/web.cfg"),
                    mode: 0o777,
                    link: Some("etc/web.cfg".into()),
                },
            ],
        }
    }

    #[test]
    fn canonical_bytes_follow_the_field_order_and_round_trip() {
        let m = sample();
        let bytes = m.canonical_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"format":1,"app":"web","version":"v1","created_at":"#),
            "{text}"
        );
        assert!(
            text.contains(r#""mode":493}"#),
            "no link key on a file: {text}"
        );
        assert!(text.contains(r#""link":"etc/web.cfg"}"#), "{text}");
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
        assert_eq!(m.digest(), sha256_hex(&bytes));
    }

    #[test]
    fn a_re_encoded_manifest_is_refused() {
        let pretty = serde_json::to_vec_pretty(&sample()).unwrap();
        let err = Manifest::from_bytes(&pretty).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
    }

    #[test]
    fn paths_outside_the_tree_and_unsorted_files_are_refused() {
        for (path, why) in [
            ("/etc/passwd", "absolute"),
            ("a/../../x", "`..`"),
            ("a//b", "empty"),
            ("./a", "`.`"),
            ("a\nb", "control"),
            ("a\\b", "backslash"),
            (INSTALLED_MANIFEST, "reserved"),
        ] {
            let mut m = sample();
            m.files[0].path = path.into();
            let err = m.check().unwrap_err().to_string();
            assert!(err.contains(why), "{path:?}: {err}");
        }
        let mut m = sample();
        m.files.swap(0, 1);
        assert!(m.check().unwrap_err().to_string().contains("sorted"));
        let mut m = sample();
        m.files[1].path = m.files[0].path.clone();
        assert!(m.check().unwrap_err().to_string().contains("repeated"));
    }

    #[test]
    fn bad_digests_formats_and_dates_are_refused() {
        let mut m = sample();
        m.archive.sha256 = "ABC".into();
        assert!(m.check().is_err());
        let mut m = sample();
        m.format = 2;
        assert!(m.check().unwrap_err().to_string().contains("format 2"));
        let mut m = sample();
        m.created_at = "yesterday".into();
        assert!(m.check().unwrap_err().to_string().contains("RFC 3339"));
        let mut m = sample();
        m.files[0].mode = 0o4755;
        assert!(m.check().is_err());
    }
}
