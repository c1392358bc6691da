use super::*;
use crate::module::testkit::{Scratch, args, assert_sh, check, local, sh};

fn git(pairs: &[(&str, &str)]) -> Git {
    Git::new(&args(pairs)).unwrap()
}

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";

#[test]
fn resolves_refs_from_ls_remote() {
    let r = Git::parse(&format!(
        "head={A}\n--cairn-remote--\nref: refs/heads/main\tHEAD\n{B}\tHEAD\n{B}\trefs/heads/main\n{A}\trefs/tags/v1\n{B}\trefs/tags/v1^{{}}\n"
    ));
    assert_eq!(r.head.as_deref(), Some(A));
    let head = git(&[("repo", "r"), ("dest", "/d")]).want(&r).unwrap();
    assert_eq!(
        head,
        Want {
            commit: B.into(),
            branch: Some("main".into())
        }
    );
    let main = git(&[("repo", "r"), ("dest", "/d"), ("rev", "main")]);
    assert_eq!(main.want(&r).unwrap().branch.as_deref(), Some("main"));
    assert_eq!(
        main.plan(&r, &main.want(&r).unwrap()).unwrap(),
        Step::Update
    );
    let tag = git(&[("repo", "r"), ("dest", "/d"), ("version", "v1")])
        .want(&r)
        .unwrap();
    assert_eq!(
        tag,
        Want {
            commit: B.into(),
            branch: None
        },
        "the peeled commit"
    );
    let sha = git(&[("repo", "r"), ("dest", "/d"), ("rev", "1111111")]);
    let w = sha.want(&r).unwrap();
    assert_eq!(sha.plan(&r, &w).unwrap(), Step::Nothing);
    assert!(
        git(&[("repo", "r"), ("dest", "/d"), ("rev", "nope")])
            .want(&r)
            .is_err()
    );
    let empty = Reading {
        occupied: true,
        ..Reading::default()
    };
    assert!(
        main.plan(&empty, &w)
            .unwrap_err()
            .contains("not a git checkout")
    );
    assert_eq!(main.plan(&Reading::default(), &w).unwrap(), Step::Clone);
    for step in [Step::Clone, Step::Update] {
        assert_sh(&main.apply_script(step, &head));
        assert_sh(&main.apply_script(step, &tag));
    }
    assert_sh(&main.probe_script());
    assert_sh(&sha.probe_script());
    assert!(
        Git::new(&args(&[
            ("repo", "r"),
            ("dest", "/d"),
            ("rev", "--upload-pack=x")
        ]))
        .is_err()
    );
}

/// A bare repository with one commit on `main`, and a work tree to push
/// more from.
fn repo(d: &Scratch) -> (String, std::path::PathBuf) {
    let bare = d.s("origin.git");
    sh(
        d.root(),
        "git init -q --bare -b main origin.git && git init -q -b main work",
    );
    let work = d.path("work");
    sh(
        &work,
        "echo one > f && git add f && git commit -qm one && git remote add origin ../origin.git && git push -q origin main",
    );
    (bare, work)
}

async fn run(a: &[(&str, &str)], ctx: &RunContext) -> Result<Outcome, ModuleError> {
    git(a).run(&local(), ctx).await
}

#[tokio::test]
async fn clones_then_follows_the_branch() {
    let d = Scratch::new();
    let (bare, work) = repo(&d);
    let dest = d.s("checkout");
    let a = [("repo", bare.as_str()), ("dest", dest.as_str())];
    let first_commit = sh(&work, "git rev-parse HEAD");

    let dry = run(&a, &check()).await.unwrap();
    assert!(dry.changed);
    assert!(!d.path("checkout").exists(), "check clones nothing");

    let o = run(&a, &RunContext::default()).await.unwrap();
    assert!(o.changed, "{o:?}");
    assert_eq!(o.data["before"], serde_json::Value::Null);
    assert_eq!(o.data["after"], first_commit.as_str());
    assert_eq!(
        std::fs::read_to_string(d.path("checkout/f")).unwrap(),
        "one\n"
    );

    let again = run(&a, &RunContext::default()).await.unwrap();
    assert!(!again.changed, "{again:?}");

    sh(
        &work,
        "echo two > f && git commit -qam two && git tag -a v2 -m v2 && git push -q --tags origin main",
    );
    let second = sh(&work, "git rev-parse HEAD");
    let o = run(&a, &RunContext::default()).await.unwrap();
    assert!(o.changed);
    assert_eq!(o.data["before"], first_commit.as_str());
    assert_eq!(o.data["after"], second.as_str());
    assert_eq!(o.diff[0].what, format!("{dest}:commit"));
    assert_eq!(
        std::fs::read_to_string(d.path("checkout/f")).unwrap(),
        "two\n"
    );
    assert_eq!(
        sh(&d.path("checkout"), "git rev-parse --abbrev-ref HEAD"),
        "main"
    );

    // Back to the first commit by its short sha, then to the annotated tag.
    let short = &first_commit[..10];
    let at = [
        ("repo", bare.as_str()),
        ("dest", dest.as_str()),
        ("rev", short),
    ];
    let o = run(&at, &RunContext::default()).await.unwrap();
    assert!(o.changed);
    assert_eq!(o.data["after"], first_commit.as_str());
    assert!(!run(&at, &RunContext::default()).await.unwrap().changed);
    let tag = [
        ("repo", bare.as_str()),
        ("dest", dest.as_str()),
        ("rev", "v2"),
    ];
    let o = run(&tag, &RunContext::default()).await.unwrap();
    assert_eq!(o.data["after"], second.as_str());
}

#[tokio::test]
async fn refuses_local_changes_and_foreign_directories() {
    let d = Scratch::new();
    let (bare, work) = repo(&d);
    let dest = d.s("checkout");
    let a = [
        ("repo", bare.as_str()),
        ("dest", dest.as_str()),
        ("rev", "main"),
    ];
    run(&a, &RunContext::default()).await.unwrap();
    std::fs::write(d.path("checkout/f"), "edited\n").unwrap();
    sh(
        &work,
        "echo two > f && git commit -qam two && git push -q origin main",
    );
    let err = run(&a, &RunContext::default()).await.unwrap_err();
    assert!(err.to_string().contains("local changes"), "{err}");

    std::fs::create_dir(d.path("other")).unwrap();
    std::fs::write(d.path("other/x"), "x").unwrap();
    let err = run(
        &[("repo", bare.as_str()), ("dest", &d.s("other"))],
        &RunContext::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a git checkout"), "{err}");
    let err = run(
        &[("repo", &d.s("missing.git")), ("dest", &d.s("c2"))],
        &RunContext::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ModuleError::Failed { .. }), "{err}");
}
