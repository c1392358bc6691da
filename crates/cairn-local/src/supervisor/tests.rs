use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;

fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cairn-sup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec(name: &str, user_data: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        address: Ipv4Addr::new(127, 0, 0, 1),
        sandbox: sandbox(name),
        user_data: user_data.into(),
        path: vec![],
    }
}

/// A supervisor that has started server `name` from `user_data`, and the
/// server's sandbox.
fn supervising(name: &str, user_data: &str) -> (Supervisor, std::path::PathBuf) {
    let sup = Supervisor::new();
    let s = spec(name, user_data);
    let dir = s.sandbox.clone();
    sup.start(s).unwrap();
    (sup, dir)
}

/// `supervising`, once the server has stayed up for 200 ms.
async fn running(name: &str, user_data: &str) -> (Supervisor, std::path::PathBuf) {
    let (sup, dir) = supervising(name, user_data);
    sup.wait_ready(name, Duration::from_millis(200), Duration::from_secs(5))
        .await
        .unwrap();
    (sup, dir)
}

/// Running, not a zombie: an orphan killed here is reparented to PID 1,
/// which in a container may never reap it.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_the_event_recorded() {
    let (sup, dir) = running(
        "restart",
        "#!/bin/sh\necho \"up on $CAIRN_ADDRESS\"\nexec sleep 30\n",
    )
    .await;
    let first = sup.status()[0].pid.unwrap();
    nix::sys::signal::kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let mut back = None;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let st = &sup.status()[0];
        if st.state == State::Running && st.pid.is_some_and(|p| p != first) {
            back = st.pid;
            break;
        }
    }
    let second = back.expect("restarted within 5 s");
    let st = sup.status()[0].clone();
    assert_eq!(st.restarts, 1);
    assert!(
        st.events.iter().any(|e| matches!(
            e,
            Event::Exited {
                signal: Some(9),
                ..
            }
        )),
        "{:?}",
        st.events
    );
    assert!(
        std::fs::read_to_string(log_path(&dir))
            .unwrap()
            .contains("up on 127.0.0.1")
    );
    sup.stop("restart", Duration::from_secs(2)).await.unwrap();
    assert!(!alive(second));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_init_that_exits_at_once_is_not_ready_and_its_log_is_shown() {
    let (sup, dir) = supervising("quits", "echo 'missing config file' >&2\nexit 3\n");
    let err = sup
        .wait_ready("quits", Duration::from_millis(300), Duration::from_secs(5))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("missing config file"), "{text}");
    sup.stop("quits", Duration::from_secs(1)).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn stop_takes_down_the_whole_process_group() {
    let (sup, dir) = running("group", "sleep 30 &\necho $! > child.pid\nexec sleep 30\n").await;
    let init = sup.status()[0].pid.unwrap();
    let child: u32 = std::fs::read_to_string(dir.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));
    sup.stop("group", Duration::from_secs(2)).await.unwrap();
    // Give the kernel a moment to reap.
    for _ in 0..50 {
        if !alive(init) && !alive(child) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(init) && !alive(child),
        "a process of the server survived its stop"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn cloud_config_writes_files_and_runs_commands() {
    let (sup, dir) = running("cloud", "#cloud-config\nwrite_files:\n  - path: /etc/app.conf\n    content: \"port=8080\\n\"\n    permissions: '0600'\nruncmd:\n  - echo configured > done.txt\n  - [sh, -c, 'exec sleep 30']\n").await;
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/app.conf")).unwrap(),
        "port=8080\n"
    );
    let mode = std::fs::metadata(dir.join("etc/app.conf"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("done.txt")).unwrap(),
        "configured\n"
    );
    sup.stop("cloud", Duration::from_secs(2)).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn write_files_cannot_leave_the_sandbox() {
    let d = sandbox("escape");
    let err = prepare(
        &d,
        "#cloud-config\nwrite_files:\n  - path: ../../etc/passwd\n    content: x\n",
    )
    .unwrap_err();
    assert!(err.contains("leaves the sandbox"), "{err}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_millis(100));
    assert_eq!(backoff(2), Duration::from_millis(200));
    assert_eq!(backoff(30), Duration::from_secs(5));
}

use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn an_init_that_cannot_start_is_not_ready_and_says_why() {
    let (sup, dir) = supervising("noexec", "#!/nonexistent/interpreter\nsleep 30\n");
    let err = sup
        .wait_ready("noexec", Duration::from_millis(100), Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot start") && err.contains("No such file"),
        "{err}"
    );
    sup.stop_all(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(dir);
}
