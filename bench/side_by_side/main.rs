//! `bench/compare`: keyfront beside nginx (proxy_cache, slice 1m) and beside
//! the framework's ceiling (a bare pingora responder), all in front of one
//! origin on loopback, measured alternately in one run. Prints medians and
//! ratios and writes them to bench/RESULTS.md. Exits non-zero only when a
//! run fails (a server did not start, a response was wrong, wrk counted
//! errors), never because of a ratio.
//!
//! COMPARE_ROUNDS (default 7, at least 3) and COMPARE_SECONDS (default 5)
//! set the rounds and each wrk run's length; COMPARE_ONLY=hits,ranges,cold,memory
//! picks scenarios (while profiling one, say).

mod ceiling;
mod load;
mod objects;
mod relay;
mod report;
mod servers;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use load::{Requests, concurrent_gets, get_bytes, get_whole, peak_resident_during, wrk};
use objects::*;
use report::{Measure, Samples};
use servers::{KEYFRONT_MEMORY_MIB, Server};

pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Threads for each server (keyfront's pingora threads, the ceiling's, nginx's
/// workers) and for wrk: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

struct Settings {
    rounds: usize,
    seconds: u64,
    /// Scenarios to run, by name (all when empty): hits, ranges, cold, memory.
    only: Vec<String>,
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
            only: std::env::var("COMPARE_ONLY")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

const MEASURES: &[Measure] = &[
    Measure {
        scenario: "1. hot hits, 4 KiB, 64 connections",
        name: "requests/s",
        unit: "median",
        decimals: 0,
    },
    Measure {
        scenario: "1. hot hits, 4 KiB, 64 connections",
        name: "p99 latency",
        unit: "ms",
        decimals: 2,
    },
    Measure {
        scenario: "2. hot 1 MiB ranges of 256 MiB, 16 connections",
        name: "throughput",
        unit: "MiB/s",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "origin requests",
        unit: "count",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "origin bytes",
        unit: "MiB",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "first byte, median client",
        unit: "ms",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "first byte, slowest client",
        unit: "ms",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "last byte, median client",
        unit: "ms",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "last byte, slowest client",
        unit: "ms",
        decimals: 0,
    },
    Measure {
        scenario: "4. 1 GiB streamed, 200 connections",
        name: "peak RSS",
        unit: "MiB",
        decimals: 0,
    },
    Measure {
        scenario: "4. 1 GiB streamed, 200 connections",
        name: "stream throughput",
        unit: "MiB/s",
        decimals: 0,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ceiling") {
        return ceiling::run(&args[1..]);
    }
    if !args.iter().any(|arg| arg == "--bench") {
        return ExitCode::SUCCESS; // `cargo test --all-targets` builds this; the run belongs to `cargo bench`.
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
    let keyfront = servers::start_keyfront(keyfront_binary, dir.path(), origin, threads())?;
    let nginx = servers::start_nginx(dir.path(), origin, threads())?;
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

    let section = format!(
        "## Side by side with nginx (`bench/compare`, {})\n\n{}\n{} rounds, each running every server in turn; wrk runs of {} s. Figures are medians over\nthe rounds; a ratio is the median over the rounds of keyfront's figure divided by the other\nserver's in the same round, as this machine's speed drifts from one minute to the next.\n\n{}\n{}",
        time::OffsetDateTime::now_utc().date(),
        report::machine(),
        settings.rounds,
        settings.seconds,
        report::table(&samples, MEASURES),
        targets(&samples)
    );
    println!("\n{section}");
    report::write_results(&section)?;
    println!("bench/compare: written to bench/RESULTS.md");
    Ok(())
}

/// A hot object whole and a random range of the ranges object, byte for byte.
fn check_bytes(server: &Server) -> Result<(), Failure> {
    let expected = content(&hot_key(0), HOT_SIZE);
    let (status, body) = get_bytes(server.address, &server.target(&hot_key(0)), None)?;
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
    let (status, body) = get_bytes(server.address, &server.target(RANGES_KEY), Some((first, last)))?;
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

fn hot_hits(settings: &Settings, servers: [&Server; 3], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    let seconds = settings.seconds;
    for round in 0..=settings.rounds {
        for server in servers {
            let targets: Vec<String> = (0..HOT_COUNT).map(|i| server.target(&hot_key(i))).collect();
            // Round 0 warms each server's connections, memo and code paths; it is not recorded.
            let run = wrk(
                server.address,
                &Requests::Cycle(&targets),
                64,
                if round == 0 { 2 } else { seconds },
                dir,
            )?;
            if round > 0 {
                println!(
                    "hot hits  round {round} {:>8}: {:>8.0} requests/s, p99 {:.2} ms",
                    server.name, run.requests_per_second, run.p99_ms
                );
                samples.add("requests/s", server.name, run.requests_per_second);
                samples.add("p99 latency", server.name, run.p99_ms);
            }
        }
    }
    Ok(())
}

fn hot_ranges(settings: &Settings, servers: [&Server; 3], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    for round in 0..=settings.rounds {
        for server in servers {
            let target = server.target(RANGES_KEY);
            let requests = Requests::RandomRanges {
                target: &target,
                size: RANGES_SIZE,
                length: RANGE_LENGTH,
            };
            let run = wrk(server.address, &requests, 16, if round == 0 { 2 } else { settings.seconds }, dir)?;
            if round > 0 {
                let mib = run.bytes_per_second / MIB as f64;
                println!("ranges    round {round} {:>8}: {mib:>8.0} MiB/s", server.name);
                samples.add("throughput", server.name, mib);
            }
        }
    }
    Ok(())
}

fn cold(settings: &Settings, servers: [&Server; 2], samples: &mut Samples) -> Result<(), Failure> {
    for round in 0..settings.rounds {
        for server in servers {
            let relay = server.relay.as_ref().ok_or("a cold run needs an origin relay")?;
            let before = relay.traffic();
            let fetches = concurrent_gets(server.address, &server.target(&cold_key(round)), COLD_CLIENTS, COLD_SIZE)?;
            // Fills the viewers no longer wait for may still be finishing.
            std::thread::sleep(Duration::from_secs(1));
            let traffic = relay.traffic() - before;
            let millis = |pick: fn(&load::Fetch) -> Duration| {
                let mut values: Vec<f64> = fetches.iter().map(|f| pick(f).as_secs_f64() * 1e3).collect();
                values.sort_by(f64::total_cmp);
                (values[values.len() / 2], values[values.len() - 1])
            };
            let (first_median, first_slowest) = millis(|f| f.first_byte);
            let (last_median, last_slowest) = millis(|f| f.last_byte);
            println!(
                "cold      round {} {:>8}: {} origin requests, {:.1} MiB; first byte {first_median:.1}/{first_slowest:.1} ms, last byte {last_median:.0}/{last_slowest:.0} ms (median/slowest)",
                round + 1,
                server.name,
                traffic.requests,
                traffic.bytes as f64 / MIB as f64
            );
            samples.add("origin requests", server.name, traffic.requests as f64);
            samples.add("origin bytes", server.name, traffic.bytes as f64 / MIB as f64);
            samples.add("first byte, median client", server.name, first_median);
            samples.add("first byte, slowest client", server.name, first_slowest);
            samples.add("last byte, median client", server.name, last_median);
            samples.add("last byte, slowest client", server.name, last_slowest);
        }
    }
    Ok(())
}

fn streaming_memory(settings: &Settings, servers: [&Server; 2], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    for round in 1..=settings.rounds {
        for server in servers {
            let targets = [server.target(STREAM_KEY)];
            let (run, peak) = peak_resident_during(server.process.pids(), || {
                wrk(
                    server.address,
                    &Requests::Cycle(&targets),
                    STREAM_CONNECTIONS,
                    settings.seconds,
                    dir,
                )
            });
            let run = run?;
            let (peak_mib, mib_per_second) = (peak as f64 / MIB as f64, run.bytes_per_second / MIB as f64);
            println!(
                "streaming round {round} {:>8}: peak RSS {peak_mib:.0} MiB, {mib_per_second:.0} MiB/s",
                server.name
            );
            samples.add("peak RSS", server.name, peak_mib);
            samples.add("stream throughput", server.name, mib_per_second);
        }
    }
    Ok(())
}

/// Each target of issue 6, met or not, from the medians.
fn targets(samples: &Samples) -> String {
    let ratio = |measure, server, other| samples.median_ratio(measure, server, other).unwrap_or(f64::NAN);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let hits_ceiling = ratio("requests/s", "keyfront", "ceiling");
    let hits_nginx = ratio("requests/s", "keyfront", "nginx");
    let ceiling_nginx = ratio("requests/s", "ceiling", "nginx");
    let ranges = ratio("throughput", "keyfront", "nginx");
    let origin_bytes = ratio("origin bytes", "keyfront", "nginx");
    let first_byte = ratio("first byte, median client", "keyfront", "nginx");
    let rss = samples.median("peak RSS", "keyfront").unwrap_or(f64::NAN);
    format!(
        "Targets:\n- hot hits at least 0.9 of the ceiling: {hits_ceiling:.2} ({}); of nginx {hits_nginx:.2}, where the ceiling itself is {ceiling_nginx:.2} of nginx\n- hot ranges at least 1.0 of nginx: {ranges:.2} ({})\n- cold origin bytes at most nginx's: {origin_bytes:.2} ({}); first byte no worse than nginx's: {first_byte:.2} ({})\n- peak RSS at most the memory budget + 100 MiB = {} MiB: {rss:.0} MiB ({})\n",
        verdict(hits_ceiling >= 0.9),
        verdict(ranges >= 1.0),
        verdict(origin_bytes <= 1.0),
        verdict(first_byte <= 1.0),
        KEYFRONT_MEMORY_MIB + 100,
        verdict(rss <= (KEYFRONT_MEMORY_MIB + 100) as f64),
    )
}
