//! `load`, `parse_kv` and `raw`: what the CLI and states call.

use super::testkit::{args, local};
use super::*;

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

#[test]
fn parse_kv_reads_words() {
    let a = parse_kv(&words(&[
        "path=/etc/motd",
        "content=hi there",
        "mode=0644",
        "names=[\"a\",\"b\"]",
        "x=a=b",
    ]))
    .unwrap();
    assert_eq!(a["path"], "/etc/motd");
    assert_eq!(a["content"], "hi there");
    assert_eq!(
        a["mode"], "0644",
        "stays a string: octal is the module's business"
    );
    assert_eq!(
        a["names"], "[\"a\",\"b\"]",
        "a list only to the arguments that take one"
    );
    assert_eq!(a["x"], "a=b");
    assert!(
        parse_kv(&words(&["path"]))
            .unwrap_err()
            .to_string()
            .contains("not key=value")
    );
    assert!(
        parse_kv(&words(&["a=1", "a=2"]))
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(parse_kv(&words(&["=1"])).is_err());
    let a = parse_kv(&words(&["content=[not json"])).unwrap();
    assert_eq!(a["content"], "[not json");
}

#[test]
fn command_line_lists_maps_and_json_content() {
    let a = parse_kv(&words(&["names=[\"nginx\",\"curl\"]"])).unwrap();
    assert_eq!(pkg::Pkg::new(&a).unwrap().names, ["nginx", "curl"]);
    let a = parse_kv(&words(&["cmd=env", "env={\"A\":\"1\"}"])).unwrap();
    assert_eq!(
        cmd::Cmd::new(&a).unwrap().env,
        [("A".to_string(), "1".to_string())]
    );
    let a = parse_kv(&words(&["path=/x.json", "content={\"a\": 1}"])).unwrap();
    assert_eq!(
        file::File::new(&a).unwrap().content.as_deref(),
        Some(&b"{\"a\": 1}"[..])
    );
    let a = parse_kv(&words(&[
        "path=/x",
        "template=p={{ port }}",
        "vars={\"port\":80}",
    ]))
    .unwrap();
    assert_eq!(
        file::File::new(&a).unwrap().content.as_deref(),
        Some(&b"p=80"[..])
    );
}

#[test]
fn load_checks_names_and_arguments() {
    for (name, a) in [
        ("file", vec![("path", "/x"), ("content", "y")]),
        ("file.managed", vec![("name", "/x"), ("content", "y")]),
        ("pkg.installed", vec![("name", "nginx")]),
        ("pkg.latest", vec![("pkgs", "a,b")]),
        ("service.running", vec![("name", "nginx")]),
        ("service.dead", vec![("name", "nginx")]),
        ("cmd.run", vec![("name", "true")]),
        ("user.present", vec![("name", "deploy")]),
        ("group.absent", vec![("name", "web")]),
        (
            "git.latest",
            vec![
                ("name", "https://example.invalid/r.git"),
                ("target", "/srv/r"),
            ],
        ),
        (
            "archive.extracted",
            vec![("name", "/opt/app"), ("source", "/tmp/a.tar.gz")],
        ),
        ("http.query", vec![("name", "http://127.0.0.1/")]),
        ("facts", vec![]),
    ] {
        let m = load(name, &args(&a)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.name(), name.split('.').next().unwrap());
    }
    match load("fiel", &Args::new()).unwrap_err() {
        ModuleError::Unknown { suggestion, .. } => assert_eq!(suggestion.as_deref(), Some("file")),
        e => panic!("{e:?}"),
    }
    let e = load("pkg.instaled", &args(&[("name", "x")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no module named `pkg.instaled` (did you mean `pkg.installed`?)"
    );
    let e = load("frobnicate", &Args::new()).unwrap_err();
    assert_eq!(e.to_string(), "no module named `frobnicate`");
    let e = load(
        "file.absent",
        &args(&[("path", "/x"), ("state", "directory")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("contradicts file.absent"), "{e}");
    let e = load(
        "service",
        &args(&[("name", "x"), ("state", "running"), ("enabeld", "yes")]),
    )
    .unwrap_err();
    assert!(matches!(e, ModuleError::BadArgs { .. }));
    assert!(e.to_string().contains("did you mean `enabled`"), "{e}");
    let e = load("pkg", &args(&[("state", "installed")])).unwrap_err();
    assert!(e.to_string().contains("required"), "{e}");
    let e = load(
        "cmd",
        &args(&[("cmd", "x"), ("creates", "/a"), ("env", "[")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("env"), "{e}");
}

#[tokio::test]
async fn raw_commands_always_change() {
    let m = raw(&words(&["echo", "a b", "|", "tr", "a", "A"])).unwrap();
    let o = m.run(&local(), &RunContext::default()).await.unwrap();
    assert!(o.changed);
    assert_eq!(o.stdout, "A b\n");
    let o = m.run(&local(), &RunContext::default()).await.unwrap();
    assert!(
        o.changed,
        "a raw command has no way to know it need not run"
    );
}
