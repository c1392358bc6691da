//! cairn's releases, artifact side: an application built once into a
//! versioned tar.zst with a manifest of sha256 sums, the manifest signed with
//! ed25519, kept in an artifact store (a directory or an S3 bucket) where a
//! version never changes, and verified again wherever it is installed (here,
//! and on each host by a generated POSIX sh script).
//!
//! This crate owns the artifact format and its checks. It must never decide
//! where the signing key lives (the caller seals it like other secrets), talk
//! to hosts (the caller runs [`artifact::host_script`]'s script through its
//! transport), or print: output of a build reaches the caller line by line.

pub mod artifact;
mod error;

pub use error::{ReleaseError, Result, VerifyError};
