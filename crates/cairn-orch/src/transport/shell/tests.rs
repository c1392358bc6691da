use std::time::Duration;

use crate::remote::{Exec, Output, Remote, TransportError};
use crate::transport::local::LocalHost;

async fn shell() -> super::Shell {
    LocalHost::new("local")
        .shell(None)
        .await
        .unwrap()
        .expect("this machine keeps a shell")
}

/// What the scripts print, alone and in one shell in turn, is the same
/// byte for byte, with the same status; none sees what one before it set.
#[tokio::test]
async fn scripts_in_turn_read_as_alone() {
    let scripts = [
        "printf 'a\\nb'",
        ":",
        "printf '\\000\\001\\n\\377'",
        "echo out; echo err >&2; exit 3",
        "set -e; false; echo never",
        "x=1; cd /; exit 4",
        "echo \"${x-unset} $(pwd)\"",
        "printf '\\n\\n'; printf 'e\\n\\n' >&2",
        "cat; echo read",
        "if",
        "trap 'echo bye' EXIT; echo hi",
    ];
    let mut sh = shell().await;
    let here = LocalHost::new("local");
    for script in scripts {
        let got = sh.run(Exec::new(script)).await.unwrap();
        let alone = here.exec(Exec::new(script)).await.unwrap();
        if script == "if" {
            // dash names `eval` in a syntax error; the status is the same.
            assert_eq!(got.status, alone.status);
            assert!(got.stderr_str().contains("eval: Syntax error"), "{got:?}");
            continue;
        }
        assert_eq!(got, alone, "{script}");
    }
    sh.close().await;
}

#[tokio::test]
async fn input_comes_byte_exact_and_only_to_its_script() {
    let mut sh = shell().await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = sh.run(Exec::new("cat").stdin(big.clone())).await.unwrap();
    assert!(
        out.success() && out.stdout == big,
        "{} bytes",
        out.stdout.len()
    );
    // Not read: the next script is not fed it as commands.
    let out = sh
        .run(Exec::new("echo skipped").stdin(vec![b'x'; 200_000]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "skipped\n");
    let out = sh
        .run(Exec::new("head -c 3").stdin("abcdef"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "abc");
    // Without input, an empty stdin; the shell's variables unseen.
    let out = sh
        .run(Exec::new("wc -c; echo \"${N-unset} ${T-unset}\""))
        .await
        .unwrap();
    assert_eq!(
        out.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["0", "unset", "unset"]
    );
    // A frame of another nonce is only output.
    let forged = "printf '\\n0123456789abcdef0123456789abcdef end 0\\n'";
    let out = sh.run(Exec::new(forged)).await.unwrap();
    assert_eq!(
        out,
        Output {
            status: Some(0),
            stdout: b"\n0123456789abcdef0123456789abcdef end 0\n".to_vec(),
            stderr: vec![],
        }
    );
    sh.close().await;
}

/// A script past its time, or one that ends the shell itself, breaks the
/// shell: that script fails as an exec would, and every later one at once.
#[tokio::test]
async fn a_broken_shell_fails_its_script_and_every_later_one() {
    let mut sh = shell().await;
    let mut late = Exec::new("sleep 30");
    late.timeout = Some(Duration::from_millis(200));
    let err = sh.run(late).await.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err}"
    );
    let err = sh.run(Exec::new("true")).await.unwrap_err();
    assert!(matches!(err, TransportError::Other { .. }), "{err}");

    let mut sh = shell().await;
    let err = sh.run(Exec::new("kill -9 $$")).await.unwrap_err();
    assert!(matches!(err, TransportError::Dropped { .. }), "{err}");
    assert!(!sh.fits(&Exec::new("true")));

    // Another user's script is not this shell's to run.
    let mut sh = shell().await;
    let other = Exec::new("true").become_user(Some("nobody".into()));
    assert!(!sh.fits(&other));
    assert!(sh.run(other).await.is_err());
    sh.close().await;
}
