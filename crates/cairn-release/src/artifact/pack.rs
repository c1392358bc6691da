//! A directory into a `.tar.zst`, the same bytes for the same tree: entries
//! in name order, mtime 0, uid/gid 0 without names, permission bits only,
//! one zstd level. Same bytes means the same archive digest, so a rebuild
//! of unchanged sources can be recognised and caches keyed by digest work.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use ring::digest::{Context, SHA256};

use crate::artifact::manifest::{
    ArchiveDigest, FORMAT, FileEntry, INSTALLED_MANIFEST, Manifest, check_path,
};
use crate::error::{ReleaseError, Result};

/// zstd's default: most of the size win of higher levels at a fraction of
/// their time (artifacts are built once, but built while someone waits).
const ZSTD_LEVEL: i32 = 3;

/// The manifest's fields that do not come from the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub app: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub built_by: String,
}

/// Packs `dir` into a new file at `archive` and returns the manifest of
/// what went in. Sockets, FIFOs and devices are refused: they cannot be
/// part of a release.
pub fn pack(dir: &Path, archive: &Path, head: ManifestHead) -> Result<Manifest> {
    crate::artifact::name::check_name("app", &head.app)?;
    crate::artifact::name::check_name("version", &head.version)?;
    let file = File::create(archive).map_err(ReleaseError::io(archive))?;
    let hashing = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        digest: Context::new(&SHA256),
        size: 0,
    };
    let encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL).map_err(ReleaseError::io(archive))?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let mut files = Vec::new();
    add_dir(&mut tar, dir, "", &mut files)?;
    let encoder = tar.into_inner().map_err(ReleaseError::io(archive))?;
    let mut hashing = encoder.finish().map_err(ReleaseError::io(archive))?;
    hashing.inner.flush().map_err(ReleaseError::io(archive))?;
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| ReleaseError::io(archive)(e.into_error()))?;
    file.sync_all().map_err(ReleaseError::io(archive))?;
    files.sort_by(|a: &FileEntry, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT,
        app: head.app,
        version: head.version,
        created_at: head.created_at,
        built_by: head.built_by,
        archive: ArchiveDigest {
            sha256: hex::encode(hashing.digest.finish()),
            size: hashing.size,
        },
        files,
    };
    manifest.check()?;
    tracing::debug!(
        app = %manifest.app,
        version = %manifest.version,
        files = manifest.files.len(),
        bytes = manifest.archive.size,
        "packed"
    );
    Ok(manifest)
}

fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    files: &mut Vec<FileEntry>,
) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .map_err(ReleaseError::io(dir))?
        .collect::<io::Result<Vec<_>>>()
        .map_err(ReleaseError::io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| ReleaseError::Pack {
            path: path.clone(),
            reason: "the name is not UTF-8".into(),
        })?;
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        check_path(&rel).map_err(|reason| ReleaseError::Pack {
            path: path.clone(),
            reason,
        })?;
        if rel == INSTALLED_MANIFEST {
            return Err(ReleaseError::Pack {
                path,
                reason: format!("{INSTALLED_MANIFEST} is reserved for cairn's installed manifest"),
            });
        }
        let meta = fs::symlink_metadata(&path).map_err(ReleaseError::io(&path))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode);
            header.set_size(0);
            tar.append_data(&mut header, format!("{rel}/"), io::empty())
                .map_err(ReleaseError::io(&path))?;
            add_dir(tar, &path, &rel, files)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(ReleaseError::io(&path))?;
            let target = target.to_str().ok_or_else(|| ReleaseError::Pack {
                path: path.clone(),
                reason: "the symlink's target is not UTF-8".into(),
            })?;
            if target.is_empty() || target.chars().any(|c| c.is_control() || c == '\\') {
                return Err(ReleaseError::Pack {
                    path,
                    reason: "the symlink's target has a control character or a backslash".into(),
                });
            }
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, &rel, target)
                .map_err(ReleaseError::io(&path))?;
            files.push(FileEntry {
                path: rel,
                size: target.len() as u64,
                sha256: crate::artifact::manifest::sha256_hex(target.as_bytes()),
                mode: 0o777,
                link: Some(target.to_string()),
            });
        } else if kind.is_file() {
            let size = meta.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_size(size);
            let file = File::open(&path).map_err(ReleaseError::io(&path))?;
            let mut reader = HashingReader {
                inner: file.take(size),
                digest: Context::new(&SHA256),
                size: 0,
            };
            tar.append_data(&mut header, &rel, &mut reader)
                .map_err(ReleaseError::io(&path))?;
            // The header promised `size` bytes; a file that shrank while
            // being read would have left a corrupt archive behind.
            if reader.size != size {
                return Err(ReleaseError::Pack {
                    path,
                    reason: format!("changed while packing ({size} bytes, then {})", reader.size),
                });
            }
            files.push(FileEntry {
                path: rel,
                size,
                sha256: hex::encode(reader.digest.finish()),
                mode,
                link: None,
            });
        } else {
            return Err(ReleaseError::Pack {
                path,
                reason: "not a regular file, directory or symlink".into(),
            });
        }
    }
    Ok(())
}

/// Unpacks an archive made by [`pack`] into `dest` (created if missing),
/// with the archived permission bits. Check the archive first
/// ([`crate::artifact::verify`]): this only refuses entries that would land
/// outside `dest`.
pub fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    let file = File::open(archive).map_err(ReleaseError::io(archive))?;
    let decoder = zstd::Decoder::new(file).map_err(ReleaseError::io(archive))?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(false);
    tar.set_overwrite(false);
    fs::create_dir_all(dest).map_err(ReleaseError::io(dest))?;
    tar.unpack(dest).map_err(ReleaseError::io(archive))
}

struct HashingWriter<W> {
    inner: W,
    digest: Context,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    digest: Context,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn head(version: &str) -> ManifestHead {
        ManifestHead {
            app: "web".into(),
            version: version.into(),
            created_at: "2026-12-05T06:00:00Z".into(),
            built_by: "ci@build-1".into(),
        }
    }

    /// A small tree with what an app has: nested files, an executable, a
    /// symlink, an empty directory, a long path.
    pub(crate) fn sample_tree(root: &Path) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("static/css")).unwrap();
        fs::create_dir_all(root.join("var/empty")).unwrap();
        fs::write(root.join("bin/web"), "#!/bin/sh\necho v1\n").unwrap();
        fs::set_permissions(root.join("bin/web"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("static/css/site.css"), "body{}\n".repeat(100)).unwrap();
        fs::write(root.join("a-b"), "sorted before a/ by path").unwrap();
        fs::write(root.join("empty"), "").unwrap();
        std::os::unix::fs::symlink("bin/web", root.join("run")).unwrap();
        let long = format!("static/{}", "x".repeat(150));
        fs::write(root.join(long), "long name").unwrap();
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        sample_tree(&a);
        sample_tree(&b);
        // Different times and creation order must not show.
        fs::write(b.join("bin/web"), "#!/bin/sh\necho v1\n").unwrap();
        let ma = pack(&a, &tmp.path().join("a.tar.zst"), head("v1")).unwrap();
        let mb = pack(&b, &tmp.path().join("b.tar.zst"), head("v1")).unwrap();
        assert_eq!(ma, mb);
        assert_eq!(
            fs::read(tmp.path().join("a.tar.zst")).unwrap(),
            fs::read(tmp.path().join("b.tar.zst")).unwrap()
        );
        let paths: Vec<_> = ma.files.iter().map(|f| f.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths[0], "a-b");
        let run = ma.files.iter().find(|f| f.path == "run").unwrap();
        assert_eq!(run.link.as_deref(), Some("bin/web"));
        let web = ma.files.iter().find(|f| f.path == "bin/web").unwrap();
        assert_eq!(web.mode, 0o755);
        assert_eq!(
            web.sha256,
            crate::artifact::manifest::sha256_hex(b"#!/bin/sh\necho v1\n")
        );
        let bytes = fs::read(tmp.path().join("a.tar.zst")).unwrap();
        assert_eq!(ma.archive.size, bytes.len() as u64);
        assert_eq!(
            ma.archive.sha256,
            crate::artifact::manifest::sha256_hex(&bytes)
        );
    }

    #[test]
    fn a_changed_byte_changes_the_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        sample_tree(&a);
        let m1 = pack(&a, &tmp.path().join("1"), head("v1")).unwrap();
        fs::write(a.join("empty"), "x").unwrap();
        let m2 = pack(&a, &tmp.path().join("2"), head("v1")).unwrap();
        assert_ne!(m1.archive.sha256, m2.archive.sha256);
    }

    #[test]
    fn unpack_restores_files_modes_links_and_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        pack(&src, &tmp.path().join("x.tar.zst"), head("v1")).unwrap();
        let out = tmp.path().join("out");
        unpack(&tmp.path().join("x.tar.zst"), &out).unwrap();
        assert_eq!(
            fs::read(out.join("bin/web")).unwrap(),
            b"#!/bin/sh\necho v1\n"
        );
        let mode = fs::metadata(out.join("bin/web"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(out.join("run")).unwrap(),
            Path::new("bin/web")
        );
        assert!(out.join("var/empty").is_dir());
        assert!(out.join(format!("static/{}", "x".repeat(150))).is_file());
    }

    #[test]
    fn reserved_names_and_special_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        fs::create_dir(&a).unwrap();
        fs::write(a.join(INSTALLED_MANIFEST), "{}").unwrap();
        let err = pack(&a, &tmp.path().join("x"), head("v1")).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        fs::remove_file(a.join(INSTALLED_MANIFEST)).unwrap();
        std::os::unix::net::UnixListener::bind(a.join("sock")).unwrap();
        let err = pack(&a, &tmp.path().join("x"), head("v1")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = pack(&a, &tmp.path().join("x"), head("../v1")).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
    }
}
