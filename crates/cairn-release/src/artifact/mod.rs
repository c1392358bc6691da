//! The artifact of one version of one app: what is in it ([`manifest`]),
//! how it is made ([`build`], [`pack`]) and signed ([`sign`]), where it is
//! kept ([`store`]), and how it is checked here ([`verify`]) and on a host
//! ([`host_script`]).

pub mod build;
pub mod host_script;
pub mod manifest;
mod name;
pub mod pack;
pub mod sign;
pub mod store;
pub mod verify;

pub use build::{BuildSpec, Built, build, default_version};
pub use manifest::{ArchiveDigest, FileEntry, Manifest};
pub use name::check_name;
pub use sign::{PublicKey, Signature, SigningKey};
pub use store::{ArtifactStore, DirStore, StoredManifest, open_store};
#[cfg(feature = "s3")]
pub use store::{S3Settings, S3Store};
