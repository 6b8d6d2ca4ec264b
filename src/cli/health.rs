//! `keyfront health`: asks the admin listener's `/healthz`, for container
//! health checks on images without curl.

use std::process::ExitCode;

use clap::Args;

use super::CliError;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The admin listener, e.g. http://127.0.0.1:9090.
    #[arg(long, env = "KEYFRONT_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    admin: String,
}

pub fn run(args: HealthArgs) -> Result<ExitCode, CliError> {
    let address = super::admin_address(&args.admin)?;
    let healthy = crate::plain_http::exchange(address, &format!("GET /healthz HTTP/1.1\r\nhost: {address}"), b"")
        .is_ok_and(|answer| answer.status == 200);
    println!("{}", if healthy { "healthy" } else { "unhealthy" });
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
