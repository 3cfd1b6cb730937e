use std::process::ExitCode;

fn main() -> ExitCode {
    codecourier::cli::main()
}
