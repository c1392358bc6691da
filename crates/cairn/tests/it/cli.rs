//! Commands and the output options every command shares.

use crate::cairn;

#[test]
fn eval_unique_string_matches_arm() {
    let out = cairn(&["eval", "unique_string('aaa')", "-o", "table"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "zavj67f3en4hc\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn eval_in_a_template_context() {
    let out = cairn(&[
        "eval",
        "cidr_subnet(net.cidr, 8, 1)",
        "../../examples/webapp",
        "-o",
        "json",
    ]);
    assert_eq!(out.stdout.trim(), "\"10.20.1.0/24\"", "{}", out.stderr);
    let out = cairn(&[
        "eval",
        "web | length",
        "../../examples/webapp",
        "-p",
        "web_count=3",
        "-o",
        "json",
    ]);
    assert_eq!(out.stdout.trim(), "3", "{}", out.stderr);
    let out = cairn(&["eval", "lb.address", "../../examples/webapp", "-o", "json"]);
    assert_eq!(out.stdout.trim(), "\"(known after apply)\"");
    let out = cairn(&[
        "eval",
        "params.db_password",
        "../../examples/webapp",
        "-o",
        "json",
    ]);
    assert_eq!(out.stdout.trim(), "\"(secret)\"");
}

#[test]
fn eval_errors_are_template_errors() {
    let out = cairn(&["eval", "nosuch_fn(1)"]);
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(out.snapshot());
}

#[test]
fn every_output_format_for_validate() {
    for format in ["json", "yaml", "table", "tsv", "none"] {
        let out = cairn(&[
            "validate",
            "../../examples/webapp",
            "-o",
            format,
            "--query",
            "{deployment: deployment, instances: instances, target: target}",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        insta::assert_snapshot!(format!("validate_{format}"), out.stdout);
    }
}

#[test]
fn query_errors_are_usage_errors() {
    let out = cairn(&["validate", "../../examples/webapp", "--query", "[?"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("invalid --query"), "{}", out.stderr);
}

#[test]
fn graph_formats() {
    let dot = cairn(&["graph", "../../examples/webapp"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    insta::assert_snapshot!("graph_dot", dot.stdout);
    let mermaid = cairn(&["graph", "../../examples/webapp", "--format", "mermaid"]);
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
    let json = cairn(&[
        "graph",
        "../../examples/webapp",
        "-o",
        "json",
        "--query",
        "edges[?from=='web'].to",
    ]);
    let deps: Vec<String> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(deps, ["deployer", "web_fw", "web_subnet"]);
}

#[test]
fn parameter_priority_rises_from_default_to_environment_variable() {
    let dir = "../../examples/webapp";
    let q = ["-o", "json", "--query", "parameters.web_count"];
    let run = |extra: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("CAIRN_PARAM_WEB_COUNT");
        if let Some(v) = env {
            cmd.env("CAIRN_PARAM_WEB_COUNT", v);
        }
        let out = cmd
            .arg("validate")
            .arg(dir)
            .args(extra)
            .args(q)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // env/dev.yaml says 2; test says 3.
    assert_eq!(run(&[], None), "2");
    assert_eq!(run(&["-e", "test"], None), "3");
    let file = std::env::temp_dir().join(format!("cairn-params-{}.yaml", std::process::id()));
    std::fs::write(&file, "web_count: 5\n").unwrap();
    let file_s = file.to_str().unwrap();
    assert_eq!(run(&["--param-file", file_s], None), "5");
    assert_eq!(
        run(&["--param-file", file_s, "-p", "web_count=7"], None),
        "7"
    );
    assert_eq!(
        run(&["--param-file", file_s, "-p", "web_count=7"], Some("9")),
        "9"
    );
    std::fs::remove_file(file).ok();
}

#[test]
fn completions_are_generated() {
    let out = cairn(&["completions", "bash"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("cairn"));
}

#[test]
fn http_echo_serves_its_text_on_the_address_it_is_given() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "util",
            "http-echo",
            "--port",
            &port.to_string(),
            "--text",
            "hello from 0",
        ])
        .env("CAIRN_ADDRESS", "127.0.0.1")
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    // SIGTERM stops it cleanly.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(body.ends_with("hello from 0\n"), "{body}");
    assert!(status.success(), "{status:?}");
}

/// `cairn local image`: an unknown name is a usage error naming the known
/// ones; `host` is the machine's root; a built image is found in the cache
/// without building again (no progress lines).
#[test]
fn local_image_finds_or_refuses_images() {
    use crate::cairn_env;
    let cache = std::env::temp_dir().join(format!("cairn-image-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let xdg = cache.to_str().unwrap();
    let vars = [("XDG_CACHE_HOME", xdg)];

    let out = cairn_env(&["local", "image", "debian-13"], &vars);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("debian-13") && out.stderr.contains("host, debian-12"),
        "{}",
        out.stderr
    );

    let out = cairn_env(&["local", "image", "host", "-o", "json"], &vars);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["root"].as_str()),
        (Some("host"), Some("/"))
    );

    // An image already in the cache (a marker and a root): found, not built.
    let images = cairn_local::host::image::ImageCache::new(cache.join("cairn/images"));
    let entry = images.dir(&cairn_local::host::image::DEBIAN_12);
    std::fs::create_dir_all(entry.join("rootfs/etc")).unwrap();
    std::fs::write(entry.join("image.json"), "{\"name\": \"debian-12\"}\n").unwrap();
    let out = cairn_env(&["local", "image", "debian-12", "-o", "json"], &vars);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("debian-12:"),
        "built again: {}",
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["root"].as_str(),
        Some(entry.join("rootfs").to_str().unwrap())
    );
    std::fs::remove_dir_all(&cache).unwrap();
}
