use std::process::ExitCode;

fn main() -> ExitCode {
    cairn::main_with(std::env::args_os())
}
