//! Cache benchmarks, in one run on this machine, reported as ratios:
//! 1. Seek: a 64 KiB range at ~90% of a 1 GiB object, cold at the edge.
//!    Origin bytes fetched per seek (target: at most two slices) and time to
//!    first byte through the edge against the origin's own for the same range
//!    (target: within 1.2x).
//! 2. Hot hits: a cached 4 KiB object behind a signed URL, keep-alive
//!    connections, requests per second.
//!
//! Run: `cargo bench --bench cache` (KEYFRONT_BENCH_SEEK_MIB sets the object size).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use common::{Stack, patterned};

/// Reads a response head and returns its Content-Length.
fn read_head(reader: &mut BufReader<TcpStream>) -> usize {
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" {
            return length;
        }
    }
}

/// Sends one GET and returns the time to the first body byte, reading the rest.
fn time_to_first_byte(address: SocketAddr, head: &str) -> Duration {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let length = read_head(&mut reader);
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).unwrap();
    let elapsed = started.elapsed();
    let mut rest = vec![0u8; length - 1];
    reader.read_exact(&mut rest).unwrap();
    elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A signed request head for `range` of `origin_path`, straight to the origin.
fn origin_head(stack: &Stack, origin_path: &str, extra: &[(&str, &str)]) -> String {
    let signature = stack.origin.sign("GET", origin_path, &[], SystemTime::now()).unwrap();
    let mut head = format!("GET {origin_path} HTTP/1.1\r\nhost: {}\r\n", stack.origin.host);
    for (name, value) in extra.iter().map(|(n, v)| (n.to_string(), v.to_string())).chain(signature) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head + "\r\n"
}

fn seek(stack: &Stack, size: usize) {
    let key = "/bench/movie.bin";
    let started = Instant::now();
    stack.put(key, "video/mp4", &patterned(size));
    println!("uploaded {} MiB in {:.1} s", size >> 20, started.elapsed().as_secs_f64());
    let origin_path = stack.origin.object_path(key).unwrap();
    let origin_address: SocketAddr = stack.origin.address.parse().unwrap();
    let slice = 1u64 << 20;
    let (mut edge_ms, mut edge_hot_ms, mut origin_ms, mut origin_slice_ms, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut etag = String::new();
    for round in 0..9u64 {
        // A fresh slice each round: the edge is cold for it every time.
        let start = (size as u64 * 9 / 10 + round * 3 * slice) % (size as u64 - slice);
        let range = format!("bytes={start}-{}", start + 64 * 1024 - 1);
        let slice_start = start / slice * slice;
        let slice_range = format!("bytes={slice_start}-{}", slice_start + slice - 1);
        let viewer_request = origin_head(stack, &origin_path, &[("range", &range)]);
        time_to_first_byte(origin_address, &viewer_request); // warms the origin's page cache for all three
        origin_ms.push(time_to_first_byte(origin_address, &viewer_request).as_secs_f64() * 1e3);
        if etag.is_empty() {
            // HEAD: the ETag without filling any slice.
            etag = common::request(stack.edge, "HEAD", &stack.signed(key), &[], b"")
                .header("etag")
                .unwrap()
                .to_owned();
        }
        let slice_request = origin_head(stack, &origin_path, &[("range", &slice_range), ("if-match", &etag)]);
        origin_slice_ms.push(time_to_first_byte(origin_address, &slice_request).as_secs_f64() * 1e3);
        let edge_head = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nrange: {range}\r\n\r\n",
            stack.signed(key),
            stack.edge
        );
        let before = stack.origin_bytes();
        edge_ms.push(time_to_first_byte(stack.edge, &edge_head).as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(50)); // let the slice fill finish
        bytes.push((stack.origin_bytes() - before) as f64);
        edge_hot_ms.push(time_to_first_byte(stack.edge, &edge_head).as_secs_f64() * 1e3);
    }
    let (edge, edge_hot, origin, origin_slice) = (median(edge_ms), median(edge_hot_ms), median(origin_ms), median(origin_slice_ms));
    println!(
        "\nseek: 64 KiB at 90% of a {} MiB object, cold at the edge (medians of 9)",
        size >> 20
    );
    println!(
        "  origin bytes per seek   {:>10.0}  ({:.2} slices of 1 MiB; target <= 2)",
        median(bytes.clone()),
        median(bytes) / 1048576.0
    );
    println!(
        "  time to first byte, ms  edge cold {edge:.3}, edge hot {edge_hot:.3}; origin, same 64 KiB range {origin:.3}; origin, the 1 MiB slice with If-Match {origin_slice:.3}"
    );
    println!(
        "  ratios                  edge / origin range {:.2} (target <= 1.2); edge / origin slice {:.2}",
        edge / origin,
        edge / origin_slice
    );
}

/// Keep-alive GETs of `target` on one connection; returns requests done.
fn hammer(address: SocketAddr, target: &str, until: Instant) -> u64 {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nhost: {address}\r\n\r\n");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut done = 0;
    while Instant::now() < until {
        stream.write_all(request.as_bytes()).unwrap();
        let length = read_head(&mut reader);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        done += 1;
    }
    done
}

fn hot_hits(stack: &Stack) {
    stack.put("/bench/small.bin", "application/octet-stream", &patterned(4096));
    let target = stack.signed("/bench/small.bin");
    assert_eq!(stack.get(&target).status, 200);
    let until = Instant::now() + Duration::from_secs(5);
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8).map(|_| scope.spawn(|| hammer(stack.edge, &target, until))).collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    println!("\nhot hits: 4 KiB, signed URL verified on every request, 8 keep-alive connections, 5 s");
    println!(
        "  {:.0} requests/s (edge on 1 pingora thread; the load generator shares the machine)",
        total as f64 / 5.0
    );
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return; // `cargo test --all-targets` builds this; the measurements belong to `cargo bench`.
    }
    let size_mib: usize = std::env::var("KEYFRONT_BENCH_SEEK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let stack = Stack::start_with("", "  memory: 256MiB");
    seek(&stack, size_mib << 20);
    hot_hits(&stack);
}
