//! The host script for real: `sh` on this machine (dash on Debian), a
//! temporary install path, the archive on stdin.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn_release::artifact::host_script::{InstallExit, install_command, install_script};
use cairn_release::artifact::{Manifest, SigningKey};

use crate::support::{Artifact, artifact, artifact_of};

struct Run {
    exit: InstallExit,
    stdout: String,
    stderr: String,
}

/// Runs `sh -c SCRIPT` with `stdin` fed from a thread (the script may stop
/// reading early, e.g. on a missing tool) and `PATH` replaced when given.
fn run(command: &str, stdin: Vec<u8>, path: Option<&Path>) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let code = out.status.code().expect("exited");
    Run {
        exit: InstallExit::from_code(code).unwrap_or_else(|| {
            panic!(
                "exit code {code}, stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The script that installs `a`, signed with `key`, at `install`.
fn script_for(install: &Path, a: &Artifact, key: &SigningKey) -> String {
    install_script(
        install.to_str().unwrap(),
        &a.manifest.version,
        &a.bytes,
        &a.signature,
        &key.public(),
    )
    .unwrap()
}

fn install(install: &Path, a: &Artifact, key: &SigningKey, archive: Vec<u8>) -> Run {
    run(&script_for(install, a, key), archive, None)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = match fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// A refused install leaves no release and no staging directory.
fn assert_untouched(install: &Path) {
    assert_eq!(entries(&install.join("releases")), Vec::<String>::new());
    assert_eq!(entries(&install.join(".incoming")), Vec::<String>::new());
}

fn assert_one_line(stderr: &str, expect: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("cairn-install: ") && stderr.contains(expect),
        "{stderr}"
    );
}

/// A temporary directory, a fresh key, and in the directory "web" v1 of
/// the "one" tree, signed with that key.
fn web_v1() -> (tempfile::TempDir, SigningKey, Artifact) {
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let a = artifact(tmp.path(), "web", "v1", "one", &key);
    (tmp, key, a)
}

/// The install was refused with `exit` and one line naming `expect`, and
/// left nothing under `target`.
#[track_caller]
fn assert_refused(r: &Run, exit: InstallExit, expect: &str, target: &Path) {
    assert_eq!(r.exit, exit, "{}", r.stderr);
    assert_one_line(&r.stderr, expect);
    assert_untouched(target);
}

#[test]
fn a_good_artifact_is_installed_and_a_second_install_is_a_no_op() {
    let (tmp, key, a) = web_v1();
    let target = tmp.path().join("srv/web");
    let archive = fs::read(&a.archive).unwrap();

    let r = install(&target, &a, &key, archive.clone());
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);
    let release = target.join("releases/v1");
    assert_eq!(r.stdout, format!("installed {}\n", release.display()));
    assert_eq!(r.stderr, "");
    assert_eq!(
        fs::read_to_string(release.join("public/index.html")).unwrap(),
        "<h1>one</h1>\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(release.join("bin/serve"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        fs::read_link(release.join("start")).unwrap(),
        Path::new("bin/serve")
    );
    assert_eq!(
        fs::read(release.join(".cairn-manifest.json")).unwrap(),
        a.bytes
    );
    assert_eq!(entries(&target.join(".incoming")), Vec::<String>::new());
    // What the host has is what was signed, file by file.
    fs::remove_file(release.join(".cairn-manifest.json")).unwrap();
    cairn_release::artifact::verify::verify_tree(&a.manifest, &release).unwrap();
    fs::write(release.join(".cairn-manifest.json"), &a.bytes).unwrap();

    // What an install killed with SIGKILL leaves: its staging directory,
    // named after a pid that is gone. The next install removes it.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = target.join(format!(".incoming/v0.9.{pid}"));
    fs::create_dir_all(stale.join("tree")).unwrap();
    fs::write(stale.join("artifact.tar.zst"), "half").unwrap();

    let r = install(&target, &a, &key, archive);
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);
    assert_eq!(r.stdout, format!("unchanged {}\n", release.display()));
    assert_eq!(entries(&target.join("releases")), ["v1"]);
    assert_eq!(entries(&target.join(".incoming")), Vec::<String>::new());
}

#[test]
fn a_tampered_archive_byte_is_refused_before_anything_is_unpacked() {
    let (tmp, key, a) = web_v1();
    let target = tmp.path().join("srv");
    let mut archive = fs::read(&a.archive).unwrap();
    let at = archive.len() / 2;
    archive[at] ^= 0x01;
    let r = install(&target, &a, &key, archive.clone());
    assert_refused(
        &r,
        InstallExit::ChecksumMismatch,
        &format!("the manifest says {}", a.manifest.archive.sha256),
        &target,
    );

    archive[at] ^= 0x01;
    archive.truncate(archive.len() - 1);
    let r = install(&target, &a, &key, archive);
    assert_refused(
        &r,
        InstallExit::ChecksumMismatch,
        "bytes, the manifest says",
        &target,
    );
}

#[test]
fn a_tampered_manifest_or_another_key_fails_the_signature() {
    let (tmp, key, a) = web_v1();
    let target = tmp.path().join("srv");
    let archive = fs::read(&a.archive).unwrap();

    // Someone with write access to the store edits a file's checksum in the
    // manifest (still a valid manifest), keeping the old signature.
    let mut m = a.manifest.clone();
    m.files[0].sha256 = "0".repeat(64);
    let tampered = Artifact {
        bytes: m.canonical_bytes(),
        manifest: m,
        signature: a.signature,
        archive: a.archive.clone(),
    };
    let r = install(&target, &tampered, &key, archive.clone());
    assert_refused(
        &r,
        InstallExit::BadSignature,
        &format!("with the public key {}", key.public()),
        &target,
    );

    let other = SigningKey::generate().unwrap();
    let r = install(&target, &a, &other, archive);
    assert_refused(&r, InstallExit::BadSignature, "bad signature", &target);
}

#[test]
fn a_file_unlike_its_signed_checksum_is_named() {
    // A manifest signed with the right key that does not match its archive's
    // files (a packer bug, or a key that signed the wrong thing): the
    // per-file check after unpacking catches it.
    let (tmp, key, a) = web_v1();
    let mut m = a.manifest.clone();
    let i = m
        .files
        .iter()
        .position(|f| f.path == "public/index.html")
        .unwrap();
    m.files[i].sha256 = "ab".repeat(32);
    let bytes = m.canonical_bytes();
    let bad = Artifact {
        signature: key.sign(&bytes),
        bytes,
        manifest: m,
        archive: a.archive.clone(),
    };
    let target = tmp.path().join("srv");
    let r = install(&target, &bad, &key, fs::read(&a.archive).unwrap());
    assert_refused(
        &r,
        InstallExit::ChecksumMismatch,
        &format!(
            "file public/index.html has sha256 {}, the manifest says {}",
            a.manifest.files[i].sha256,
            "ab".repeat(32)
        ),
        &target,
    );
}

#[test]
fn a_version_that_exists_with_other_content_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let one = artifact(tmp.path(), "web", "v1", "one", &key);
    let other = artifact(tmp.path(), "web", "v1", "other", &key);
    let target = tmp.path().join("srv");
    let r = install(&target, &one, &key, fs::read(&one.archive).unwrap());
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);

    let r = install(&target, &other, &key, fs::read(&other.archive).unwrap());
    assert_eq!(r.exit, InstallExit::VersionExists, "{}", r.stderr);
    assert_one_line(
        &r.stderr,
        &format!("this artifact's {}", other.manifest.digest()),
    );
    let release = target.join("releases/v1");
    assert_eq!(
        fs::read_to_string(release.join("public/index.html")).unwrap(),
        "<h1>one</h1>\n"
    );
    assert_eq!(entries(&target.join(".incoming")), Vec::<String>::new());

    // The same artifact again, over a release someone edited: refused too.
    fs::write(release.join("public/index.html"), "<h1>edited</h1>\n").unwrap();
    let r = install(&target, &one, &key, fs::read(&one.archive).unwrap());
    assert_eq!(r.exit, InstallExit::VersionExists, "{}", r.stderr);
    assert_one_line(
        &r.stderr,
        "changed after its install: file public/index.html",
    );
}

#[test]
fn a_missing_tool_is_named_with_its_package() {
    let (tmp, key, a) = web_v1();
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    // Every tool the script uses but zstd.
    for tool in [
        "openssl",
        "tar",
        "sha256sum",
        "base64",
        "mktemp",
        "readlink",
        "head",
        "tail",
        "wc",
        "cat",
        "mv",
        "cp",
        "rm",
        "mkdir",
        "sync",
        "sed",
        "awk",
    ] {
        let found = which(tool).unwrap_or_else(|| panic!("{tool} on this machine"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let target = tmp.path().join("srv");
    let script = script_for(&target, &a, &key);
    let r = run(&script, fs::read(&a.archive).unwrap(), Some(&bin));
    assert_eq!(r.exit, InstallExit::MissingTool, "{}", r.stderr);
    assert_one_line(
        &r.stderr,
        "missing tool: zstd (install the Debian package zstd)",
    );
    assert!(!target.exists());
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

#[test]
fn a_full_disk_is_reported_as_such_and_leaves_no_release() {
    // A 256 KiB tmpfs as the install path, in a private mount namespace
    // (needs root, as the project's tests run; see scripts/install-deps).
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let tree = tmp.path().join("big");
    fs::create_dir_all(&tree).unwrap();
    // Incompressible: bytes of a hash chain.
    let mut data = Vec::with_capacity(600 * 1024);
    let mut block = [7u8; 32];
    while data.len() < 600 * 1024 {
        block = ring::digest::digest(&ring::digest::SHA256, &block)
            .as_ref()
            .try_into()
            .unwrap();
        data.extend_from_slice(&block);
    }
    fs::write(tree.join("blob"), &data).unwrap();
    let a = artifact_of(tmp.path(), &tree, "web", "v1", &key);
    let target = tmp.path().join("small");
    fs::create_dir(&target).unwrap();
    let script = script_for(&target, &a, &key);
    let script_file = tmp.path().join("install.sh");
    fs::write(&script_file, &script).unwrap();
    let wrapper = format!(
        "mount -t tmpfs -o size=256k tmpfs '{}' || exit 99; sh '{}'; rc=$?; ls -A '{}/releases' '{}/.incoming' >&2; exit $rc",
        target.display(),
        script_file.display(),
        target.display(),
        target.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &wrapper]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs");
    let mut input = child.stdin.take().unwrap();
    let archive = fs::read(&a.archive).unwrap();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&archive);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(99),
        "mounting a tmpfs needs root: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(InstallExit::NoSpace.code()),
        "{stderr}"
    );
    let mut lines = stderr.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("cairn-install: no space left on device under"),
        "{stderr}"
    );
    // `ls -A` of both directories: only their headers, no entries.
    let rest: Vec<_> = lines
        .filter(|l| !l.is_empty() && !l.ends_with(':'))
        .collect();
    assert!(rest.is_empty(), "left behind: {stderr}");
}

#[test]
fn a_script_beyond_one_argument_s_limit_goes_ahead_of_the_archive_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let tree = tmp.path().join("many");
    for d in 0..30 {
        let dir = tree.join(format!("dir{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("file-{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    let a = artifact_of(tmp.path(), &tree, "web", "v7", &key);
    let target = tmp.path().join("srv");
    let script = script_for(&target, &a, &key);
    assert!(script.len() > 128 * 1024, "{} bytes", script.len());
    let mut stdin = script.clone().into_bytes();
    stdin.extend(fs::read(&a.archive).unwrap());
    let r = run(&install_command(script.len()), stdin, None);
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(target.join("releases/v7/dir29/file-099.txt")).unwrap(),
        "29 99\n"
    );
    let m = Manifest::from_bytes(&a.bytes).unwrap();
    assert_eq!(m.files.len(), 3000);
}

#[test]
fn awkward_names_long_paths_and_empty_artifacts_install() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let tree = tmp.path().join("awkward");
    let long_dir = tree.join("d".repeat(90));
    fs::create_dir_all(&long_dir).unwrap();
    fs::create_dir_all(tree.join("var/empty")).unwrap();
    let long_file = format!("{}/{}.txt", "d".repeat(90), "f".repeat(120));
    fs::write(tree.join(&long_file), "long\n").unwrap();
    fs::write(tree.join("it's a file $HOME `x`.txt"), "quoted\n").unwrap();
    std::os::unix::fs::symlink("it's a file $HOME `x`.txt", tree.join("link 'q'")).unwrap();
    let a = artifact_of(tmp.path(), &tree, "web", "v1", &key);
    let target = tmp.path().join("srv it's");
    let r = install(&target, &a, &key, fs::read(&a.archive).unwrap());
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);
    let release = target.join("releases/v1");
    assert_eq!(
        fs::read_to_string(release.join(&long_file)).unwrap(),
        "long\n"
    );
    assert_eq!(
        fs::read_to_string(release.join("link 'q'")).unwrap(),
        "quoted\n"
    );
    assert!(release.join("var/empty").is_dir());
    // Run again: the no-op path checks the same names.
    let r = install(&target, &a, &key, fs::read(&a.archive).unwrap());
    assert_eq!(
        r.stdout,
        format!("unchanged {}\n", release.display()),
        "{}",
        r.stderr
    );

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = artifact_of(tmp.path(), &empty, "web", "v2", &key);
    assert!(e.manifest.files.is_empty());
    let r = install(&target, &e, &key, fs::read(&e.archive).unwrap());
    assert_eq!(r.exit, InstallExit::Ok, "{}", r.stderr);
    assert_eq!(
        entries(&target.join("releases/v2")),
        [".cairn-manifest.json"]
    );
}
