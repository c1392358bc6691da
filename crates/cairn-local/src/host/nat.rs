//! The outside for networks with `internet: true`: slirp4netns, the
//! user-mode network stack rootless podman uses, gives the cloud namespace
//! a tap device and a default route; what leaves through it is carried by
//! ordinary sockets of the slirp4netns process on the machine.
//!
//! Why not routing and masquerading on the machine, as Docker does: that
//! needs forwarding on the machine's own uplink (`ip_forward` is off on
//! these machines) and rules in its firewall, changes that outlive a
//! crashed daemon and touch every other workload. slirp4netns touches
//! nothing of the machine: the servers' traffic is masqueraded inside the
//! cloud namespace onto the tap's address (see `firewall`: only networks
//! with `internet: true` may leave through it), and slirp4netns exits when
//! the daemon does (its `--exit-fd` is a pipe the daemon holds), so a
//! stopped or killed daemon leaves no way out. `--disable-host-loopback`
//! keeps the machine's 127.0.0.1 services out of the servers' reach.
//!
//! The tap's block, [`CIDR`], is taken from the shared address space
//! (RFC 6598): a network overlapping it is refused.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::command::find_program;
use super::error::HostError;

/// The tap device's block inside the cloud namespace; its `.2` is the way
/// out, `.3` slirp4netns's DNS forwarder, `.100` the namespace's address.
pub const CIDR: &str = "100.127.255.0/24";

/// The tap device's name inside the cloud namespace.
pub const DEVICE: &str = "tap0";

/// How long slirp4netns may take to bring the tap up.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The tap's block, parsed.
pub fn cidr() -> Ipv4Net {
    CIDR.parse().expect("a valid block")
}

/// Refuses a network block that overlaps [`CIDR`].
pub fn check_free(network: Ipv4Net) -> Result<(), String> {
    let nat = cidr();
    if network.contains(&nat.network()) || nat.contains(&network.network()) {
        return Err(format!(
            "network {network} overlaps {CIDR}, which the local cloud keeps for its way to the \
             internet; choose another block"
        ));
    }
    Ok(())
}

/// A running slirp4netns for one cloud namespace. Dropping it kills it.
pub struct Nat {
    child: Child,
}

impl Nat {
    /// Starts slirp4netns for the namespace at `netns_path` and returns once
    /// the tap is up with its default route.
    pub async fn start(netns_path: &Path) -> Result<Nat, HostError> {
        let program = find_program("slirp4netns").ok_or_else(|| HostError::Missing {
            what: vec!["`slirp4netns` (for networks with `internet: true`)".into()],
            packages: vec!["slirp4netns".into()],
        })?;
        let mut cmd = Command::new(&program);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            &format!("--cidr={CIDR}"),
            "--netns-type=path",
            // Exits when its stdin, a pipe the daemon holds, closes.
            "--exit-fd=0",
            // Writes "1" on its stdout once the tap is configured.
            "--ready-fd=1",
        ])
        .arg(netns_path)
        .arg(DEVICE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let command = format!(
            "{} ... {} {DEVICE}",
            program.display(),
            netns_path.display()
        );
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            command: command.clone(),
            source,
        })?;
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut ready = [0u8; 1];
        let outcome = tokio::time::timeout(READY_WITHIN, stdout.read(&mut ready)).await;
        if matches!(outcome, Ok(Ok(1))) && ready[0] == b'1' {
            // Its chatter on stderr is of no further use; a full pipe must
            // never block it.
            if let Some(mut err) = child.stderr.take() {
                tokio::spawn(async move {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut err, &mut sink).await;
                });
            }
            return Ok(Nat { child });
        }
        let _ = child.start_kill();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), err.read_to_string(&mut stderr)).await;
        }
        let _ = child.wait().await;
        Err(HostError::Command {
            command,
            status: match outcome {
                Err(_) => format!("not ready within {READY_WITHIN:?}"),
                Ok(_) => "exited before it was ready".to_string(),
            },
            stderr: stderr.trim().to_string(),
        })
    }

    /// Stops it: closes its exit pipe, then kills it if it lingers.
    pub async fn stop(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Its pid, for status and tests.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_overlapping_the_nat_block_is_refused() {
        for bad in ["100.127.255.0/24", "100.64.0.0/10", "100.127.255.128/25"] {
            let err = check_free(bad.parse().unwrap()).unwrap_err();
            assert!(err.contains("keeps for its way to the internet"), "{err}");
        }
        for good in ["10.20.0.0/16", "100.127.254.0/24", "100.128.0.0/16"] {
            assert!(check_free(good.parse().unwrap()).is_ok(), "{good}");
        }
    }
}
