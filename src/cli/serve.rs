//! `keyfront serve`, `keyfront check-config` and `keyfront origin`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::config::Config;
use crate::edge::EdgeState;
use crate::routing::FileTable;
use crate::s3store::{self, BucketAccess, PortSharing};
use crate::server::{ServerMode, build_server, compose, ensure_free};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The YAML configuration (see config/keyfront.yaml).
    #[arg(long)]
    config: PathBuf,
    /// Worker threads for the viewer listeners.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
    threads: usize,
    /// Take the listening sockets over from a running `keyfront serve` with
    /// the same listeners: start this, then send the old process SIGQUIT
    /// within five seconds. It hands its sockets over on `upgrade_socket`
    /// and finishes its in-flight responses (`drain_timeout`) before exiting.
    #[arg(long)]
    upgrade: bool,
}

#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args, Debug)]
pub struct OriginArgs {
    /// The directory holding one sub-directory per bucket.
    #[arg(long)]
    root: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// A bucket and the only key that opens it: NAME=ACCESS_KEY_ID:SECRET; repeatable.
    #[arg(long = "bucket", value_name = "NAME=ACCESS_KEY_ID:SECRET", required = true)]
    buckets: Vec<String>,
    /// A bucket whose objects anyone may GET and HEAD unsigned, as S3's
    /// public-read (for clients that cannot sign); repeatable.
    #[arg(long = "public-read", value_name = "NAME")]
    public_read: Vec<String>,
}

/// The config at `path`, validated and, to find what only compiling shows
/// (a key that does not parse), compiled once.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let config = Config::load(path).map_err(CliError::Config)?;
    FileTable::compile(&config).map_err(CliError::Config)?;
    Ok(config)
}

/// Starts the embedded stores the config names.
fn start_embedded_stores(config: &Config) -> Result<(), CliError> {
    for store in &config.embedded_stores {
        let access = BucketAccess {
            bucket: store.bucket.clone(),
            access_key_id: store.access_key_id.clone(),
            secret_access_key: store.secret_access_key.expose().to_owned(),
            public_read: false,
            creates_buckets: false,
        };
        let bound = s3store::spawn(store.root.clone(), store.listen, PortSharing::ForUpgrades, vec![access]).map_err(CliError::Store)?;
        tracing::info!(address = %bound, root = %store.root.display(), "embedded origin listening");
    }
    Ok(())
}

/// Opens the cache and runs the edge until a signal stops it. With
/// `upgrade`, the listening sockets come from the process being replaced.
pub fn run_edge(config: Config, threads: usize, upgrade: bool) -> Result<ExitCode, CliError> {
    disable_transparent_huge_pages();
    let (state, listeners) = compose(config).map_err(CliError::Start)?;
    handle_signals(state.clone());
    for address in &listeners.viewer {
        tracing::info!(%address, "edge listening");
    }
    if let Some(address) = listeners.admin {
        tracing::info!(%address, "admin listening");
    }
    for tls in &listeners.tls {
        tracing::info!(address = %tls.address, "edge listening with TLS (HTTP/2 and HTTP/1.1)");
    }
    build_server(state, &listeners, ServerMode::serving(threads, upgrade))
        .map_err(CliError::Start)?
        .run_forever()
}

/// Keeps the allocator's memory in 4 KiB pages. mimalloc asks for
/// transparent huge pages where the kernel offers them (`madvise` mode
/// included), and a 2 MiB page stays resident while any byte of it is in
/// use: under 200 streaming viewers 250-320 MiB of keyfront's RSS was in
/// huge pages, about the memory tier's budget again (bench/RESULTS.md,
/// "Memory"). Not a secret or a correctness matter, so a failure is ignored.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

pub fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    let config = load_config(&args.config);
    super::init_logging(config.as_ref().ok().and_then(|c| c.log_level.as_deref()));
    let config = config?;
    if !args.upgrade {
        ensure_free(config.embedded_stores.iter().map(|store| store.listen)).map_err(CliError::Start)?;
    }
    start_embedded_stores(&config)?;
    run_edge(config, args.threads, args.upgrade)
}

pub fn check_config(args: CheckConfigArgs) -> Result<ExitCode, CliError> {
    let config = load_config(&args.config)?;
    println!(
        "{}: ok ({} behaviors, {} listeners)",
        args.config.display(),
        config.behaviors.len(),
        config.listen.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn origin(args: OriginArgs) -> Result<ExitCode, CliError> {
    let mut buckets = Vec::new();
    for spec in &args.buckets {
        let parsed = spec
            .split_once('=')
            .and_then(|(name, keys)| keys.split_once(':').map(|(id, secret)| (name, id, secret)));
        let Some((bucket, access_key_id, secret_access_key)) = parsed else {
            return Err(CliError::bad("--bucket", spec, "expected NAME=ACCESS_KEY_ID:SECRET"));
        };
        buckets.push(BucketAccess {
            bucket: bucket.to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            public_read: args.public_read.iter().any(|name| name == bucket),
            creates_buckets: false,
        });
    }
    if let Some(unknown) = args.public_read.iter().find(|name| !buckets.iter().any(|b| &b.bucket == *name)) {
        return Err(CliError::bad("--public-read", unknown, "names no --bucket"));
    }
    let service = s3store::service(args.root.clone(), &buckets).map_err(CliError::Store)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| CliError::Io {
        path: args.root.clone(),
        source,
    })?;
    runtime.block_on(async {
        let (listener, bound) = s3store::bind(args.listen, PortSharing::Exclusive).map_err(CliError::Store)?;
        println!(
            "embedded S3 origin on http://{bound}, buckets under {}; Ctrl-C stops it",
            args.root.display()
        );
        tokio::select! {
            () = s3store::serve(listener, service) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// On a thread of its own (pingora's threads handle SIGTERM and SIGQUIT):
/// reloads the config on every SIGHUP, which would otherwise end the
/// process, ends it at once on SIGINT, and catches SIGXFSZ, which would end it at the first disk
/// write past a file-size limit (`ulimit -f`): caught, that write fails with
/// `EFBIG` instead and the disk tier reports itself degraded.
fn handle_signals(state: std::sync::Arc<EdgeState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (registered, handlers_ready) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            tracing::error!("SIGHUP reloads are off: no runtime for the signal handler");
            return;
        };
        runtime.block_on(async move {
            // tokio's handler stays installed for the life of the process.
            if let Err(error) = signal(SignalKind::from_raw(libc::SIGXFSZ)) {
                tracing::error!(%error, "SIGXFSZ is not caught: a file-size limit would end the process");
            }
            let hangups = signal(SignalKind::hangup());
            let interrupts = signal(SignalKind::interrupt());
            drop(registered);
            let (mut hangups, mut interrupts) = match (hangups, interrupts) {
                (Ok(hangups), Ok(interrupts)) => (hangups, interrupts),
                (Err(error), _) | (_, Err(error)) => return tracing::error!(%error, "SIGHUP reloads are off"),
            };
            loop {
                tokio::select! {
                    Some(()) = hangups.recv() => {
                        // reload() logs and counts both outcomes itself.
                        let _ = state.reload();
                    }
                    Some(()) = interrupts.recv() => {
                        // pingora's own quick shutdown can spin for ever: a
                        // listener's accept loop may run on another of its
                        // per-thread runtimes than the one whose reactor holds
                        // the socket, and once that runtime is gone it gets
                        // an error at every poll and never yields. SIGINT
                        // means "exit now"; the access log is line-buffered.
                        tracing::info!("SIGINT: exiting now (SIGTERM drains in-flight responses)");
                        std::process::exit(0);
                    }
                    else => break,
                }
            }
        });
    });
    match spawned {
        // Serving starts once both handlers are in place (or failed).
        Ok(_) => _ = handlers_ready.recv(),
        Err(error) => tracing::error!(%error, "SIGHUP reloads are off"),
    }
}
