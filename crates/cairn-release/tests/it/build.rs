use std::fs;
use std::process::Command;

use cairn_release::artifact::verify::{verify_and_unpack, verify_manifest};
use cairn_release::artifact::{BuildSpec, SigningKey, build, default_version};
use cairn_release::{ReleaseError, VerifyError};
use time::macros::datetime;

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@localhost",
            "-c",
            "init.defaultBranch=main",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_build_runs_in_a_copy_and_packs_its_output_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("lib/app.txt"), "source\n").unwrap();
    fs::create_dir_all(src.join(".git")).unwrap();
    fs::write(src.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let command = r#"
        set -e
        test ! -e .git
        mkdir -p dist/bin
        cp lib/app.txt dist/
        printf '%s %s %s\n' "$CAIRN_APP" "$CAIRN_VERSION" "$EXTRA" > dist/VERSION
        printf '#!/bin/sh\necho hi\n' > dist/bin/run && chmod 755 dist/bin/run
        echo built to stdout
        echo warned on stderr >&2
    "#;
    let mut spec = BuildSpec::new("web", "1.2.3", &src, command);
    spec.output = "dist".into();
    spec.env = vec![("EXTRA".into(), "x".into())];
    spec.created_at = datetime!(2026-12-05 06:30:00.123 +2);
    spec.built_by = "ci@runner".into();
    let key = SigningKey::generate().unwrap();
    let mut lines = Vec::new();
    let built = build(&spec, &key, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(lines, ["built to stdout", "warned on stderr"]);
    // The checkout is never written to.
    assert!(!src.join("dist").exists());

    let m = &built.manifest;
    assert_eq!((m.app.as_str(), m.version.as_str()), ("web", "1.2.3"));
    assert_eq!(m.created_at, "2026-12-05T04:30:00Z");
    assert_eq!(m.built_by, "ci@runner");
    let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["VERSION", "app.txt", "bin/run"]);
    assert_eq!(m.files[2].mode, 0o755);
    assert_eq!(built.manifest_bytes, m.canonical_bytes());
    assert_eq!(built.digest(), m.digest());

    let out = tmp.path().join("out");
    let got = verify_and_unpack(
        &built.manifest_bytes,
        &built.signature,
        &key.public(),
        &built.archive,
        &out,
    )
    .unwrap();
    assert_eq!(&got, m);
    assert_eq!(
        fs::read_to_string(out.join("VERSION")).unwrap(),
        "web 1.2.3 x\n"
    );

    let other = SigningKey::generate().unwrap();
    let err =
        verify_manifest(&built.manifest_bytes, &built.signature, &other.public()).unwrap_err();
    assert!(
        matches!(err, ReleaseError::Verify(VerifyError::BadSignature { .. })),
        "{err}"
    );

    // The temporary build directory goes with the value.
    let dir = built.archive.parent().unwrap().to_path_buf();
    assert!(dir.exists());
    drop(built);
    assert!(!dir.exists());
}

#[test]
fn a_failed_build_says_its_exit_code_and_last_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let command =
        "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); done; echo oops >&2; exit 3";
    let spec = BuildSpec::new("web", "v1", tmp.path(), command);
    let key = SigningKey::generate().unwrap();
    let mut seen = 0;
    let err = build(&spec, &key, &mut |_| seen += 1).unwrap_err();
    assert_eq!(seen, 31);
    match &err {
        ReleaseError::BuildFailed {
            exit_code,
            last_lines,
            ..
        } => {
            assert_eq!(*exit_code, Some(3));
            assert_eq!(last_lines.len(), 20);
            assert_eq!(last_lines.first().unwrap(), "line 11");
            assert_eq!(last_lines.last().unwrap(), "oops");
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("exit code 3") && text.ends_with("line 29\noops"),
        "{text}"
    );
}

#[test]
fn a_missing_output_directory_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = BuildSpec::new("web", "v1", tmp.path(), "true");
    spec.output = "dist".into();
    let err = build(&spec, &SigningKey::generate().unwrap(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ReleaseError::BuildOutput { .. }), "{err}");
    let mut spec = BuildSpec::new("web", "v1", tmp.path(), "ln -s / escape");
    spec.output = "escape".into();
    let err = build(&spec, &SigningKey::generate().unwrap(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ReleaseError::BuildOutput { .. }), "{err}");
}

#[test]
fn the_default_version_is_the_commit_of_a_clean_tree_else_the_time() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let now = datetime!(2026-12-05 06:07:08 UTC);
    git(repo, &["init", "-q"]);
    fs::create_dir(repo.join("app")).unwrap();
    fs::write(repo.join("app/main.sh"), "echo hi\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "first"]);
    let head = git(repo, &["rev-parse", "--short=12", "HEAD"]);
    assert_eq!(head.len(), 12);
    assert_eq!(default_version(repo, now), head);
    assert_eq!(default_version(&repo.join("app"), now), head);
    fs::write(repo.join("app/new.sh"), "untracked\n").unwrap();
    assert_eq!(default_version(&repo.join("app"), now), "20261205.060708");
    assert_eq!(default_version(repo, now), "20261205.060708");
}
