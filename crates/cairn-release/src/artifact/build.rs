//! Build once: copy the sources into a fresh directory (so nothing of the
//! developer's checkout but its files leaks in and the checkout is never
//! written to), run the app's build command there, pack its output, sign
//! the manifest. The command's output goes to the caller line by line; the
//! last lines are kept for the error when the build fails.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::artifact::manifest::Manifest;
use crate::artifact::pack::{ManifestHead, pack};
use crate::artifact::sign::{Signature, SigningKey};
use crate::error::{ReleaseError, Result};

/// How many lines of a failed build's output its error carries.
const LAST_LINES: usize = 20;

#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub app: String,
    pub version: String,
    pub source_dir: PathBuf,
    /// Run with `sh -c` in the copy of `source_dir`.
    pub command: String,
    /// The directory to pack, relative to the build directory (`.`: all of it).
    pub output: String,
    /// Set for the command on top of the inherited environment (after
    /// `CAIRN_APP` and `CAIRN_VERSION`, so they may be overridden).
    pub env: Vec<(String, String)>,
    /// The manifest's `created_at`.
    pub created_at: OffsetDateTime,
    /// The manifest's `built_by` (`user@host`).
    pub built_by: String,
    /// Where the temporary build directory is made (the system's temporary
    /// directory when unset); a large app wants a disk with room.
    pub work_dir: Option<PathBuf>,
}

impl BuildSpec {
    /// A spec with `output: "."`, no extra environment, now, and this
    /// machine's user and host name.
    pub fn new(
        app: impl Into<String>,
        version: impl Into<String>,
        source_dir: impl Into<PathBuf>,
        command: impl Into<String>,
    ) -> BuildSpec {
        BuildSpec {
            app: app.into(),
            version: version.into(),
            source_dir: source_dir.into(),
            command: command.into(),
            output: ".".into(),
            env: Vec::new(),
            created_at: OffsetDateTime::now_utc(),
            built_by: built_by_here(),
            work_dir: None,
        }
    }
}

/// A built, signed artifact, ready for [`crate::artifact::ArtifactStore::put`].
/// The archive lives in a temporary directory removed on drop.
#[derive(Debug)]
pub struct Built {
    pub manifest: Manifest,
    /// The canonical bytes, which the signature is over.
    pub manifest_bytes: Vec<u8>,
    pub signature: Signature,
    pub archive: PathBuf,
    _dir: tempfile::TempDir,
}

impl Built {
    /// sha256 of the manifest bytes: the artifact's identity.
    pub fn digest(&self) -> String {
        self.manifest.digest()
    }
}

/// Copies, builds, packs and signs; `on_line` gets each line the command
/// writes (stdout and stderr merged, in order). A command that leaves a
/// background process holding its output open keeps this waiting, as a
/// terminal would.
pub fn build(spec: &BuildSpec, key: &SigningKey, on_line: &mut dyn FnMut(&str)) -> Result<Built> {
    crate::artifact::name::check_name("app", &spec.app)?;
    crate::artifact::name::check_name("version", &spec.version)?;
    check_output(spec)?;
    let dir = match &spec.work_dir {
        Some(w) => tempfile::Builder::new()
            .prefix("cairn-build-")
            .tempdir_in(w),
        None => tempfile::Builder::new().prefix("cairn-build-").tempdir(),
    }
    .map_err(ReleaseError::io(
        spec.work_dir.clone().unwrap_or_else(std::env::temp_dir),
    ))?;
    let tree = dir.path().join("tree");
    copy_tree(&spec.source_dir, &tree)?;
    tracing::info!(app = %spec.app, version = %spec.version, dir = %tree.display(), "building");
    run(spec, &tree, on_line)?;

    let output = tree.join(&spec.output);
    let inside = fs::canonicalize(&output)
        .ok()
        .filter(|o| o.is_dir())
        .zip(fs::canonicalize(&tree).ok())
        .is_some_and(|(o, t)| o.starts_with(t));
    if !inside {
        return Err(ReleaseError::BuildOutput {
            app: spec.app.clone(),
            output: spec.output.clone(),
        });
    }
    let archive = dir.path().join("artifact.tar.zst");
    let created_at = spec
        .created_at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&Rfc3339)
        .expect("a UTC time formats as RFC 3339");
    let manifest = pack(
        &output,
        &archive,
        ManifestHead {
            app: spec.app.clone(),
            version: spec.version.clone(),
            created_at,
            built_by: spec.built_by.clone(),
        },
    )?;
    let manifest_bytes = manifest.canonical_bytes();
    let signature = key.sign(&manifest_bytes);
    tracing::info!(
        app = %spec.app,
        version = %spec.version,
        digest = %manifest.digest(),
        bytes = manifest.archive.size,
        "built"
    );
    Ok(Built {
        manifest,
        manifest_bytes,
        signature,
        archive,
        _dir: dir,
    })
}

fn check_output(spec: &BuildSpec) -> Result<()> {
    let ok = Path::new(&spec.output)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok && !spec.output.is_empty() {
        Ok(())
    } else {
        Err(ReleaseError::BuildOutput {
            app: spec.app.clone(),
            output: spec.output.clone(),
        })
    }
}

fn run(spec: &BuildSpec, dir: &Path, on_line: &mut dyn FnMut(&str)) -> Result<()> {
    let spawn_err = |source| ReleaseError::BuildSpawn {
        app: spec.app.clone(),
        dir: dir.to_path_buf(),
        source,
    };
    // One pipe for both streams keeps their lines in the order written.
    let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(dir)
        .env("CAIRN_APP", &spec.app)
        .env("CAIRN_VERSION", &spec.version)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(spawn_err)?)
        .stderr(writer);
    let mut child = command.spawn().map_err(spawn_err)?;
    // Our copies of the pipe's write end must close, or the read below
    // never sees the end of the output.
    drop(command);
    let mut last = VecDeque::with_capacity(LAST_LINES);
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                on_line(text);
                if last.len() == LAST_LINES {
                    last.pop_front();
                }
                last.push_back(text.to_string());
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the build's output");
                break;
            }
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    let status_text = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    Err(ReleaseError::BuildFailed {
        app: spec.app.clone(),
        version: spec.version.clone(),
        status: status_text,
        exit_code: status.code(),
        last_lines: last.into(),
    })
}

/// Copies files, directories and symlinks (as symlinks) with their
/// permission bits, leaving out `.git` wherever it is (a submodule has a
/// `.git` file). Sockets and FIFOs are left out with a warning.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::metadata(from).map_err(ReleaseError::io(from))?;
    if !meta.is_dir() {
        return Err(ReleaseError::Pack {
            path: from.to_path_buf(),
            reason: "the source directory is not a directory".into(),
        });
    }
    fs::create_dir(to).map_err(ReleaseError::io(to))?;
    fs::set_permissions(to, meta.permissions()).map_err(ReleaseError::io(to))?;
    for entry in fs::read_dir(from).map_err(ReleaseError::io(from))? {
        let entry = entry.map_err(ReleaseError::io(from))?;
        if entry.file_name() == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(ReleaseError::io(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(ReleaseError::io(&src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(ReleaseError::io(&dst))?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(ReleaseError::io(&src))?;
        } else {
            tracing::warn!(path = %src.display(), "not copied into the build: not a file, directory or symlink");
        }
    }
    Ok(())
}

/// `git rev-parse --short=12 HEAD` when `source_dir` is in a git work tree
/// with nothing changed or untracked under it (the commit then names the
/// sources exactly); otherwise `now` as `YYYYMMDD.HHMMSS` UTC.
pub fn default_version(source_dir: &Path, now: OffsetDateTime) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(source_dir)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let clean = git(&["rev-parse", "--is-inside-work-tree"]).as_deref() == Some("true")
        && git(&["status", "--porcelain", "--", "."]).is_some_and(|s| s.is_empty());
    if clean && let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        return commit;
    }
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}.{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// `user@host` of this process: `$USER` (or `$LOGNAME`), the kernel's host name.
pub fn built_by_here() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".into()
    } else {
        host
    };
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn outside_a_git_tree_the_version_is_the_time() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            default_version(tmp.path(), datetime!(2026-12-05 06:07:08 UTC)),
            "20261205.060708"
        );
        assert_eq!(
            default_version(tmp.path(), datetime!(2026-12-05 07:07:08 +1)),
            "20261205.060708"
        );
    }

    #[test]
    fn outputs_outside_the_build_directory_are_refused() {
        for bad in ["../x", "/abs", "a/../../b", ""] {
            let mut spec = BuildSpec::new("web", "v1", "/nonexistent", "true");
            spec.output = bad.into();
            assert!(check_output(&spec).is_err(), "{bad}");
        }
        for good in [".", "dist", "./dist/web"] {
            let mut spec = BuildSpec::new("web", "v1", "/nonexistent", "true");
            spec.output = good.into();
            check_output(&spec).unwrap();
        }
    }

    #[test]
    fn built_by_is_user_at_host() {
        let who = built_by_here();
        let (user, host) = who.split_once('@').unwrap();
        assert!(!user.is_empty() && !host.is_empty(), "{who}");
    }
}
