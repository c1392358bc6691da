//! `cairn artifact` and `cairn release` refusing bad input through the
//! binary, before any host or cloud is touched. The releases themselves
//! run on a `runc` local cloud: see `local::release`.

fn template(dir: &std::path::Path, apps: &str) -> String {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/serve.sh"), "echo hi\n").unwrap();
    std::fs::write(
        dir.join("cairn.yaml"),
        format!("cairn: 1\nresources:\n  deployer:\n    type: key_pair\n    properties: {{name: deployer}}\napps:\n{apps}"),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

const HELLO: &str = "  hello:\n    build: {command: \"mkdir -p out && cp serve.sh out/\", dir: app, output: out}\n    install: /srv/hello\n    service: exec sh serve.sh\n    port: 8081\n    servers: \"G@role:web\"\n";

/// `out` is a refusal of bad input (exit 2) whose stderr says each of
/// `says`.
#[track_caller]
fn assert_refused(out: &crate::Output, says: &[&str]) {
    assert_eq!(out.code, 2, "{}", out.snapshot());
    for s in says {
        assert!(out.stderr.contains(s), "stderr lacks {s:?}: {}", out.stderr);
    }
}

#[test]
fn bad_apps_and_releases_are_refused_with_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let env = |args: &[&str]| crate::cairn_env(args, &[("CAIRN_KEY_FILE", key.to_str().unwrap())]);

    // A misspelt key is a template error where it is written.
    let t = template(
        &tmp.path().join("typo"),
        "  hello:\n    instal: /srv/hello\n    servers: web\n",
    );
    let out = env(&["validate", &t]);
    assert_refused(
        &out,
        &[
            "unknown key `instal` in an app",
            "cairn.yaml:8:5",
            "app `hello` has no `install`",
        ],
    );

    // A value of the wrong kind says which and what it must be.
    let t = template(
        &tmp.path().join("badport"),
        &HELLO.replace("port: 8081", "port: 99999"),
    );
    let out = env(&["release", "hello", "v1", "-C", &t]);
    assert_refused(&out, &["app `hello`: `port` must be a port, 1 to 65535"]);

    let t = template(&tmp.path().join("ok"), HELLO);
    let out = env(&["release", "nope", "v1", "-C", &t]);
    assert_refused(&out, &["no app `nope` in the template (its apps: hello)"]);

    let out = env(&["release", "hello", "v9", "-C", &t]);
    assert_refused(
        &out,
        &[
            "hello v9 is not in the artifact store",
            "cairn artifact list hello",
        ],
    );

    let out = env(&["release", "hello", "v1", "-C", &t, "--batch", "0%"]);
    assert_refused(&out, &["`0%` is not a batch size"]);

    // Built once; the same version with other content is refused, the
    // same content again is not.
    let build_v1 = || {
        env(&[
            "artifact",
            "build",
            "hello",
            "--version",
            "v1",
            &t,
            "-o",
            "json",
        ])
    };
    let built = build_v1();
    assert_eq!(built.code, 0, "{}", built.snapshot());
    let again = build_v1();
    assert_eq!(again.code, 0, "{}", again.snapshot());
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["stored"], false);
    std::fs::write(tmp.path().join("ok/app/serve.sh"), "echo changed\n").unwrap();
    let changed = env(&["artifact", "build", "hello", "--version", "v1", &t]);
    assert_eq!(changed.code, 1, "{}", changed.snapshot());
    assert!(
        changed.stderr.contains("versions are immutable"),
        "{}",
        changed.stderr
    );

    // A failing build names its exit code and shows its last lines.
    let t2 = template(
        &tmp.path().join("fails"),
        &HELLO.replace(
            "mkdir -p out && cp serve.sh out/",
            "echo compiling; echo 'missing header' >&2; exit 3",
        ),
    );
    let failed = env(&["artifact", "build", "hello", "--version", "v1", &t2]);
    assert_eq!(failed.code, 1, "{}", failed.snapshot());
    assert!(
        failed.stderr.contains("missing header"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains('3'), "{}", failed.stderr);

    // The store lists what was kept: one version, its digest.
    let listed = env(&["artifact", "list", "hello", &t, "-o", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.snapshot());
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["version"], "v1");
}

/// `cairn heal` refuses what it cannot heal, before any host is touched:
/// an unknown app, an app without a `heal` policy, a `heal` without a
/// `health` check (a template error where it is written), a misspelt
/// policy key, and an app with no release in the environment yet.
#[test]
fn heal_refuses_what_it_cannot_heal_with_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let env = |args: &[&str]| crate::cairn_env(args, &[("CAIRN_KEY_FILE", key.to_str().unwrap())]);
    let healthy = format!(
        "{HELLO}    health: {{path: /healthz, timeout: 2s}}\n    heal: {{grace: 1s, interval: 200ms}}\n"
    );

    let t = template(&tmp.path().join("ok"), &healthy);
    let out = env(&["heal", "nope", "-C", &t, "--once"]);
    assert_refused(&out, &["no app `nope` in the template (its apps: hello)"]);
    let out = env(&["heal", "hello", "-C", &t, "--once"]);
    assert_refused(
        &out,
        &[
            "hello has no release in `dev` yet: nothing to heal to (`cairn release hello VERSION -e dev`)",
        ],
    );
    // The history of an app never healed is empty, not an error.
    let out = env(&["heal", "hello", "-C", &t, "--history", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(out.stdout.trim(), "[]");

    let t = template(&tmp.path().join("nopolicy"), HELLO);
    let out = env(&["heal", "hello", "-C", &t]);
    assert_refused(
        &out,
        &["app `hello` has no `heal` policy: add `heal: {grace: 30s}`"],
    );

    let t = template(
        &tmp.path().join("nohealth"),
        &format!("{HELLO}    heal: {{grace: 1s}}\n"),
    );
    let out = env(&["validate", &t]);
    assert_refused(
        &out,
        &["app `hello` has `heal` but no `health`", "cairn.yaml:13:5"],
    );
    let out = env(&["heal", "hello", "-C", &t, "--once"]);
    assert_refused(&out, &["has `heal` but no `health`"]);

    let t = template(
        &tmp.path().join("typo"),
        &healthy.replace("grace: 1s", "grase: 1s"),
    );
    let out = env(&["validate", &t]);
    assert_refused(&out, &["unknown key `grase` in an app's `heal`", "grace"]);
}

/// `store: bucket:NAME` on aws: the artifacts go into the deployment's own
/// S3 bucket (on moto), read back with the SDK, and verify from there.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn an_aws_deployments_own_bucket_keeps_the_artifacts() {
    let moto = crate::aws::Moto::start("bucket-store");
    let dir = moto.root.join("tpl");
    let t = template(
        &dir,
        &HELLO.replace("servers:", "store: \"bucket:artifacts\"\n    servers:"),
    );
    let yaml = std::fs::read_to_string(dir.join("cairn.yaml")).unwrap();
    std::fs::write(
        dir.join("cairn.yaml"),
        yaml.replace(
            "resources:\n",
            "resources:\n  artifacts:\n    type: bucket\n    properties: {name: artifacts}\n",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::write(dir.join("env/aws.yaml"), "target: aws\nregion: us-east-1\n").unwrap();
    // `cairn CMD.. TEMPLATE -e aws REST..` against moto.
    let on_aws =
        |cmd: &[&str], rest: &[&str]| moto.run(&[cmd, &[t.as_str(), "-e", "aws"], rest].concat());

    let out = on_aws(&["artifact", "build", "hello", "--version", "v1"], &[]);
    assert_refused(&out, &["has no bucket yet"]);

    let up = on_aws(&["up"], &["--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let out = on_aws(
        &["artifact", "build", "hello", "--version", "v1"],
        &["-o", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let bucket: serde_json::Value =
        serde_json::from_str(&on_aws(&["show"], &["--address", "artifacts", "-o", "json"]).stdout)
            .unwrap();
    let name = bucket["id"].as_str().unwrap();
    assert_eq!(
        built["store"].as_str().unwrap(),
        format!("s3://{name}/cairn/artifacts"),
        "{built:#}"
    );
    let listed = moto
        .clients()
        .await
        .s3
        .list_objects_v2()
        .bucket(name)
        .prefix("cairn/artifacts/hello/v1/")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.ends_with("manifest.json")),
        "{keys:?}"
    );
    let out = on_aws(&["artifact", "verify", "hello", "v1"], &["-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert!(out.stdout.contains(built["digest"].as_str().unwrap()));

    let down = on_aws(&["destroy"], &["--yes", "--allow-data-loss", "-o", "none"]);
    assert_eq!(down.code, 0, "{}", down.snapshot());
}
