//! `bench/compare`: keyfront beside nginx (proxy_cache, slice 1m) and beside
//! the framework's ceiling (a bare pingora responder), all in front of one
//! origin on loopback, measured alternately in one run. Prints medians and
//! ratios and writes them to bench/RESULTS.md. Exits non-zero only when a
//! run fails (a server did not start, a response was wrong, wrk counted
//! errors), never because of a ratio.
//!
//! With the argument `soak` (`bench/soak`) it runs `soak.rs` instead, with
//! `fleet` (`bench/fleet`) `fleet.rs`, with `functions` (`bench/functions`)
//! `functions.rs`.
//!
//! COMPARE_ROUNDS (default 7, at least 3) and COMPARE_SECONDS (default 5)
//! set the rounds and each wrk run's length; COMPARE_ONLY picks scenarios
//! (while profiling one, say): hits, ranges, cold, memory, threads,
//! refusals, h2, firstbyte. COMPARE_SETTLE_MS (default 0) makes row 8
//! wait that long before each timed request, so that no earlier request's
//! fill or disk write still runs beside it.

mod ceiling;
#[path = "../../tests/common/mod.rs"]
mod common;
mod first_byte;
mod fleet;
mod functions;
mod load;
mod objects;
mod rejections;
mod relay;
mod report;
mod scaling;
mod scenarios;
mod servers;
mod soak;
mod tls;

use std::path::Path;
use std::process::ExitCode;

use common::request;
use load::get_whole;
use objects::*;
use report::Samples;
use scenarios::{AGAINST_REFERENCE, MEASURES, cold, hot_hits, hot_ranges, streaming_memory, targets};
use servers::{Certificate, Server};

pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A bench of its own in this binary (`soak`, `fleet`).
type BenchRun = fn() -> Result<(), Failure>;

/// Threads for each server (keyfront's pingora threads, the ceiling's, nginx's
/// workers) and for wrk: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub struct Settings {
    pub rounds: usize,
    pub seconds: u64,
    /// Scenarios to run, by name (all when empty): see the module's doc.
    pub only: Vec<String>,
    /// Row 8's pause before each timed request.
    pub settle: std::time::Duration,
}

impl Settings {
    fn from_env() -> Result<Settings, Failure> {
        let number = |name: &str, default: u64| -> Result<u64, Failure> {
            match std::env::var(name) {
                Ok(value) => value
                    .parse()
                    .map_err(|_| format!("{name}={value:?}: expected a whole number").into()),
                Err(_) => Ok(default),
            }
        };
        Ok(Settings {
            rounds: number("COMPARE_ROUNDS", 7)?.max(3) as usize,
            seconds: number("COMPARE_SECONDS", 5)?.max(1),
            settle: std::time::Duration::from_millis(number("COMPARE_SETTLE_MS", 0)?),
            only: std::env::var("COMPARE_ONLY")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    pub fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ceiling") {
        return ceiling::run(&args[1..]);
    }
    if !args.iter().any(|arg| arg == "--bench") {
        return ExitCode::SUCCESS; // `cargo test --all-targets` builds this; the run belongs to `cargo bench`.
    }
    let other_bench: Option<(&str, BenchRun)> = if args.iter().any(|arg| arg == "soak") {
        Some(("soak", soak::run))
    } else if args.iter().any(|arg| arg == "fleet") {
        Some(("fleet", fleet::run))
    } else if args.iter().any(|arg| arg == "functions") {
        Some(("functions", functions::run))
    } else {
        None
    };
    if let Some((name, run)) = other_bench {
        return match run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("bench/{name}: the run failed: {failure}");
                ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("bench/compare: a run failed: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// Runs in a fresh directory, removed after a good run and kept, with every
/// server's log, after a failed one.
fn run() -> Result<(), Failure> {
    let settings = Settings::from_env()?;
    let dir = tempfile::Builder::new().prefix("keyfront-compare-").tempdir()?;
    let result = run_in(&settings, &dir);
    if result.is_err() {
        eprintln!("bench/compare: logs kept in {}", dir.keep().display());
    }
    result
}

fn run_in(settings: &Settings, dir: &tempfile::TempDir) -> Result<(), Failure> {
    let keyfront_binary = Path::new(env!("CARGO_BIN_EXE_keyfront"));
    println!(
        "bench/compare: {} rounds of {} s, servers and wrk with {} threads, in {}",
        settings.rounds,
        settings.seconds,
        threads(),
        dir.path().display()
    );

    let (_origin, origin) = servers::start_origin(keyfront_binary, dir.path())?;
    for (key, size) in objects::all(settings.rounds) {
        servers::seed(origin, &key, &content(&key, size))?;
    }
    let certificate = Certificate::make(dir.path())?;
    let keyfront = servers::start_keyfront(keyfront_binary, dir.path(), origin, threads(), Some(&certificate))?;
    let nginx = servers::start_nginx(dir.path(), origin, threads(), Some(&certificate))?;
    let ceiling = servers::start_ceiling(dir.path(), threads())?;
    for server in [&keyfront, &nginx, &ceiling] {
        check_bytes(server)?;
    }
    for server in [&keyfront, &nginx] {
        warm(server)?;
    }
    println!("bench/compare: servers answer correctly and caches are warm; measuring");

    let mut samples = Samples::default();
    if settings.runs("hits") {
        hot_hits(settings, [&keyfront, &nginx, &ceiling], &mut samples, dir.path())?;
    }
    if settings.runs("ranges") {
        hot_ranges(settings, [&keyfront, &nginx, &ceiling], &mut samples, dir.path())?;
    }
    if settings.runs("cold") {
        cold(settings, [&keyfront, &nginx], &mut samples)?;
    }
    if settings.runs("memory") {
        streaming_memory(settings, [&keyfront, &nginx], &mut samples, dir.path())?;
    }
    if settings.runs("threads") {
        scaling::one_thread(settings, keyfront_binary, origin, &mut samples, dir.path())?;
    }
    if settings.runs("refusals") {
        rejections::rejections(settings, &keyfront, &mut samples, dir.path())?;
    }
    if settings.runs("h2") {
        tls::h2_hits(settings, [&keyfront, &nginx], &mut samples)?;
    }
    if settings.runs("firstbyte") {
        first_byte::first_bytes(settings, &keyfront, &mut samples)?;
    }

    let section = format!(
        "## Side by side with nginx (`bench/compare`, {})\n\n{}\n{} rounds, each running every server in turn; wrk runs of {} s. Figures are medians over\nthe rounds; a ratio is the median over the rounds of keyfront's figure divided by the other\nserver's in the same round, as this machine's speed drifts from one minute to the next.\n\n{}\n{}\n{}",
        time::OffsetDateTime::now_utc().date(),
        report::machine(),
        settings.rounds,
        settings.seconds,
        report::table(&samples, MEASURES),
        report::reference_table(&samples, AGAINST_REFERENCE),
        targets(&samples)
    );
    println!("\n{section}");
    // A partial run would replace the whole table with a part of it.
    if settings.only.is_empty() {
        report::write_results(&section)?;
        println!("bench/compare: written to bench/RESULTS.md");
    } else {
        println!("bench/compare: COMPARE_ONLY set, bench/RESULTS.md left as it was");
    }
    Ok(())
}

/// A hot object whole and a random range of the ranges object, byte for byte.
fn check_bytes(server: &Server) -> Result<(), Failure> {
    let expected = content(&hot_key(0), HOT_SIZE);
    let response = request(server.address, "GET", &server.target(&hot_key(0)), &[], b"");
    let (status, body) = (response.status, response.body);
    if (status, &body) != (200, &expected) {
        return Err(format!(
            "{}: GET {} answered {status} with {} bytes, not the object",
            server.name,
            hot_key(0),
            body.len()
        )
        .into());
    }
    let first = rand::random::<u64>() % (RANGES_SIZE - RANGE_LENGTH);
    let last = first + RANGE_LENGTH - 1;
    let range = format!("bytes={first}-{last}");
    let response = request(server.address, "GET", &server.target(RANGES_KEY), &[("Range", &range)], b"");
    let (status, body) = (response.status, response.body);
    let expected = &content(RANGES_KEY, RANGES_SIZE)[first as usize..=last as usize];
    if (status, body.as_slice()) != (206, expected) {
        return Err(format!(
            "{}: bytes {first}-{last} of {RANGES_KEY} answered {status}, not those bytes",
            server.name
        )
        .into());
    }
    Ok(())
}

/// The same requests through each cache: every hot object twice, the ranges object whole.
fn warm(server: &Server) -> Result<(), Failure> {
    for index in 0..HOT_COUNT {
        for _ in 0..2 {
            get_whole(server.address, &server.target(&hot_key(index)), HOT_SIZE)?;
        }
    }
    get_whole(server.address, &server.target(RANGES_KEY), RANGES_SIZE)?;
    Ok(())
}
