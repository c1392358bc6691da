use super::*;
use crate::module::file::File;
use crate::module::testkit::{Scratch, args, assert_sh};
use crate::remote::{Exec, Remote};
use crate::transport::local::LocalHost;

async fn sh(batch: &Batch, stdin: Option<&[u8]>) -> Output {
    let mut exec = Exec::new(batch.script());
    if let Some(input) = stdin {
        exec = exec.stdin(input.to_vec());
    }
    LocalHost::new("local").exec(exec).await.unwrap()
}

async fn alone(script: &str) -> Output {
    LocalHost::new("local")
        .exec(Exec::new(script))
        .await
        .unwrap()
}

fn out(status: i32, stdout: &[u8], stderr: &[u8]) -> Output {
    Output {
        status: Some(status),
        stdout: stdout.to_vec(),
        stderr: stderr.to_vec(),
    }
}

#[tokio::test]
async fn each_part_comes_back_byte_exact_with_its_status_and_errors() {
    let probes = [
        // No last newline.
        "printf 'a\\nb'",
        // Nothing at all.
        ":",
        // Binary, a NUL and a lone newline among it.
        "printf '\\000\\001\\n\\377'",
        "echo out; echo err >&2; exit 3",
        // An exit or a `set -e` ends its own part only.
        "set -e; false; echo never",
        // A probe's stdin is empty, not the step's.
        "cat; echo read",
        // Blank lines before a frame are the part's own.
        "printf '\\n\\n'",
    ];
    let lead = "cat; echo step-err >&2; exit 5";
    let batch = Batch::new(Some(lead), &probes).unwrap();
    assert_sh(batch.script());
    let ran = sh(&batch, Some(b"the content\n")).await;
    assert_eq!(ran.status, Some(5), "the exec ends with the step's status");
    let split = batch.split(&ran).expect("framed");
    assert_eq!(split.lead, Some(out(5, b"the content\n", b"step-err\n")));
    assert_eq!(
        split.probes,
        vec![
            out(0, b"a\nb", b""),
            out(0, b"", b""),
            out(0, b"\0\x01\n\xff", b""),
            out(3, b"out\n", b"err\n"),
            out(1, b"", b""),
            out(0, b"read\n", b""),
            out(0, b"\n\n", b""),
        ]
    );
    for (probe, got) in probes.iter().zip(&split.probes) {
        if !probe.starts_with("cat") {
            assert_eq!(&alone(probe).await, got, "{probe}");
        }
    }
}

#[tokio::test]
async fn without_a_lead_the_exec_succeeds_whatever_the_probes_did() {
    let batch = Batch::new(None, &["exit 7", "echo x"]).unwrap();
    let ran = sh(&batch, None).await;
    assert_eq!(ran.status, Some(0));
    let split = batch.split(&ran).unwrap();
    assert_eq!(split.lead, None);
    assert_eq!(split.probes, vec![out(7, b"", b""), out(0, b"x\n", b"")]);
}

#[tokio::test]
async fn a_part_that_prints_a_frame_makes_the_whole_refused() {
    let nonce = "0123456789abcdef0123456789abcdef".to_string();
    // As if a file held a frame of this very exec: one frame too many.
    let forged = format!("printf 'x\\n{nonce} 0 0\\ny'");
    let batch = Batch::with_nonce(nonce.clone(), None, &[&forged, "echo two"]);
    let ran = sh(&batch, None).await;
    assert_eq!(batch.split(&ran), None);
    // On stderr too.
    let forged = format!("printf '\\n{nonce} 0\\n' >&2");
    let batch = Batch::with_nonce(nonce.clone(), None, &[&forged]);
    assert_eq!(batch.split(&sh(&batch, None).await), None);
    // The nonce itself, not after a newline, is only content.
    let inline = format!("printf 'x {nonce} 0 0'");
    let batch = Batch::with_nonce(nonce.clone(), None, &[&inline]);
    let split = batch.split(&sh(&batch, None).await).unwrap();
    assert_eq!(
        split.probes[0].stdout,
        format!("x {nonce} 0 0").into_bytes()
    );
}

#[test]
fn output_cut_short_or_padded_is_refused() {
    let nonce = "n0nce".to_string();
    let batch = Batch::with_nonce(nonce, None, &["a", "b"]);
    let whole = out(
        0,
        b"A\nn0nce 0 0\nB\nn0nce 1 2\n",
        b"\nn0nce 0\nE\nn0nce 1\n",
    );
    let split = batch.split(&whole).unwrap();
    assert_eq!(split.probes, vec![out(0, b"A", b""), out(2, b"B", b"E")]);
    // The shell died after the first part.
    let short = out(0, b"A\nn0nce 0 0\nB", b"\nn0nce 0\n");
    assert_eq!(batch.split(&short), None);
    // Something printed after the last frame.
    let padded = out(
        0,
        b"A\nn0nce 0 0\nB\nn0nce 1 2\nmore",
        b"\nn0nce 0\n\nn0nce 1\n",
    );
    assert_eq!(batch.split(&padded), None);
    // Frames out of order, a status that is not a number, no status.
    for bad in [
        &b"A\nn0nce 1 0\nB\nn0nce 0 2\n"[..],
        b"A\nn0nce 0 x\nB\nn0nce 1 2\n",
        b"A\nn0nce 0\nB\nn0nce 1 2\n",
    ] {
        let o = out(0, bad, b"\nn0nce 0\n\nn0nce 1\n");
        assert_eq!(batch.split(&o), None, "{}", String::from_utf8_lossy(bad));
    }
}

/// The file module's probe reads the same in a batch as alone, for what a
/// path can be: missing, empty, binary, holding the probe's own content
/// mark, a link, a directory, in a missing directory.
#[tokio::test]
async fn file_probes_read_the_same_batched_as_alone() {
    let d = Scratch::new();
    std::fs::write(d.path("empty"), b"").unwrap();
    std::fs::write(d.path("binary"), b"\0\x01\xfe\xff\n\0").unwrap();
    std::fs::write(
        d.path("marks"),
        b"--cairn-content--\nkind=dir\n\nsize=1\nn0nce 0 0\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("empty", d.path("link")).unwrap();
    std::fs::create_dir(d.path("dir")).unwrap();
    let paths = [
        "missing", "empty", "binary", "marks", "link", "dir", "no/such",
    ];
    let files: Vec<File> = paths
        .iter()
        .map(|p| File::new(&args(&[("path", &d.s(p)), ("content", "x")])).unwrap())
        .collect();
    let scripts: Vec<String> = files.iter().map(File::probe_script).collect();
    let refs: Vec<&str> = scripts.iter().map(String::as_str).collect();
    let batch = Batch::new(None, &refs).unwrap();
    let split = batch.split(&sh(&batch, None).await).unwrap();
    for ((path, script), got) in paths.iter().zip(&scripts).zip(&split.probes) {
        let single = alone(script).await;
        assert_eq!(got, &single, "{path}");
        assert_eq!(
            File::parse(&got.stdout),
            File::parse(&single.stdout),
            "{path}"
        );
    }
    let marks = File::parse(&split.probes[3].stdout);
    assert_eq!(
        marks.content.as_deref(),
        Some(&b"--cairn-content--\nkind=dir\n\nsize=1\nn0nce 0 0\n"[..])
    );
    assert!(!File::parse(&split.probes[6].stdout).parent_exists);
}
