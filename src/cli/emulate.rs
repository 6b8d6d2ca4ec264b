//! `keyfront emulate`: CloudFront's control plane and data plane and an S3
//! bucket on loopback, for a test suite; prints the environment the test
//! needs and serves until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::emulator::{Emulator, EmulatorOptions};

#[derive(Args)]
pub struct EmulateArgs {
    /// Where the bucket and the control plane's state live, kept across
    /// runs (default: a fresh directory, removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The edge, serving what the API creates.
    #[arg(long, default_value = "127.0.0.1:8580")]
    listen: SocketAddr,
    /// The embedded S3 API (AWS_ENDPOINT_URL_S3).
    #[arg(long, default_value = "127.0.0.1:9580")]
    s3_listen: SocketAddr,
    /// CloudFront's API (AWS_ENDPOINT_URL_CLOUDFRONT).
    #[arg(long, default_value = "127.0.0.1:9581")]
    control_listen: SocketAddr,
    /// The admin listener (health, metrics), if wanted.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// An HTTPS edge too (port 0: a free one), with a certificate made at
    /// start (KEYFRONT_CA_BUNDLE); behaviors' ViewerProtocolPolicy applies.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// The bucket the credentials open.
    #[arg(long, default_value = "media")]
    bucket: String,
    /// The access key of both APIs (default: random).
    #[arg(long, env = "KEYFRONT_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// Its secret (default: random).
    #[arg(long, env = "KEYFRONT_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
    /// Accept every CloudFront API request, signed or not.
    #[arg(long)]
    accept_any_credentials: bool,
    /// Seconds reads say `InProgress` after a change, as CloudFront's
    /// propagation does (0: `Deployed` at once).
    #[arg(long, default_value_t = 0)]
    deploy_delay: u64,
}

impl std::fmt::Debug for EmulateArgs {
    /// As the options it makes: the secret left out.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "EmulateArgs({:?})", self.options())
    }
}

impl EmulateArgs {
    fn options(&self) -> EmulatorOptions {
        EmulatorOptions {
            dir: self.dir.clone(),
            edge: self.listen,
            s3: self.s3_listen,
            control: self.control_listen,
            admin: self.admin_listen,
            bucket: self.bucket.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            accept_any_credentials: self.accept_any_credentials,
            deploy_delay: std::time::Duration::from_secs(self.deploy_delay),
            tls: self.tls_listen,
            ..EmulatorOptions::default()
        }
    }
}

pub fn run(args: EmulateArgs) -> Result<ExitCode, CliError> {
    super::init_logging(Some("warn"));
    let options = args.options();
    let emulator = Emulator::start(options).map_err(CliError::Emulator)?;
    for (name, value) in emulator.environment() {
        println!("export {name}={value}");
    }
    println!(
        "# keyfront emulate: CloudFront API on {}, S3 on {}, edge on {}; each distribution's DomainName is reachable as is. Ctrl-C stops it.",
        emulator.control, emulator.s3, emulator.edge
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            path: emulator.dir.clone(),
            source,
        })?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
    });
    drop(emulator);
    Ok(ExitCode::SUCCESS)
}
