//! The `keyfront` command line.

mod dates;
mod demo;
mod emulate;
mod health;
mod invalidate;
mod keygen;
mod serve;
mod sign;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::{KeyError, PrivateKey, PublicKey};

#[derive(Parser, Debug)]
#[command(
    name = "keyfront",
    version,
    about = "A self-hosted edge for private content: CloudFront-style signed URLs and cookies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sign a URL or cookies, byte-identical to `aws cloudfront sign`.
    #[command(subcommand)]
    Sign(sign::SignCommand),
    /// Explain whether a signed URL or cookies would be accepted, and why not.
    Verify(verify::VerifyArgs),
    /// Write a new key pair in the formats CloudFront accepts.
    Keygen(keygen::KeygenArgs),
    /// Run the whole stack locally: embedded S3 origin, edge, sample files, signed URLs.
    Demo(demo::DemoArgs),
    /// CloudFront's API, the edge and an S3 bucket on loopback, for test
    /// suites: boto3, the AWS CLI and Terraform create what the edge serves.
    Emulate(emulate::EmulateArgs),
    /// Run the edge with a YAML config.
    Serve(serve::ServeArgs),
    /// Validate a config without serving; exit 2 naming the bad field.
    CheckConfig(serve::CheckConfigArgs),
    /// Run the embedded S3-compatible origin on its own.
    Origin(serve::OriginArgs),
    /// Remove paths from a running edge's cache, through its admin listener.
    Invalidate(invalidate::InvalidateArgs),
    /// Exit 0 if a running edge's admin listener says it is healthy.
    Health(health::HealthArgs),
}

/// A failure of a command, reported as one line and exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{flag}: {value:?}: {reason}")]
    BadArgument { flag: &'static str, value: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{0}")]
    Config(crate::config::ConfigError),
    #[error("{0}")]
    Store(crate::s3store::StoreError),
    #[error("{0}")]
    Start(crate::server::StartError),
    #[error("{0}")]
    Emulator(crate::emulator::EmulatorError),
}

impl CliError {
    fn bad(flag: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadArgument {
            flag,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up logging once its config (and log_level) is loaded.
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging(None);
    }
    let outcome = match cli.command {
        Command::Sign(command) => sign::run(command),
        Command::Verify(args) => verify::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Emulate(args) => emulate::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::CheckConfig(args) => serve::check_config(args),
        Command::Origin(args) => serve::origin(args),
        Command::Invalidate(args) => invalidate::run(args),
        Command::Health(args) => health::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keyfront: {error}");
            ExitCode::from(2)
        }
    }
}

/// `host:port` from an admin listener URL such as `http://127.0.0.1:9090`.
fn admin_address(url: &str) -> Result<&str, CliError> {
    url.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .ok_or_else(|| CliError::bad("--admin", url, "expected http://host:port"))
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a private key; `file://PATH` is accepted too, as the AWS CLI takes it.
fn load_private_key(path: &Path) -> Result<PrivateKey, CliError> {
    let path = strip_file_scheme(path);
    PrivateKey::from_pem(&read_text(&path)?).map_err(|source| CliError::Key { path, source })
}

fn load_public_key(path: &Path) -> Result<PublicKey, CliError> {
    let path = strip_file_scheme(path);
    PublicKey::from_pem(&read_text(&path)?).map_err(|source| CliError::Key { path, source })
}

fn strip_file_scheme(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    PathBuf::from(text.strip_prefix("file://").unwrap_or(&text))
}

/// Application logs through `tracing` to stderr, at the level `RUST_LOG`
/// names, else the config's `log_level`, else `info`.
/// pingora's, s3s's and aws-sigv4's targets stay at `info` and above
/// whatever `RUST_LOG` asks: at `debug` pingora prints whole request headers
/// (SigV4 signatures, cookies, signed query strings), and the embedded
/// origin's s3s prints the expected signature of every mismatch.
pub(crate) fn init_logging(config_level: Option<&str>) {
    let from_environment = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    // The cap never raises a quieter level the config asks for.
    let cap = match (&from_environment, config_level) {
        (None, Some(quieter @ ("error" | "warn"))) => quieter,
        _ => "info",
    };
    let filter = from_environment.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(config_level.unwrap_or("info")));
    let filter = ["pingora_proxy", "pingora_core", "pingora_http", "s3s", "s3s_fs", "aws_sigv4"]
        .into_iter()
        .fold(filter, |filter, target| {
            filter.add_directive(format!("{target}={cap}").parse().expect("a valid directive"))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
