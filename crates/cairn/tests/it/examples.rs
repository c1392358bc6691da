//! Every example validates in every environment it ships, and gets the same
//! verdict on the other target.

use std::path::{Path, PathBuf};

use crate::{cairn, cairn_env, repo_root};

#[test]
fn every_example_validates_in_every_environment() {
    let examples = repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        let dir_s = dir.to_str().unwrap().to_string();
        let mut envs: Vec<String> = std::fs::read_dir(dir.join("env"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some(e.path().file_stem()?.to_str()?.to_string()))
            .collect();
        envs.sort();
        if envs.is_empty() {
            envs.push("dev".into());
        }
        for env in envs {
            // Secrets that a real deployment takes from the environment.
            let vars = [("CAIRN_PARAM_API_TOKEN", "token-from-the-environment")];
            let out = cairn_env(&["validate", &dir_s, "-e", &env, "-o", "json"], &vars);
            assert_eq!(out.code, 0, "{dir_s} -e {env}:\n{}", out.stderr);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example environments found");
}

/// The same template passes or fails validation the same way on both
/// targets: every example environment, with its target swapped, and every
/// error fixture, on an aws environment beside its local one. The
/// exceptions are the documented target differences: a target-specific
/// type (`aws.iam_role`) is refused by the other target.
#[test]
fn every_example_and_error_fixture_gets_the_same_verdict_on_both_targets() {
    let vars = [("CAIRN_PARAM_API_TOKEN", "token-from-the-environment")];
    let mut compared = 0;
    for dir in subdirs(&repo_root().join("examples")) {
        for env_file in files(&dir.join("env")) {
            let env = env_file.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&env_file).unwrap();
            let copy = copy_dir(&dir);
            std::fs::write(copy.path().join("env/swapped.yaml"), swap_target(&text)).unwrap();
            let path = copy.path().to_str().unwrap();
            let own = cairn_env(&["validate", path, "-e", &env, "-o", "json"], &vars);
            let swapped = cairn_env(&["validate", path, "-e", "swapped", "-o", "json"], &vars);
            assert_eq!(own.code, 0, "{} -e {env}:\n{}", dir.display(), own.stderr);
            if uses_target_specific_types(&dir) {
                assert_eq!(swapped.code, 2, "{}: {}", dir.display(), swapped.stderr);
                assert!(swapped.stderr.contains("cairn::target_mismatch"));
            } else {
                assert_eq!(
                    swapped.code,
                    0,
                    "{} -e {env} on the other target:\n{}",
                    dir.display(),
                    swapped.stderr
                );
            }
            compared += 1;
        }
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors");
    for dir in subdirs(&fixtures) {
        let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
        // Fixtures about choosing an environment say which one themselves.
        if args.split_whitespace().any(|a| a == "-e" || a == "--env") {
            continue;
        }
        let copy = copy_dir(&dir);
        std::fs::create_dir_all(copy.path().join("env")).unwrap();
        std::fs::write(
            copy.path().join("env/aws.yaml"),
            "target: aws\nregion: us-east-1\n",
        )
        .unwrap();
        let path = copy.path().to_str().unwrap();
        let run = |env: &[&str]| {
            let mut a = vec!["validate", path];
            a.extend(args.split_whitespace());
            a.extend(env);
            cairn(&a)
        };
        let local = run(&[]);
        let aws = run(&["-e", "aws"]);
        let name = dir.file_name().unwrap().to_str().unwrap();
        if uses_target_specific_types(&dir) {
            assert_eq!((local.code, aws.code), (2, 0), "{name}: {}", local.stderr);
        } else {
            assert_eq!(local.code, 2, "{name}: {}", local.stderr);
            assert_eq!(
                first_lines(&local.stderr),
                first_lines(&aws.stderr),
                "{name}: the targets disagree"
            );
        }
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} comparisons");
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// A copy in a temporary directory, so that an added environment file
/// never lands in the repository.
fn copy_dir(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-r", &format!("{}/.", src.display())])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(tmp.path().join("env")).unwrap();
    tmp
}

/// The environment file for the other target: same parameters and tags.
fn swap_target(env_file: &str) -> String {
    let mut out = String::new();
    for line in env_file.lines() {
        match line.trim_end() {
            "target: aws" => out.push_str("target: local\n"),
            "target: local" => out.push_str("target: aws\nregion: us-east-1\n"),
            l if l.starts_with("region:") => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn uses_target_specific_types(dir: &Path) -> bool {
    files(dir)
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("type: aws.")))
}

/// The error's code and message, without the paths of the copies.
fn first_lines(stderr: &str) -> String {
    stderr.lines().take(3).collect::<Vec<_>>().join("\n")
}
