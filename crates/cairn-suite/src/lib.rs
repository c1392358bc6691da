//! The template's `tests:`, as `cairn test` runs them against a deployment
//! it has just brought up: HTTP requests (through a load balancer or to a
//! URL), DNS answers, SQL through a database, commands on servers.
//!
//! Owns: turning an evaluated test into a [`spec::TestSpec`], the probes,
//! checking expectations with retries until a deadline (a fresh
//! deployment comes up asynchronously), results and their JUnit XML.
//!
//! Never: deploys or destroys (the CLI does, around [`run::run_all`]),
//! reads the template (it gets evaluated values), or prints.

pub mod junit;
pub mod probe;
pub mod run;
pub mod spec;

pub use run::{Context, Hosts, Planned, Selection, Tally, TestResult, TestStatus, run_all, tally};
pub use spec::{SpecError, TestSpec};
