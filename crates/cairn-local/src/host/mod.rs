//! Local servers as small Linux hosts: the building blocks. An image (a
//! root filesystem built once, or the machine's own `/`), the cloud's
//! network namespace with a bridge per network and a veth per server, the
//! kernel firewall (nftables) of that namespace, the OCI runtime (`runc`)
//! that runs a server on an overlay of the image and its own layer, and the
//! server's SSH host key.
//!
//! Everything here spawns the distribution's tools (`runc`, `ip`, `nft`,
//! `mount`, `mmdebstrap`) rather than making namespaces by hand: a
//! well-kept runtime does that part. Needs root.
//!
//! The cloud uses them for a cloud made with `runc` isolation (see
//! `cloud::hosts`); a `process` cloud (the default) runs its servers with
//! `supervisor`.
//!
//! Never: sends traffic anywhere but into namespaces it made itself; leaves
//! a route for a cloud CIDR that points off the machine.

pub mod command;
pub mod dial;
pub mod error;
pub mod firewall;
pub mod image;
pub mod nat;
pub mod network;
pub mod runtime;
pub mod ssh;

#[cfg(test)]
mod public_tests;
#[cfg(test)]
mod tests;

pub use error::HostError;

/// The tools a host needs, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("runc", "runc"),
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("mount", "mount"),
    ("umount", "mount"),
];

/// Checks that cairn can run local servers as hosts here: root, and the
/// runtime and network tools on PATH. The error says what is missing and
/// how to install it.
pub fn preflight() -> Result<(), HostError> {
    check_ready(is_root(), |tool| command::find_program(tool).is_some())
}

/// [`preflight`] for a given uid-0-ness and tool lookup.
fn check_ready(root: bool, has: impl Fn(&str) -> bool) -> Result<(), HostError> {
    let mut missing = Vec::new();
    if !root {
        missing
            .push("root (local servers as hosts need namespaces, mounts and routes)".to_string());
    }
    let mut packages = Vec::new();
    for (tool, package) in TOOLS {
        if !has(tool) {
            missing.push(format!("`{tool}`"));
            if !packages.contains(package) {
                packages.push(*package);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(HostError::Missing {
        what: missing,
        packages: packages.iter().map(|p| p.to_string()).collect(),
    })
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod preflight_tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = HostError::Missing {
            what: vec!["`runc`".into(), "`nft`".into()],
            packages: vec!["runc".into(), "nftables".into()],
        };
        assert_eq!(
            err.to_string(),
            "local servers as hosts need `runc`, `nft`; install with \
             `apt-get install runc nftables` or ./scripts/install-deps"
        );
    }

    #[test]
    fn not_root_and_missing_tools_are_all_named() {
        let err = check_ready(false, |t| t != "runc" && t != "nft").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("root (local servers as hosts need"), "{text}");
        assert!(text.contains("`runc`, `nft`"), "{text}");
        assert!(text.contains("apt-get install runc nftables"), "{text}");
        let err = check_ready(false, |_| true).unwrap_err().to_string();
        assert!(!err.contains("apt-get"), "nothing to install: {err}");
        assert!(check_ready(true, |_| true).is_ok());
    }
}
