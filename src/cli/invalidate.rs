//! `keyfront invalidate`: asks a running edge's admin listener to forget paths.

use std::process::ExitCode;

use clap::Args;

use super::CliError;

#[derive(Args, Debug)]
pub struct InvalidateArgs {
    /// The admin listener, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    admin: String,
    /// The admin_token of the edge's config.
    #[arg(long, env = "KEYFRONT_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Viewer paths; `*` may end a path (`/videos/*`).
    #[arg(required = true)]
    paths: Vec<String>,
}

pub fn run(args: InvalidateArgs) -> Result<ExitCode, CliError> {
    let address = super::admin_address(&args.admin)?;
    let body = serde_json::json!({ "paths": args.paths }).to_string();
    let head = format!(
        "POST /invalidations HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\nauthorization: Bearer {}",
        args.token
    );
    let answer = crate::plain_http::exchange(address, &head, body.as_bytes()).map_err(|source| CliError::Io {
        path: args.admin.clone().into(),
        source,
    })?;
    println!("{} {}", answer.status, String::from_utf8_lossy(&answer.body));
    Ok(if answer.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
