//! cairn-release's integration tests: the stores (a directory, S3 on a real
//! moto server on loopback), build then verify, the host script run with
//! `sh` against temporary install paths, and the rollout with a real
//! service on this machine.

mod build;
mod dir_store;
mod host_script;
#[cfg(feature = "s3")]
mod moto;
mod rollout;
#[cfg(feature = "s3")]
mod s3_store;
mod support;
