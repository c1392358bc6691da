//! Figures for the artifact path of a release, printed (no harness):
//! build + pack + sign of a 50 MB tree, and the host script's receive +
//! verify + unpack + per-file check of the result, with `sh` on this
//! machine. Run: `cargo bench -p cairn-release --no-default-features`.
//!
//! The tree is shaped like a web app's release: 1,000 text files of 40 KB
//! (compressible) and 20 binaries of 500 KB (not).

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_release::artifact::host_script::{install_command, install_script};
use cairn_release::artifact::pack::{ManifestHead, pack};
use cairn_release::artifact::{BuildSpec, SigningKey, build};

const RUNS: usize = 3;

fn main() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let src = tmp.path().join("src");
    let bytes = make_tree(&src);
    println!(
        "tree: {:.1} MB in 1,020 files; {RUNS} runs each, median (min-max)",
        bytes as f64 / 1e6
    );
    let key = SigningKey::generate().expect("a key");

    // Each build's temporary directory outlives its timing (removing 50 MB
    // is not part of a build).
    let mut builds = Vec::new();
    let build_times = time(|| {
        let spec = BuildSpec::new("web", "v1", &src, "true");
        builds.push(build(&spec, &key, &mut |_| {}).expect("build"));
    });
    let built = builds.pop().expect("built");
    drop(builds);
    report("build (copy + `true` + pack + sign)", &build_times);
    println!(
        "  archive: {:.1} MB, manifest {} bytes",
        built.manifest.archive.size as f64 / 1e6,
        built.manifest_bytes.len()
    );

    let pack_times = time(|| {
        let head = ManifestHead {
            app: "web".into(),
            version: "v1".into(),
            created_at: "2026-12-05T06:00:00Z".into(),
            built_by: "bench@localhost".into(),
        };
        pack(&src, &tmp.path().join("p.tar.zst"), head).expect("pack");
    });
    report("pack + hash alone", &pack_times);

    let archive = fs::read(&built.archive).expect("the archive");
    let mut n = 0;
    let install_times = time(|| {
        n += 1;
        let target = tmp.path().join(format!("srv{n}"));
        let script = install_script(
            target.to_str().expect("UTF-8"),
            "v1",
            &built.manifest_bytes,
            &built.signature,
            &key.public(),
        )
        .expect("script");
        // 1,020 files make a script beyond one argument's 128 KiB: it goes
        // ahead of the archive on stdin, as the lead's transport sends it.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(install_command(script.len()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&[script.as_bytes(), &archive].concat())
            .expect("the script and the archive to sh");
        let status = child.wait().expect("sh ends");
        assert!(status.success(), "install failed: {status}");
    });
    report(
        "host script (receive + verify + unpack + check files)",
        &install_times,
    );
}

fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    let mut seed = [1u8; 32];
    let mut random = |len: usize| {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed = ring::digest::digest(&ring::digest::SHA256, &seed)
                .as_ref()
                .try_into()
                .expect("32 bytes");
            out.extend_from_slice(&seed);
        }
        out.truncate(len);
        out
    };
    for d in 0..20 {
        let dir = root.join(format!("app/module{d:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..50 {
            let mut text = String::with_capacity(40_000);
            let mut i = 0;
            while text.len() < 40_000 {
                text.push_str(&format!(
                    "export const value_{d}_{f}_{i} = \"{}\";\n",
                    i * 7919 % 10007
                ));
                i += 1;
            }
            fs::write(dir.join(format!("file{f:02}.js")), &text).expect("write");
            total += text.len() as u64;
        }
    }
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    for b in 0..20 {
        let data = random(500_000);
        fs::write(root.join(format!("bin/blob{b:02}.bin")), &data).expect("write");
        total += data.len() as u64;
    }
    total
}

fn time(mut f: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<_> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    println!(
        "{what}: {:.2} s ({:.2}-{:.2})",
        times[times.len() / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
}
