//! `bench/soak`: keyfront under many concurrent viewers for minutes, with a
//! mixed workload and its origin restarted once half-way. Every body is
//! checked byte for byte as it streams in; the run fails on one wrong byte.
//!
//! SOAK_SECONDS (default 600) and SOAK_CONNECTIONS (default 1000).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::objects::*;
use crate::servers::{self, Server};
use crate::{Failure, threads};

/// What a viewer asks for, in the proportions of `pick`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// A small object, hot in memory.
    Hit,
    /// 64 KiB anywhere in a 1 GiB object, twice the memory tier: often cold.
    Seek,
    /// 1 byte to 1 MiB of the 256 MiB object.
    Range,
    Head,
    /// A range of the 256 MiB object with signed cookies instead of a signed URL.
    Cookie,
    /// A hot object with a damaged signature: must be refused.
    BadSignature,
    /// The 256 MiB object whole, abandoned after 100 KiB.
    Abort,
}

fn pick(rng: &mut StdRng) -> Kind {
    match rng.gen_range(0..100) {
        0..40 => Kind::Hit,
        40..50 => Kind::Seek,
        50..70 => Kind::Range,
        70..80 => Kind::Head,
        80..90 => Kind::Cookie,
        90..95 => Kind::BadSignature,
        _ => Kind::Abort,
    }
}

/// The targets every viewer shares, signed once.
struct Plan {
    address: SocketAddr,
    hot: Vec<String>,
    ranges: String,
    stream: String,
    cookies: String,
    /// Each object's bytes repeat every 251; a body chunk starting at offset
    /// `o` is `pattern[o % 251..]` (see `content`).
    patterns: std::collections::HashMap<String, Vec<u8>>,
    /// Set while the origin is down and just after: failures then are
    /// expected (cut misses, 502s) and counted apart.
    origin_outage: AtomicBool,
}

const PATTERN_PERIOD: u64 = 251;
const CHUNK: usize = 64 * 1024;

impl Plan {
    fn matches_content(&self, key: &str, offset: u64, bytes: &[u8]) -> bool {
        let start = (offset % PATTERN_PERIOD) as usize;
        self.patterns[key][start..start + bytes.len()] == *bytes
    }
}

/// One request and what must come back.
struct Exchange {
    head: String,
    status: u16,
    /// The object and the offset of the first byte the body must hold.
    body: Option<(String, u64)>,
    length: u64,
    /// Bytes to read before hanging up (an abandoned download).
    abandon_after: Option<u64>,
}

impl Plan {
    fn exchange(&self, kind: Kind, rng: &mut StdRng) -> Exchange {
        let host = self.address;
        let get = |target: &str, extra: &str| format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
        let range = |first: u64, length: u64| format!("Range: bytes={first}-{}\r\n", first + length - 1);
        let bytes_of = |key: &str, first: u64| Some((key.to_owned(), first));
        match kind {
            Kind::Hit => {
                let index = rng.gen_range(0..HOT_COUNT);
                Exchange::new(get(&self.hot[index], ""), 200, bytes_of(&hot_key(index), 0), HOT_SIZE)
            }
            Kind::Seek => {
                let first = rng.gen_range(0..STREAM_SIZE - 64 * KIB);
                Exchange::new(
                    get(&self.stream, &range(first, 64 * KIB)),
                    206,
                    bytes_of(STREAM_KEY, first),
                    64 * KIB,
                )
            }
            Kind::Range | Kind::Cookie => {
                let length = rng.gen_range(1..=MIB);
                let first = rng.gen_range(0..=RANGES_SIZE - length);
                let head = match kind {
                    Kind::Cookie => get(RANGES_KEY, &format!("{}Cookie: {}\r\n", range(first, length), self.cookies)),
                    _ => get(&self.ranges, &range(first, length)),
                };
                Exchange::new(head, 206, bytes_of(RANGES_KEY, first), length)
            }
            Kind::Head => {
                let head = format!("HEAD {} HTTP/1.1\r\nHost: {host}\r\n\r\n", self.ranges);
                Exchange::new(head, 200, None, 0)
            }
            Kind::BadSignature => {
                let mut target = self.hot[0].clone();
                let at = target.find("Signature=").expect("a signed target") + "Signature=".len();
                let other = if target[at..].starts_with('A') { "B" } else { "A" };
                target.replace_range(at..=at, other);
                Exchange::new(get(&target, ""), 403, None, 0)
            }
            Kind::Abort => Exchange {
                abandon_after: Some(100 * KIB),
                ..Exchange::new(get(&self.ranges, ""), 200, bytes_of(RANGES_KEY, 0), RANGES_SIZE)
            },
        }
    }
}

impl Exchange {
    fn new(head: String, status: u16, body: Option<(String, u64)>, length: u64) -> Self {
        Exchange {
            head,
            status,
            body,
            length,
            abandon_after: None,
        }
    }
}

/// How an exchange ended.
enum Outcome {
    /// As expected; whether the connection may be used again.
    Served { reusable: bool },
    /// Hung up on purpose.
    Abandoned,
    /// Not as expected: what went wrong (a wrong byte is its own kind).
    Failed(String),
}

const WRONG_BYTES: &str = "wrong bytes";

/// Sends `exchange` and reads its answer, checking every body byte.
async fn run_exchange(plan: &Plan, connection: &mut BufReader<TcpStream>, exchange: &Exchange) -> Result<Outcome, std::io::Error> {
    connection.get_mut().write_all(exchange.head.as_bytes()).await?;
    let mut line = String::new();
    connection.read_line(&mut line).await?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut length, mut reusable) = (None, true);
    loop {
        line.clear();
        if connection.read_line(&mut line).await? == 0 {
            return Ok(Outcome::Failed("closed in the header".to_owned()));
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<u64>().ok(),
            "connection" => reusable = !value.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let is_head = exchange.head.starts_with("HEAD");
    let body_length = if is_head { 0 } else { length.unwrap_or(0) };
    if status != exchange.status {
        let mut skipped = vec![0u8; body_length as usize];
        connection.read_exact(&mut skipped).await?;
        return Ok(Outcome::Failed(format!("status {status}")));
    }
    if exchange.body.is_some() && length != Some(exchange.length) {
        return Ok(Outcome::Failed(format!("length {length:?}")));
    }
    let mut buffer = vec![0u8; CHUNK];
    let mut read = 0u64;
    let wanted = exchange.abandon_after.unwrap_or(body_length).min(body_length);
    while read < wanted {
        let chunk = buffer.len().min((wanted - read) as usize);
        connection.read_exact(&mut buffer[..chunk]).await?;
        if let Some((key, first)) = &exchange.body
            && !plan.matches_content(key, first + read, &buffer[..chunk])
        {
            return Ok(Outcome::Failed(WRONG_BYTES.to_owned()));
        }
        read += chunk as u64;
    }
    if exchange.abandon_after.is_some() {
        return Ok(Outcome::Abandoned);
    }
    Ok(Outcome::Served { reusable })
}

/// What every viewer saw.
#[derive(Default)]
struct Tally {
    served: std::collections::BTreeMap<Kind, u64>,
    failures: std::collections::BTreeMap<String, u64>,
    /// Microseconds per served exchange, hits apart.
    latencies: Vec<u32>,
    hit_latencies: Vec<u32>,
}

async fn viewer(id: u64, plan: Arc<Plan>, started: Instant, until: Instant, tally: Arc<Mutex<Tally>>) {
    let mut rng = StdRng::seed_from_u64(id);
    let mut mine = Tally::default();
    let mut connection: Option<BufReader<TcpStream>> = None;
    while Instant::now() < until {
        let kind = pick(&mut rng);
        let exchange = plan.exchange(kind, &mut rng);
        let began = Instant::now();
        let open = match connection.take() {
            Some(open) => Ok(open),
            None => TcpStream::connect(plan.address).await.map(BufReader::new),
        };
        let mut open = match open {
            Ok(open) => open,
            Err(error) => {
                *mine.failures.entry(format!("connect: {}", error.kind())).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let outcome = tokio::time::timeout(Duration::from_secs(60), run_exchange(&plan, &mut open, &exchange)).await;
        let micros = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
        match outcome {
            Ok(Ok(Outcome::Served { reusable })) => {
                *mine.served.entry(kind).or_default() += 1;
                match kind {
                    Kind::Hit => mine.hit_latencies.push(micros),
                    _ => mine.latencies.push(micros),
                }
                connection = reusable.then_some(open);
            }
            Ok(Ok(Outcome::Abandoned)) => *mine.served.entry(kind).or_default() += 1,
            failure => {
                let what = match failure {
                    Ok(Ok(Outcome::Failed(what))) => what,
                    Ok(Err(error)) => error.kind().to_string(),
                    _ => "no answer in 60 s".to_owned(),
                };
                let when = if plan.origin_outage.load(Ordering::Relaxed) {
                    "origin restarting"
                } else {
                    "origin up"
                };
                let minute = started.elapsed().as_secs() / 60;
                *mine
                    .failures
                    .entry(format!("{when}, minute {minute}, {kind:?}: {what}"))
                    .or_default() += 1;
            }
        }
    }
    let mut tally = tally.lock().expect("tally lock");
    for (kind, count) in mine.served {
        *tally.served.entry(kind).or_default() += count;
    }
    for (what, count) in mine.failures {
        *tally.failures.entry(what).or_default() += count;
    }
    tally.latencies.extend(mine.latencies);
    tally.hit_latencies.extend(mine.hit_latencies);
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).map_or(0.0, |micros| f64::from(*micros) / 1000.0)
}

fn setting(name: &str, default: u64) -> Result<u64, Failure> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?}: expected a whole number").into()),
        Err(_) => Ok(default),
    }
}

/// Runs the soak in a fresh directory (kept, with the logs, if the run fails).
pub fn run() -> Result<(), Failure> {
    let seconds = setting("SOAK_SECONDS", 600)?.max(20);
    let connections = setting("SOAK_CONNECTIONS", 1000)?.max(1);
    let dir = tempfile::Builder::new().prefix("keyfront-soak-").tempdir()?;
    let result = soak(seconds, connections, dir.path());
    if result.is_err() {
        eprintln!("bench/soak: logs kept in {}", dir.keep().display());
    }
    result
}

fn soak(seconds: u64, connections: u64, dir: &Path) -> Result<(), Failure> {
    let binary = Path::new(env!("CARGO_BIN_EXE_keyfront"));
    let (origin, origin_address) = servers::start_origin(binary, dir)?;
    for index in 0..HOT_COUNT {
        servers::seed(origin_address, &hot_key(index), &content(&hot_key(index), HOT_SIZE))?;
    }
    for (key, size) in [(RANGES_KEY, RANGES_SIZE), (STREAM_KEY, STREAM_SIZE)] {
        servers::seed(origin_address, key, &content(key, size))?;
    }
    let keyfront: Server = servers::start_keyfront(binary, dir, origin_address, threads(), None)?;
    let plan = Arc::new(Plan {
        address: keyfront.address,
        hot: (0..HOT_COUNT).map(|i| keyfront.target(&hot_key(i))).collect(),
        ranges: keyfront.target(RANGES_KEY),
        stream: keyfront.target(STREAM_KEY),
        cookies: keyfront.signed_cookies("/ranges/").ok_or("keyfront signs cookies")?,
        patterns: (0..HOT_COUNT)
            .map(hot_key)
            .chain([RANGES_KEY.to_owned(), STREAM_KEY.to_owned()])
            .map(|key| {
                let pattern = content(&key, PATTERN_PERIOD + CHUNK as u64);
                (key, pattern)
            })
            .collect(),
        origin_outage: AtomicBool::new(false),
    });
    println!(
        "bench/soak: {connections} viewers for {seconds} s against keyfront ({} threads, {} MiB memory tier), origin restarted at {} s",
        threads(),
        servers::keyfront_memory_mib(),
        seconds / 2
    );

    // The hot objects are hot, as on a serving edge; the rest starts cold.
    for target in &plan.hot {
        crate::load::get_whole(plan.address, target, HOT_SIZE)?;
    }
    let pid = keyfront.process.pids()[0];
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let load = {
        let (plan, tally) = (plan.clone(), tally.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let viewers: Vec<_> = (0..connections)
                    .map(|id| tokio::spawn(viewer(id, plan.clone(), started, until, tally.clone())))
                    .collect();
                for handle in viewers {
                    handle.await.map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
    };

    let admin = keyfront.admin.ok_or("keyfront has an admin listener")?;
    let mut resident = Vec::new();
    let mut origin = Some(origin);
    let mut restarted = false;
    while Instant::now() < until {
        // Sampled every second, reported as each 10 s window's peaks: the
        // peak of a warm-up lasts seconds.
        let mut window = Sample::default();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())));
            window = window.max(Sample::take(pid, admin));
        }
        resident.push((started.elapsed().as_secs(), window));
        if !restarted && started.elapsed() >= Duration::from_secs(seconds / 2) {
            plan.origin_outage.store(true, Ordering::Relaxed);
            drop(origin.take());
            std::thread::sleep(Duration::from_secs(2));
            origin = Some(servers::start_origin_at(binary, dir, origin_address)?);
            println!("bench/soak: origin restarted at {} s", started.elapsed().as_secs());
            // Exchanges begun while it was down end within a few seconds.
            std::thread::sleep(Duration::from_secs(5));
            plan.origin_outage.store(false, Ordering::Relaxed);
            restarted = true;
        }
    }
    load.join().map_err(|_| "the load thread panicked")??;
    report(seconds, connections, &mut tally.lock().expect("tally lock"), &resident)
}

/// Memory figures of keyfront at one moment (or the peaks of several).
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_mib: u64,
    filling_mib: u64,
    unwritten_mib: u64,
}

impl Sample {
    fn take(pid: u32, admin: SocketAddr) -> Self {
        let metrics = crate::load::get_text(admin, "/metrics").unwrap_or_default();
        let gauge = |held_by: &str| {
            let name = format!("keyfront_cache_outside_tiers_bytes{{held_by=\"{held_by}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&name))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map_or(0, |bytes| bytes as u64 / MIB)
        };
        Self {
            rss_mib: crate::load::resident_bytes(&[pid]) / MIB,
            filling_mib: gauge("filling"),
            unwritten_mib: gauge("unwritten"),
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            rss_mib: self.rss_mib.max(other.rss_mib),
            filling_mib: self.filling_mib.max(other.filling_mib),
            unwritten_mib: self.unwritten_mib.max(other.unwritten_mib),
        }
    }
}

fn report(seconds: u64, connections: u64, tally: &mut Tally, resident: &[(u64, Sample)]) -> Result<(), Failure> {
    tally.latencies.sort_unstable();
    tally.hit_latencies.sort_unstable();
    let served: u64 = tally.served.values().sum();
    let failed: u64 = tally.failures.values().sum();
    let wrong = tally
        .failures
        .iter()
        .filter(|(what, _)| what.ends_with(WRONG_BYTES))
        .map(|(_, n)| n)
        .sum::<u64>();
    let while_up = tally
        .failures
        .iter()
        .filter(|(what, _)| what.starts_with("origin up"))
        .map(|(_, n)| n)
        .sum::<u64>();
    println!("\n| measure | value |\n|---|---|");
    println!("| run | {connections} connections, {seconds} s, origin restarted once |");
    println!("| exchanges as expected | {served} ({:.0}/s) |", served as f64 / seconds as f64);
    for (kind, count) in &tally.served {
        println!("| - {kind:?} | {count} |");
    }
    println!("| exchanges not as expected | {failed} |");
    for (what, count) in &tally.failures {
        println!("| - {what} | {count} |");
    }
    println!("| wrong bytes | {wrong} |");
    println!(
        "| latency p50 / p99, hits | {:.1} / {:.1} ms |",
        percentile(&tally.hit_latencies, 0.5),
        percentile(&tally.hit_latencies, 0.99)
    );
    println!(
        "| latency p50 / p99, other exchanges | {:.1} / {:.1} ms |",
        percentile(&tally.latencies, 0.5),
        percentile(&tally.latencies, 0.99)
    );
    let samples: Vec<String> = resident.iter().map(|(at, sample)| format!("{at}s {}", sample.rss_mib)).collect();
    println!("| RSS, peak of each 10 s, MiB | {} |", samples.join(", "));
    let outside: Vec<String> = resident
        .iter()
        .map(|(at, sample)| format!("{at}s {}+{}", sample.filling_mib, sample.unwritten_mib))
        .collect();
    println!(
        "| outside the tiers (filling + unwritten), peak of each 10 s, MiB | {} |",
        outside.join(", ")
    );
    let peak = resident.iter().map(|(_, sample)| sample.rss_mib).max().unwrap_or(0);
    println!("| RSS peak | {peak} MiB (memory tier {} MiB) |", servers::keyfront_memory_mib());
    if wrong > 0 {
        return Err(format!("{wrong} exchanges got wrong bytes").into());
    }
    if while_up > 0 {
        return Err(format!("{while_up} exchanges failed while the origin was up").into());
    }
    Ok(())
}
