//! Connections kept between runs (`transport::kept`): a keeper in this
//! process, on a socket in a scratch directory, in front of real sshds;
//! each `KeptHost` stands for one run's view of a host.

use std::sync::Arc;
use std::time::Duration;

use cairn_orch::transport::kept::keeper::{self, Dialers};
use cairn_orch::transport::kept::{
    Keeper, KeptHost, Spec, kept_connections, private_dir, socket_path, stop_keeper,
};
use cairn_orch::transport::{KnownHosts, SshOptions, SshTarget, TcpDialer};
use cairn_orch::{Exec, Remote, TransportError};
use cairn_test_support::poll::wait_until;

use crate::scratch;
use crate::test_hosts::{TestHosts, connections_to, running};

fn tcp() -> Dialers {
    Arc::new(|_, _| Arc::new(TcpDialer))
}

/// A keeper serving on `dir`'s socket until stopped (or idle for
/// `empty_for`).
fn start(dir: &std::path::Path, empty_for: Duration) -> tokio::task::JoinHandle<()> {
    let bound = keeper::bind(dir).unwrap().expect("no other keeper here");
    tokio::spawn(Arc::new(Keeper::new(tcp()).ending_after(empty_for)).serve(bound))
}

// Each test's keeper directory is `keeper` inside its scratch directory:
// the scratch one is open to others, and the keeper makes its own private.

fn kept(dir: &std::path::Path, target: &SshTarget, keep_for: Duration) -> KeptHost {
    KeptHost::new(
        socket_path(dir),
        Spec::new(target, &SshOptions::default(), None),
        keep_for,
    )
}

fn logins(th: &TestHosts, name: &str) -> usize {
    th.sshd_log(name).matches("Accepted publickey").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_one_after_another_share_one_connection_and_its_shell() {
    let th = TestHosts::up("kept-share", 1, "127.0.48.1");
    let dir = scratch("kept-share").join("keeper");
    let served = start(&dir, Duration::from_secs(60));
    let addr = th.address("h1");
    // Two runs: each its own view of the host, as two processes would have.
    for run in 0..2 {
        let h = kept(&dir, &th.target("h1"), Duration::from_secs(60));
        let out = h
            .exec(Exec::new("read x; echo \"got $x\"; echo err >&2; exit 4").stdin("in\n"))
            .await
            .unwrap();
        assert_eq!(
            (out.status, out.stdout_str(), out.stderr_str()),
            (Some(4), "got in\n".into(), "err\n".into()),
            "run {run}"
        );
        // A shell relayed byte for byte, input past a channel's window.
        let mut shell = h
            .shell(None)
            .await
            .unwrap()
            .expect("a kept host has shells");
        crate::assert_cat_relays_3_mb(&mut shell).await;
        let out = shell.run(Exec::new("echo two; exit 2")).await.unwrap();
        assert_eq!((out.status, out.stdout_str()), (Some(2), "two\n".into()));
        shell.close().await;
        let out = h.exec(Exec::new("kill -9 $$")).await.unwrap();
        assert_eq!(out.status, None, "a signal has no status");
    }
    assert_eq!(logins(&th, "h1"), 1, "sshd log:\n{}", th.sshd_log("h1"));
    assert_eq!(connections_to(&addr), 1);
    let list = kept_connections(&socket_path(&dir)).await.unwrap().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (list[0].name.as_str(), list[0].opened, list[0].requests),
        ("h1", 1, 6)
    );
    assert!(list[0].connected && list[0].in_use == 0, "{list:?}");

    assert!(stop_keeper(&socket_path(&dir)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
    assert!(!socket_path(&dir).exists());
    wait_until(
        "the kept connection closes",
        Duration::from_secs(10),
        || connections_to(&addr) == 0,
    );
    assert_eq!(kept_connections(&socket_path(&dir)).await.unwrap(), None);
    assert!(!stop_keeper(&socket_path(&dir)).await.unwrap());
}

/// A run that describes the host otherwise (here: another recorded host
/// key) is judged by what it says, on a connection of its own: a kept
/// connection is never a way around a host key check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_other_host_keys_gets_its_own_connection_and_its_own_verdict() {
    let th = TestHosts::up("kept-keys", 2, "127.0.48.11");
    let dir = scratch("kept-keys").join("keeper");
    let served = start(&dir, Duration::from_secs(60));
    let good = kept(&dir, &th.target("h1"), Duration::from_secs(60));
    assert!(good.exec(Exec::new("true")).await.unwrap().success());
    let wrong = th
        .target("h1")
        .known_hosts(Arc::new(KnownHosts::new()))
        .host_key(Some(th.host_key("h2")));
    let err = kept(&dir, &wrong, Duration::from_secs(60))
        .exec(Exec::new("true"))
        .await
        .unwrap_err();
    match &err {
        TransportError::HostKeyMismatch { expected_from, .. } => {
            assert_eq!(expected_from, "the deployment's record")
        }
        e => panic!("not a mismatch: {e}"),
    }
    // A known_hosts line that says otherwise, likewise, naming its line.
    let mut lines = KnownHosts::new();
    lines.add(
        &format!("{} {}\n", th.address("h1"), th.host_key("h2")),
        "other_known_hosts",
    );
    let other = th.target("h1").known_hosts(Arc::new(lines));
    let err = kept(&dir, &other, Duration::from_secs(60))
        .exec(Exec::new("true"))
        .await
        .unwrap_err();
    match &err {
        TransportError::HostKeyMismatch { expected_from, .. } => {
            assert_eq!(expected_from, "known_hosts other_known_hosts:1")
        }
        e => panic!("not a mismatch: {e}"),
    }
    let list = kept_connections(&socket_path(&dir)).await.unwrap().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list.iter().filter(|c| c.connected).count(), 1, "{list:?}");
    assert_eq!(logins(&th, "h1"), 1);
    assert!(stop_keeper(&socket_path(&dir)).await.unwrap());
    served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_their_time_and_an_empty_keeper_ends() {
    let th = TestHosts::up("kept-idle", 1, "127.0.48.21");
    let dir = scratch("kept-idle").join("keeper");
    let served = start(&dir, Duration::from_millis(500));
    let addr = th.address("h1");
    let h = kept(&dir, &th.target("h1"), Duration::from_millis(300));
    // A command running past the connection's idle time keeps it: in use
    // is not idle.
    let out = h.exec(Exec::new("sleep 1; echo done")).await.unwrap();
    assert_eq!(out.stdout_str(), "done\n");
    assert_eq!(connections_to(&addr), 1);
    wait_until(
        "the idle connection closes",
        Duration::from_secs(10),
        || connections_to(&addr) == 0,
    );
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("an empty keeper ends")
        .unwrap();
    assert!(!socket_path(&dir).exists());
    // Without a keeper, a kept host says so.
    let err = h.exec(Exec::new("true")).await.unwrap_err();
    match &err {
        TransportError::Dropped { reason, .. } => {
            assert!(reason.contains("the connection keeper"), "{reason}")
        }
        e => panic!("not dropped: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_time_or_left_by_its_run_ends_and_the_connection_stays() {
    let th = TestHosts::up("kept-time", 1, "127.0.48.31");
    let dir = scratch("kept-time").join("keeper");
    let served = start(&dir, Duration::from_secs(60));
    let h = Arc::new(kept(&dir, &th.target("h1"), Duration::from_secs(60)));
    let mut late = Exec::new("sleep 30");
    late.timeout = Some(Duration::from_millis(300));
    let err = h.exec(late).await.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err}"
    );
    // Runs that go away mid-command: the keeper stops waiting for them,
    // their commands are killed with all they started (as at a timeout),
    // and the connection serves the next.
    let marker = "sleep 29.77";
    let socket = socket_path(&dir);
    for _ in 0..3 {
        let gone = {
            let h = h.clone();
            tokio::spawn(async move { h.exec(Exec::new(marker)).await })
        };
        let mut in_use = 0;
        for _ in 0..250 {
            in_use = kept_connections(&socket).await.unwrap().unwrap()[0].in_use;
            if in_use == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(in_use, 1);
        wait_until("the command runs", Duration::from_secs(10), || {
            running(marker)
        });
        gone.abort();
        let mut in_use = 1;
        for _ in 0..250 {
            in_use = kept_connections(&socket).await.unwrap().unwrap()[0].in_use;
            if in_use == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            in_use, 0,
            "the abandoned command still holds the connection"
        );
        wait_until(
            "the abandoned command is killed",
            Duration::from_secs(10),
            || !running(marker),
        );
    }
    let out = h.exec(Exec::new("echo still")).await.unwrap();
    assert_eq!(out.stdout_str(), "still\n");
    assert_eq!(logins(&th, "h1"), 1);
    assert!(stop_keeper(&socket).await.unwrap());
    served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keeper_per_directory_a_dead_ones_socket_is_replaced_and_an_open_directory_refused() {
    let dir = scratch("kept-dir").join("keeper");
    let first = keeper::bind(&dir).unwrap().expect("the first keeper binds");
    assert!(
        keeper::bind(&dir).unwrap().is_none(),
        "a second stands aside"
    );
    // Dies without cleaning up: its socket stays, its lock goes.
    drop(first);
    assert!(socket_path(&dir).exists());
    let served = start(&dir, Duration::from_secs(60));
    assert_eq!(
        kept_connections(&socket_path(&dir)).await.unwrap(),
        Some(vec![])
    );
    assert!(stop_keeper(&socket_path(&dir)).await.unwrap());
    served.await.unwrap();

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = private_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("mode 755") && err.contains("chmod 700"),
        "{err}"
    );
    assert!(keeper::bind(&dir).is_err());
    let fresh = dir.join("made");
    private_dir(&fresh).unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
