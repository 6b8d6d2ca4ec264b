use std::process::ExitCode;

fn main() -> ExitCode {
    keyfront::cli::run()
}
