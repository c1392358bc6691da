//! Errors of the host building blocks. A failed tool names the command line
//! and what it printed on stderr, so the message says what the kernel or
//! the runtime refused.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// What can go wrong making or running a local host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Root or a tool is missing on this machine.
    #[error(
        "local servers as hosts need {}{}",
        .what.join(", "),
        install_hint(.packages)
    )]
    Missing {
        /// What is missing, in words.
        what: Vec<String>,
        /// Debian packages that provide the missing tools.
        packages: Vec<String>,
    },

    /// A tool could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },

    /// A tool ran and failed.
    #[error("`{command}` failed ({status}): {}", stderr_or_nothing(.stderr))]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, in words.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },

    /// A tool's output was not what it documents.
    #[error("could not understand the output of `{command}`: {reason}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An image name that cairn does not know.
    #[error("unknown image `{name}`: the known images are {}", .known.join(", "))]
    UnknownImage {
        /// The name asked for.
        name: String,
        /// The names cairn knows.
        known: Vec<String>,
    },

    /// A CIDR that overlaps a route of the machine.
    #[error(
        "{what} {cidr} overlaps the machine's route `{route}`: traffic for it would not stay \
         on this machine; choose another block"
    )]
    CidrOverlap {
        /// What the block is for ("network", "the host link").
        what: String,
        /// The block asked for.
        cidr: Ipv4Net,
        /// The machine's route it overlaps, as `ip route` prints it.
        route: String,
    },

    /// A CIDR that overlaps a block another local network holds (of this
    /// cloud or another one on the machine).
    #[error(
        "{what} {cidr} overlaps `{route}`, a block another network of a local cloud holds (this \
         cloud's or another's): with servers as hosts (`runc` isolation) a block is routed to one \
         network on a machine, as with Docker's networks; give this network another block (for \
         example a parameter per environment), or deploy it in a cloud whose servers are \
         processes (CAIRN_LOCAL_ISOLATION=process with a CAIRN_LOCAL_DIR of its own)"
    )]
    CidrHeld {
        /// What the block is for.
        what: String,
        /// The block asked for.
        cidr: Ipv4Net,
        /// The route that holds it, as `ip route` prints it.
        route: String,
    },

    /// No free link network for the host <-> cloud link.
    #[error("no free 169.254.x.0/24 block for the host link of cloud `{cloud}`")]
    NoLinkNet {
        /// The cloud's id.
        cloud: String,
    },

    /// No free block for a cloud's public addresses.
    #[error(
        "no free /24 in 198.18.0.0/15 for the public addresses of cloud `{cloud}`: every one \
         overlaps a route of the machine (see `ip route`)"
    )]
    NoPublicBlock {
        /// The cloud's id.
        cloud: String,
    },

    /// A server's address that does not fit its network.
    #[error(
        "address {address} is not a usable host address of {subnet} (the gateway is {gateway})"
    )]
    AddressOutsideSubnet {
        /// The address asked for.
        address: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Net,
        /// The subnet's gateway, which no server may take.
        gateway: Ipv4Addr,
    },

    /// A name that cannot be used for a kernel object or a path.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What the name is for.
        what: &'static str,
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },

    /// A path that cannot go into an overlay mount's options.
    #[error("path {} cannot be used in an overlay mount: {reason}", .path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// An SSH key could not be made or read.
    #[error("ssh key: {0}")]
    Key(String),

    /// A server's container did not start.
    #[error("server `{id}` did not start: {reason}")]
    NotStarted {
        /// The container id.
        id: String,
        /// runc's words, from the console log.
        reason: String,
    },
}

impl HostError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> HostError {
        HostError::Io {
            context: context.into(),
            source,
        }
    }
}

fn install_hint(packages: &[String]) -> String {
    if packages.is_empty() {
        String::new()
    } else {
        format!(
            "; install with `apt-get install {}` or ./scripts/install-deps",
            packages.join(" ")
        )
    }
}

fn stderr_or_nothing(stderr: &str) -> &str {
    if stderr.is_empty() {
        "no message on stderr"
    } else {
        stderr
    }
}
