//! cairn-release's integration tests: one binary, a module per concept.

mod rollout;
