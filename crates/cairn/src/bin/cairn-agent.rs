//! `cairn-agent`: the agent alone. It links only what the agent runs
//! (modules, states, TLS, the bus client), not the rest of `cairn`, so an
//! idle agent touches few pages of its binary (README, "Agents").

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn::agent_main(std::env::args_os())
}
