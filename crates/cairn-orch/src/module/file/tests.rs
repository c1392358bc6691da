use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::module::testkit::{Scratch, args, assert_sh, check, local, run};

fn file(pairs: &[(&str, &str)]) -> File {
    File::new(&args(pairs)).unwrap()
}

fn text_reading(content: &str, mode: u32) -> Reading {
    Reading {
        kind: Kind::File,
        mode: Some(mode),
        owner: Some("root".into()),
        group: Some("root".into()),
        size: Some(content.len() as u64),
        sha256: Some(sha256_hex(content.as_bytes())),
        content: Some(content.as_bytes().to_vec()),
        ..Reading::absent()
    }
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn no_temp_left(d: &Scratch) {
    let left: Vec<_> = std::fs::read_dir(d.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cairn-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn plan_writes_new_content_with_a_text_diff() {
    let f = file(&[
        ("path", "/etc/motd"),
        ("content", "hello\nworld\n"),
        ("mode", "0644"),
    ]);
    let p = f.plan(&text_reading("hello\n", 0o600)).unwrap();
    assert_eq!(p.steps, vec![Step::Write]);
    assert_eq!(p.diff[0].before.as_deref(), Some("hello\n"));
    assert!(
        p.diff[0].render().contains("+world"),
        "{}",
        p.diff[0].render()
    );
    assert_eq!(p.diff[1].what, "/etc/motd:mode");
    assert_eq!(p.diff[1].render(), "/etc/motd:mode: 0600 -> 0644");
    let same = f.plan(&text_reading("hello\nworld\n", 0o644)).unwrap();
    assert!(same.steps.is_empty() && same.diff.is_empty());
    let mode_only = f.plan(&text_reading("hello\nworld\n", 0o600)).unwrap();
    assert_eq!(mode_only.steps, vec![Step::Chmod(0o644)]);
}

#[test]
fn plan_compares_big_files_by_hash() {
    let f = file(&[("path", "/x"), ("content", "new")]);
    let big = Reading {
        content: None,
        size: Some(1 << 20),
        sha256: Some("ab".repeat(32)),
        ..text_reading("", 0o644)
    };
    let p = f.plan(&big).unwrap();
    assert!(
        p.diff[0]
            .before
            .as_deref()
            .unwrap()
            .contains("1048576 bytes")
    );
}

#[test]
fn plan_refuses_what_it_cannot_reach() {
    let dir = Reading {
        kind: Kind::Dir,
        ..Reading::absent()
    };
    assert!(
        file(&[("path", "/x"), ("content", "a")])
            .plan(&dir)
            .unwrap_err()
            .contains("is a directory")
    );
    assert!(
        file(&[("path", "/x")])
            .plan(&Reading::absent())
            .unwrap_err()
            .contains("does not exist")
    );
    let no_parent = Reading {
        parent_exists: false,
        ..Reading::absent()
    };
    assert!(
        file(&[("path", "/a/b"), ("content", "a")])
            .plan(&no_parent)
            .unwrap_err()
            .contains("makedirs")
    );
    let ok = file(&[("path", "/a/b"), ("content", "a"), ("makedirs", "yes")])
        .plan(&no_parent)
        .unwrap();
    assert_eq!(ok.steps, vec![Step::Write]);
    assert!(
        file(&[("path", "/x"), ("target", "/y")])
            .plan(&text_reading("", 0o644))
            .is_err()
    );
}

#[test]
fn plan_for_links_dirs_absent_touch() {
    let link = file(&[("path", "/l"), ("state", "symlink"), ("target", "/t")]);
    assert_eq!(
        link.plan(&Reading::absent()).unwrap().steps,
        vec![Step::Symlink]
    );
    let there = Reading {
        kind: Kind::Link,
        link_target: Some("/t".into()),
        ..Reading::absent()
    };
    assert!(link.plan(&there).unwrap().steps.is_empty());
    let d = file(&[("path", "/d"), ("state", "directory"), ("mode", "750")]);
    assert_eq!(
        d.plan(&Reading::absent()).unwrap().steps,
        vec![Step::Mkdir, Step::Chmod(0o750)]
    );
    let gone = file(&[("path", "/d"), ("state", "absent")]);
    assert!(gone.plan(&Reading::absent()).unwrap().steps.is_empty());
    assert_eq!(
        gone.plan(&text_reading("x", 0o644)).unwrap().steps,
        vec![Step::Remove]
    );
    let t = file(&[("path", "/t"), ("state", "touch")]);
    assert_eq!(t.plan(&Reading::absent()).unwrap().steps, vec![Step::Touch]);
    assert!(t.plan(&text_reading("x", 0o644)).unwrap().steps.is_empty());
}

#[test]
fn arguments_are_checked() {
    let bad = |pairs: &[(&str, &str)]| File::new(&args(pairs)).unwrap_err().to_string();
    assert!(bad(&[("content", "x")]).contains("`path` or `name` or `dest` is required"));
    assert!(bad(&[("path", "/x"), ("mode", "rw")]).contains("octal"));
    assert!(bad(&[("path", "/x"), ("mdoe", "0644")]).contains("did you mean `mode`"));
    assert!(bad(&[("path", "/x"), ("state", "gone")]).contains("must be one of"));
    assert!(
        bad(&[("path", "/x"), ("state", "absent"), ("content", "x")])
            .contains("only for state=managed")
    );
    assert!(bad(&[("path", "/x"), ("template", "{{ nope }}")]).contains("template"));
    assert!(bad(&[("path", "/x"), ("name", "/y")]).contains("mean the same"));
    assert_eq!(parse_mode("0644"), Some(0o644));
    assert_eq!(parse_mode("2755"), Some(0o2755));
    assert_eq!(parse_mode("0o600"), Some(0o600));
    assert_eq!(parse_mode("0999"), None);
}

#[test]
fn templates_render_with_vars() {
    let mut a = args(&[
        ("path", "/x"),
        (
            "template",
            "port {{ port }}\n{% for u in users %}{{ u }}\n{% endfor %}",
        ),
    ]);
    a.insert(
        "vars".into(),
        serde_json::json!({"port": 80, "users": ["a", "b"]}),
    );
    let f = File::new(&a).unwrap();
    assert_eq!(f.content.as_deref(), Some(&b"port 80\na\nb\n"[..]));
}

#[test]
fn apply_scripts_are_valid_sh() {
    for (pairs, now) in [
        (
            vec![
                ("path", "/a b/it's"),
                ("content", "x"),
                ("owner", "root"),
                ("makedirs", "1"),
            ],
            Reading::absent(),
        ),
        (
            vec![("path", "/x"), ("content", "x")],
            text_reading("y", 0o600),
        ),
        (
            vec![
                ("path", "/x"),
                ("state", "directory"),
                ("mode", "0700"),
                ("group", "adm"),
            ],
            Reading::absent(),
        ),
        (
            vec![("path", "/x"), ("target", "/y"), ("owner", "me")],
            Reading::absent(),
        ),
        (
            vec![("path", "/x"), ("state", "absent")],
            text_reading("y", 0o600),
        ),
        (vec![("path", "/x"), ("state", "touch")], Reading::absent()),
    ] {
        let f = file(&pairs);
        assert_sh(&f.probe_script());
        let plan = f.plan(&now).unwrap();
        assert!(!plan.steps.is_empty());
        assert_sh(&f.apply_script(&plan, &now));
    }
}

#[tokio::test]
async fn managed_writes_atomically_and_is_idempotent() {
    let d = Scratch::new();
    let p = d.s("motd");
    let a = [
        ("path", p.as_str()),
        ("content", "hello\n"),
        ("mode", "0640"),
    ];
    let first = run("file", &a, &Default::default()).await.unwrap();
    assert!(first.changed, "{first:?}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello\n");
    assert_eq!(mode_of(d.path("motd").as_path()), 0o640);
    no_temp_left(&d);
    let second = run("file", &a, &Default::default()).await.unwrap();
    assert!(!second.changed, "{second:?}");
    assert!(second.diff.is_empty());

    // A changed content in check mode: the diff, and the file untouched.
    let b = [("path", p.as_str()), ("content", "bye\n"), ("mode", "0600")];
    let dry = run("file", &b, &check()).await.unwrap();
    assert!(dry.changed && dry.summary.starts_with("would have"));
    let rendered: Vec<_> = dry.diff.iter().map(Diff::render).collect();
    assert!(
        rendered[0].contains("-hello") && rendered[0].contains("+bye"),
        "{rendered:?}"
    );
    assert_eq!(rendered[1], format!("{p}:mode: 0640 -> 0600"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello\n");
    assert!(
        run("file.managed", &b, &Default::default())
            .await
            .unwrap()
            .changed
    );
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "bye\n");
    assert_eq!(mode_of(d.path("motd").as_path()), 0o600);
    no_temp_left(&d);
}

#[tokio::test]
async fn binary_content_goes_through_stdin_intact() {
    let d = Scratch::new();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    std::fs::write(d.path("src.bin"), &bytes).unwrap();
    let p = d.s("out.bin");
    let a = [("name", p.as_str()), ("source", &d.s("src.bin")[..])];
    let o = run("file", &a, &Default::default()).await.unwrap();
    assert!(o.changed);
    assert_eq!(std::fs::read(&p).unwrap(), bytes);
    assert!(o.diff[0].after.as_deref().unwrap().contains("200000 bytes"));
    assert!(!run("file", &a, &Default::default()).await.unwrap().changed);
}

#[tokio::test]
async fn existing_file_keeps_its_mode_when_none_is_given() {
    let d = Scratch::new();
    let p = d.path("keep");
    std::fs::write(&p, "old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(
        "file",
        &[("path", &d.s("keep")), ("content", "new")],
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(mode_of(&p), 0o600);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
}

#[tokio::test]
async fn directory_symlink_touch_absent_and_file() {
    let d = Scratch::new();
    let dir = d.s("a/b");
    let a = [
        ("path", dir.as_str()),
        ("state", "directory"),
        ("mode", "0750"),
    ];
    assert!(run("file", &a, &Default::default()).await.unwrap().changed);
    assert_eq!(mode_of(&d.path("a/b")), 0o750);
    assert!(!run("file", &a, &Default::default()).await.unwrap().changed);

    let link = d.s("link");
    let l = [
        ("path", link.as_str()),
        ("state", "symlink"),
        ("target", dir.as_str()),
    ];
    assert!(run("file", &l, &Default::default()).await.unwrap().changed);
    assert_eq!(std::fs::read_link(&link).unwrap(), d.path("a/b"));
    assert!(!run("file", &l, &Default::default()).await.unwrap().changed);
    let l2 = [("path", link.as_str()), ("target", "/elsewhere")];
    let o = run("file.symlink", &l2, &Default::default()).await.unwrap();
    assert!(o.changed);
    assert_eq!(
        o.diff[0].render(),
        format!("{link}: -> {dir} -> -> /elsewhere")
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap().to_string_lossy(),
        "/elsewhere"
    );

    let t = d.s("a/b/touched");
    let ta = [("path", t.as_str()), ("state", "touch"), ("mode", "0604")];
    assert!(run("file", &ta, &Default::default()).await.unwrap().changed);
    assert_eq!(mode_of(&d.path("a/b/touched")), 0o604);
    assert!(!run("file", &ta, &Default::default()).await.unwrap().changed);

    // state=file fixes the mode of what is there, and fails on nothing.
    let fa = [("path", t.as_str()), ("mode", "0600")];
    assert!(run("file", &fa, &Default::default()).await.unwrap().changed);
    assert_eq!(mode_of(&d.path("a/b/touched")), 0o600);
    assert!(!run("file", &fa, &Default::default()).await.unwrap().changed);
    let missing = run("file", &[("path", &d.s("nope"))], &Default::default())
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    let gone = [("path", d.s("a"))];
    let gone: Vec<(&str, &str)> = vec![("path", gone[0].1.as_str()), ("state", "absent")];
    let dry = run("file", &gone, &check()).await.unwrap();
    assert!(dry.changed);
    assert!(d.path("a/b").exists(), "check removed nothing");
    assert!(
        run("file.absent", &gone[..1], &Default::default())
            .await
            .unwrap()
            .changed
    );
    assert!(!d.path("a").exists());
    assert!(
        !run("file", &gone, &Default::default())
            .await
            .unwrap()
            .changed
    );
}

#[tokio::test]
async fn makedirs_and_missing_parent() {
    let d = Scratch::new();
    let p = d.s("x/y/z.conf");
    let err = run(
        "file",
        &[("path", p.as_str()), ("content", "a")],
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("makedirs"), "{err}");
    let a = [("path", p.as_str()), ("content", "a"), ("makedirs", "true")];
    assert!(run("file", &a, &Default::default()).await.unwrap().changed);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a");
}

#[tokio::test]
async fn the_probe_sends_back_only_small_text() {
    use crate::remote::{Exec, Remote};
    let d = Scratch::new();
    let big = "line of text\n".repeat(10_000);
    std::fs::write(d.path("big"), &big).unwrap();
    std::fs::write(d.path("small"), "small\n").unwrap();
    let probe = |p: &str| file(&[("path", p), ("content", "x")]).probe_script();
    let out = local().exec(Exec::new(probe(&d.s("big")))).await.unwrap();
    assert!(
        out.stdout.len() < 1024,
        "{} bytes came back",
        out.stdout.len()
    );
    let r = File::parse(&out.stdout);
    assert_eq!(r.size, Some(big.len() as u64));
    assert_eq!(
        r.sha256.as_deref(),
        Some(sha256_hex(big.as_bytes()).as_str())
    );
    assert_eq!(r.content, None);
    let out = local().exec(Exec::new(probe(&d.s("small")))).await.unwrap();
    let r = File::parse(&out.stdout);
    assert_eq!(r.content.as_deref(), Some(&b"small\n"[..]));
    assert_eq!(r.sha256.as_deref(), Some(sha256_hex(b"small\n").as_str()));
    assert_eq!((r.size, r.mode), (Some(6), Some(mode_of(&d.path("small")))));
    // Small but binary: hashed, not kept for a diff.
    std::fs::write(d.path("bin"), b"a\0b").unwrap();
    let out = local().exec(Exec::new(probe(&d.s("bin")))).await.unwrap();
    let r = File::parse(&out.stdout);
    assert_eq!((r.kind, r.size, r.content), (Kind::File, Some(3), None));
    assert_eq!(r.sha256.as_deref(), Some(sha256_hex(b"a\0b").as_str()));
    // A directory: its mode and owner, no size.
    let out = local()
        .exec(Exec::new(probe(&d.root().to_string_lossy())))
        .await
        .unwrap();
    let r = File::parse(&out.stdout);
    assert_eq!((r.kind, r.size), (Kind::Dir, None));
    assert!(
        r.mode.is_some() && r.owner.is_some() && r.group.is_some(),
        "{r:?}"
    );
}

/// A process costs the host about what an exec's own overhead does: the
/// probe starts `stat` and `cat` only for what the plan reads.
#[test]
fn the_probe_starts_only_the_processes_the_plan_needs() {
    let script = |a: &[(&str, &str)]| file(a).probe_script();
    let dir = script(&[("path", "/d"), ("state", "directory")]);
    let link = script(&[("path", "/l"), ("target", "/t")]);
    for s in [&dir, &link] {
        assert!(!s.contains("stat ") && !s.contains("cat "), "{s}");
    }
    let owned = script(&[("path", "/d"), ("state", "directory"), ("owner", "root")]);
    assert!(
        owned.contains("stat ") && !owned.contains("cat "),
        "{owned}"
    );
    let managed = script(&[("path", "/f"), ("content", "x")]);
    assert!(
        managed.contains("stat ") && managed.contains("cat "),
        "{managed}"
    );
    for s in [&dir, &link, &owned, &managed] {
        assert_sh(s);
    }
}
