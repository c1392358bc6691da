//! The aws provider against a real moto server on loopback: each test
//! starts its own moto on a free port and its guard stops it.

mod calls;
mod drain;
mod iam;
mod moto;
mod provider;
mod recorder;
