//! The load: `wrk` with a Lua script per scenario, concurrent cold clients,
//! and resident memory sampled from /proc while a load runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::Failure;

/// What one `wrk` run measured.
#[derive(Clone, Copy, Debug)]
pub struct WrkRun {
    pub requests_per_second: f64,
    pub bytes_per_second: f64,
    pub p99_ms: f64,
}

/// A `wrk` load: which targets it requests, and how.
pub enum Requests<'a> {
    /// Each target in turn, whole.
    Cycle(&'a [String]),
    /// Random `length`-byte ranges of one target of `size` bytes.
    RandomRanges { target: &'a str, size: u64, length: u64 },
}

/// Lua strings are quoted with `[==[ ]==]`; no target holds that.
fn lua_script(requests: &Requests) -> String {
    let request = match requests {
        Requests::Cycle(targets) => {
            let list: Vec<String> = targets.iter().map(|t| format!("[==[{t}]==]")).collect();
            format!(
                "local targets = {{{}}}\nlocal formatted, next = {{}}, 0\ninit = function(args)\n  for i, t in ipairs(targets) do formatted[i] = wrk.format(\"GET\", t) end\nend\nrequest = function()\n  next = next % #formatted + 1\n  return formatted[next]\nend\n",
                list.join(", ")
            )
        }
        Requests::RandomRanges { target, size, length } => format!(
            "local counter = 0\nsetup = function(thread)\n  counter = counter + 1\n  thread:set(\"seed\", counter)\nend\ninit = function(args) math.randomseed(seed) end\nrequest = function()\n  local first = math.random(0, {last_start})\n  return wrk.format(\"GET\", [==[{target}]==], {{Range = string.format(\"bytes=%d-%d\", first, first + {length} - 1)}})\nend\n",
            last_start = size - length
        ),
    };
    request
        + "done = function(summary, latency, requests)\n  local e = summary.errors\n  io.write(string.format(\"WRK %.0f %.0f %.0f %.0f %d %d %d %d %d\\n\", summary.requests, summary.bytes, summary.duration, latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))\nend\n"
}

/// What every answer of a `wrk` run must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// 2xx: any error wrk counts (a refused signature is a status error) fails the run.
    Served,
    /// 4xx, every one: the run measures refusals.
    Refused,
}

/// Runs `wrk` against `address` and fails on any error it counted, or on
/// any answer that is not what `answers` says.
pub fn wrk(
    address: SocketAddr,
    requests: &Requests,
    answers: Answers,
    connections: usize,
    seconds: u64,
    script_dir: &Path,
) -> Result<WrkRun, Failure> {
    let script = script_dir.join(format!("load-{}.lua", address.port()));
    std::fs::write(&script, lua_script(requests))?;
    let threads = crate::threads().min(connections);
    let output = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args(["--timeout", "60s", "-s", &script.to_string_lossy(), &format!("http://{address}/")])
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK ")).ok_or_else(|| {
        format!(
            "wrk printed no result against {address}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let numbers: Vec<f64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [requests, bytes, micros, p99_micros, connect, read, write, status, timeout] = numbers[..] else {
        return Err(format!("unexpected wrk result {line:?}").into());
    };
    let wrong_status = match answers {
        Answers::Served => status,
        Answers::Refused => requests - status,
    };
    if connect + read + write + wrong_status + timeout > 0.0 {
        return Err(format!(
            "wrk against {address}: errors connect {connect}, read {read}, write {write}, status {status}, timeout {timeout}"
        )
        .into());
    }
    let seconds = micros / 1e6;
    Ok(WrkRun {
        requests_per_second: requests / seconds,
        bytes_per_second: bytes / seconds,
        p99_ms: p99_micros / 1e3,
    })
}

/// One viewer's whole GET.
#[derive(Clone, Copy, Debug)]
pub struct Fetch {
    pub first_byte: Duration,
    pub last_byte: Duration,
}

/// `clients` viewers released together, each GETting `target` on its own
/// connection; fails unless every one gets `size` bytes with a 200.
pub fn concurrent_gets(address: SocketAddr, target: &str, clients: usize, size: u64) -> Result<Vec<Fetch>, Failure> {
    let start = Arc::new(Barrier::new(clients));
    let viewers: Vec<_> = (0..clients)
        .map(|_| {
            let (start, target) = (start.clone(), target.to_owned());
            std::thread::spawn(move || -> Result<Fetch, String> {
                start.wait();
                get_whole(address, &target, size).map_err(|e| e.to_string())
            })
        })
        .collect();
    viewers
        .into_iter()
        .map(|viewer| {
            viewer
                .join()
                .map_err(|_| "a viewer thread panicked".to_owned())?
                .map_err(Failure::from)
        })
        .collect()
}

/// GETs `target` and reads it to the end, timing the first and last byte.
pub fn get_whole(address: SocketAddr, target: &str, size: u64) -> Result<Fetch, Failure> {
    timed_get(address, target, &[], 200, size)
}

/// GETs `target` with `headers` on a new connection, timing its first and
/// last body byte from before the connect; fails unless the answer has
/// `status` and `length` body bytes.
pub fn timed_get(address: SocketAddr, target: &str, headers: &[(&str, &str)], status: u16, length: u64) -> Result<Fetch, Failure> {
    let began = Instant::now();
    let mut stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    stream.write_all(format!("{head}\r\n").as_bytes())?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    if !status_line.starts_with(&format!("HTTP/1.1 {status}")) {
        return Err(format!("GET {target}: {}", status_line.trim()).into());
    }
    let mut first = [0u8; 1];
    reader.read_exact(&mut first)?;
    let first_byte = began.elapsed();
    let rest = std::io::copy(&mut reader, &mut std::io::sink())?;
    if rest + 1 != length {
        return Err(format!("GET {target}: {} bytes, expected {length}", rest + 1).into());
    }
    Ok(Fetch {
        first_byte,
        last_byte: began.elapsed(),
    })
}

/// The body of a small text resource, such as `/metrics`.
pub fn get_text(address: SocketAddr, target: &str) -> Result<String, Failure> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(format!("GET {target}: {}", answer.lines().next().unwrap_or("no answer")).into()),
    }
}

/// What one `h2load` run measured.
pub struct H2Run {
    pub requests_per_second: f64,
}

/// Runs `h2load` (HTTP/2 over TLS, certificates not checked) over `urls`
/// in turn; fails unless every request succeeded with a 2xx.
pub fn h2load(urls: &[String], connections: usize, seconds: u64) -> Result<H2Run, Failure> {
    let threads = crate::threads().min(connections);
    let output = Command::new("h2load")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-m", "10"])
        .args(["-D", &seconds.to_string()])
        .args(urls)
        .output()
        .map_err(|e| format!("running h2load: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let number_after = |prefix: &str, field: usize| -> Option<f64> {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(prefix))?;
        line.split([',', ' ']).filter(|w| !w.is_empty()).nth(field)?.parse().ok()
    };
    // "finished in 5.00s, 41234.20 req/s, 180.3MB/s"
    // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"
    // "status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx"
    let (Some(rate), Some(done), Some(succeeded), Some(refused), Some(failed)) = (
        number_after("finished in", 3),
        number_after("requests:", 5),
        number_after("requests:", 7),
        number_after("status codes:", 6),
        number_after("status codes:", 8),
    ) else {
        return Err(format!("h2load printed no result: {stdout}{}", String::from_utf8_lossy(&output.stderr)).into());
    };
    // The status counts include streams still open when the clock stopped.
    if done == 0.0 || succeeded != done || refused + failed > 0.0 {
        return Err(format!("h2load: {done} requests, {succeeded} succeeded, {refused} 4xx, {failed} 5xx:\n{stdout}").into());
    }
    Ok(H2Run { requests_per_second: rate })
}

/// The summed resident memory of `pids`, in bytes.
pub fn resident_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}

/// Runs `load` while sampling the summed RSS of `pids` every 10 ms; returns
/// the load's result and the highest sample.
pub fn peak_resident_during<T>(pids: Vec<u32>, load: impl FnOnce() -> T) -> (T, u64) {
    let running = Arc::new(AtomicBool::new(true));
    let sampling = running.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while sampling.load(Ordering::SeqCst) {
            peak = peak.max(resident_bytes(&pids));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let result = load();
    running.store(false, Ordering::SeqCst);
    (result, sampler.join().unwrap_or(0))
}
