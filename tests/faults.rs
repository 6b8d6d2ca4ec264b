//! Faults injected for real: an origin process killed while a viewer
//! streams and started again, disk-tier files damaged behind the edge's
//! back, and viewers that connect and go idle. Each asserts that nothing
//! wrong is served and nothing partial is cached.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ACCESS_KEY, BUCKET, SECRET, Stack, free_address, patterned, request, wait_for, wait_until};
use keyfront::origin::{Origin, put_object};

/// `keyfront origin` as a child process, killed by its own handle.
struct OriginProcess(Child);

impl OriginProcess {
    fn start(root: &std::path::Path, address: SocketAddr) -> OriginProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_keyfront"))
            .args(["origin", "--root", root.to_str().unwrap(), "--listen", &address.to_string()])
            .args(["--bucket", &format!("{BUCKET}={ACCESS_KEY}:{SECRET}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(address);
        OriginProcess(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The origin process dies while a viewer streams a 32 MiB object: the
/// viewer is cut short with only right bytes, and once the origin is back
/// the next viewer gets the object whole.
#[test]
fn an_origin_killed_while_a_viewer_streams_then_restarted() {
    let root = tempfile::tempdir().unwrap();
    let address = free_address();
    let mut origin = OriginProcess::start(root.path(), address);
    let stack = Stack::start("");
    let process = format!(
        "{{type: s3, endpoint: \"http://{address}\", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s, first_byte_timeout: 2s}}"
    );
    stack.route_to_origin("process", &process, "/proc/*");
    let data = patterned(32 << 20);
    let client = Origin::embedded(address, BUCKET, ACCESS_KEY, SECRET);
    assert_eq!(
        put_object(&client, "/proc/film.mp4", &[("content-type", "video/mp4")], &data).unwrap(),
        200
    );

    let mut viewer = TcpStream::connect(stack.edge).unwrap();
    viewer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        viewer,
        "GET /proc/film.mp4 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        stack.edge
    )
    .unwrap();
    let mut received = vec![0u8; 64 * 1024];
    viewer.read_exact(&mut received).unwrap();
    // The viewer pauses; the edge fills a slice or two ahead, then waits.
    std::thread::sleep(Duration::from_millis(300));
    origin.kill();
    viewer.read_to_end(&mut received).unwrap();
    let body_start = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &received[body_start..];
    assert!(body.len() < data.len(), "the viewer is cut short ({} bytes)", body.len());
    assert!(body == &data[..body.len()], "and every byte it got is right");
    let down = stack.get("/proc/film.mp4");
    assert!(
        down.status >= 500 || down.body.len() < data.len(),
        "no whole answer without the origin"
    );

    let _origin = OriginProcess::start(root.path(), address);
    let whole = stack.get("/proc/film.mp4");
    assert_eq!(whole.status, 200);
    assert!(
        whole.body == data,
        "the next viewer gets the object whole ({} bytes)",
        whole.body.len()
    );
    let cached = stack.get("/proc/film.mp4");
    assert!(cached.body == data && cached.header("x-cache") == Some("Hit from keyfront"));
}

fn slice_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("disk/objects"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|object| std::fs::read_dir(object.path()).unwrap().flatten().map(|f| f.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slice"))
        .collect();
    files.sort();
    files
}

/// Slice files truncated, swapped for another slice's file, or deleted
/// while the edge runs: each is a miss, refetched, never served.
#[test]
fn damaged_disk_files_are_misses_never_answers() {
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  slice_size: 64KiB\n  disk: {path: disk, size: 64MiB}");
    let data = patterned(4 * 65536);
    stack.put("/keep/film.mp4", "video/mp4", &data);
    assert!(stack.get("/keep/film.mp4").body == data);
    wait_until("four slices reach the disk", || slice_files(stack.config_dir()).len() == 4);
    let files = slice_files(stack.config_dir());
    std::fs::copy(&files[1], &files[0]).unwrap(); // another slice's bytes, valid CRC
    let truncated = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &truncated[..truncated.len() / 2]).unwrap();
    std::fs::remove_file(&files[3]).unwrap();

    // A restarted edge has an empty memory tier, so every slice is read from disk.
    let (edge, state) = stack.start_another_edge();
    let response = request(edge, "GET", "/keep/film.mp4", &[], b"");
    assert_eq!(response.status, 200);
    assert!(response.body == data, "only right bytes");
    let refetched = state.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(refetched, 3, "the swapped, truncated and deleted slices came from the origin");
}

/// A disk slice is read and checked piece by piece: a piece that fails its
/// check mid-slice, after the pieces before it went out, is fetched again
/// from the origin for that version only (the rest of the answer is
/// byte-exact); when the origin no longer has that version, the answer
/// breaks off, never joining two versions.
#[test]
fn a_damaged_piece_mid_slice_is_refetched_never_stitched() {
    const MIB: usize = 1 << 20;
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  slice_size: 1MiB\n  disk: {path: disk, size: 64MiB}");
    let data = patterned(2 * MIB + 5);
    stack.put("/keep/film.mp4", "video/mp4", &data);
    assert!(stack.get("/keep/film.mp4").body == data);
    wait_until("three slices reach the disk", || slice_files(stack.config_dir()).len() == 3);
    let first_slice = || {
        let files = slice_files(stack.config_dir());
        let largest = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).max().unwrap();
        files
            .into_iter()
            .find(|f| std::fs::metadata(f).unwrap().len() == largest && f.to_str().unwrap().ends_with("-0.slice"))
            .unwrap()
    };
    let damage = |file: &std::path::Path| {
        let mut bytes = std::fs::read(file).unwrap();
        let third_piece = bytes.len() - MIB + 2 * keyfront::cache::PIECE_BYTES + 11;
        bytes[third_piece] ^= 0x5a;
        std::fs::write(file, bytes).unwrap();
    };
    damage(&first_slice());

    // A restarted edge has an empty memory tier: every piece is read from disk.
    let (edge, state) = stack.start_another_edge();
    let response = request(edge, "GET", "/keep/film.mp4", &[], b"");
    assert_eq!((response.status, response.body.len()), (200, data.len()));
    assert!(response.body == data, "the damaged piece was replaced by the origin's bytes");
    let requests = || state.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(requests(), 1, "only the damaged slice came from the origin");
    assert_eq!(common::disk_errors(&state), 1);
    let seek = request(edge, "GET", "/keep/film.mp4", &[("range", "bytes=600000-1500000")], b"");
    assert!(
        seek.status == 206 && seek.body == data[600_000..=1_500_000],
        "and it is whole again"
    );

    // The same damage, and the object replaced at the origin meanwhile.
    wait_until("the refetched slice reaches the disk", || {
        slice_files(stack.config_dir()).len() == 3
    });
    damage(&first_slice());
    let replaced: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
    stack.put("/keep/film.mp4", "video/mp4", &replaced);
    let (edge, _state) = stack.start_another_edge();
    let broken = request(edge, "GET", "/keep/film.mp4", &[], b"");
    assert_eq!(broken.status, 200, "the header went out before the damage was found");
    assert!(broken.body.len() < data.len(), "the answer breaks off");
    assert!(
        broken.body[..] == data[..broken.body.len()],
        "every byte sent is the cached version's"
    );
    let current = request(edge, "GET", "/keep/film.mp4", &[], b"");
    assert!(current.body == replaced, "the next request gets the new version");
}

/// 2,000 idle keep-alive connections are closed after `viewer_idle_timeout`;
/// a connection that comes back sooner is served, as fast as ever.
#[test]
fn idle_viewer_connections_are_let_go() {
    let stack = Stack::start_configured("  - path_pattern: /open/*\n    origin: store\n", "", "viewer_idle_timeout: 1s");
    stack.put("/open/a.txt", "text/plain", b"hello");
    let ask = |connection: &mut TcpStream| {
        write!(connection, "GET /open/a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"hello") {
            assert_eq!(connection.read(&mut byte).unwrap(), 1, "the edge closed a live connection");
            response.push(byte[0]);
        }
    };
    let mut idle: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(stack.edge).unwrap()).collect();
    for connection in &mut idle {
        connection.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        ask(connection);
    }
    let mut lively = TcpStream::connect(stack.edge).unwrap();
    ask(&mut lively);
    std::thread::sleep(Duration::from_millis(500));
    let hit = Instant::now();
    ask(&mut lively);
    assert!(
        hit.elapsed() < Duration::from_millis(500),
        "2,000 idle connections do not slow a hit: {:?}",
        hit.elapsed()
    );
    let started = Instant::now();
    for connection in &mut idle {
        let mut byte = [0u8; 1];
        assert_eq!(connection.read(&mut byte).unwrap(), 0, "an idle connection is closed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the timeout, not the read timeout"
    );
}

/// Whether the edge has closed `connection`, waiting up to `wait` to see.
fn closed_within(connection: &mut TcpStream, wait: Duration) -> bool {
    connection.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match connection.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the edge answered a header it never got whole"),
        Err(error) => !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Slow-loris viewers, dribbling a header a byte at a time (each byte well
/// within pingora's per-read timeout), are cut at `viewer_header_timeout`,
/// on a new connection and on a kept-alive one (after its idle time), while
/// other viewers' hits go on.
#[test]
fn slow_loris_headers_are_cut_at_the_header_deadline() {
    let stack = Stack::start_configured(
        "  - path_pattern: /open/*\n    origin: store\n",
        "",
        "viewer_header_timeout: 1s\nviewer_idle_timeout: 2s",
    );
    stack.put("/open/a.txt", "text/plain", b"hello");
    let dribble = |mut connection: TcpStream| -> Duration {
        let started = Instant::now();
        for byte in b"GET /open/a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain([b'a'; 200].iter()) {
            if connection.write_all(&[*byte]).is_err() || closed_within(&mut connection, Duration::from_millis(150)) {
                return started.elapsed();
            }
        }
        panic!("a header dribbled for {:?} was never cut", started.elapsed());
    };
    let loris: Vec<_> = (0..50)
        .map(|_| {
            let connection = TcpStream::connect(stack.edge).unwrap();
            std::thread::spawn(move || dribble(connection))
        })
        .collect();
    for _ in 0..20 {
        let hit = request(stack.edge, "GET", "/open/a.txt", &[], b"");
        assert_eq!((hit.status, hit.body.as_slice()), (200, &b"hello"[..]), "other viewers are served");
    }
    for cut_after in loris.into_iter().map(|t| t.join().unwrap()) {
        assert!(
            cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3),
            "cut at the 1 s deadline, not before and not at pingora's 60 s read timeout: {cut_after:?}"
        );
    }
    // A kept-alive connection: its next header gets the idle time (2 s) and
    // then the header's own second.
    let mut kept = TcpStream::connect(stack.edge).unwrap();
    write!(kept, "GET /open/a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = [0u8; 4096];
    let mut read = 0;
    while !answer[..read].ends_with(b"hello") {
        read += kept.read(&mut answer[read..]).unwrap();
    }
    let cut_after = dribble(kept);
    assert!(
        cut_after >= Duration::from_millis(2900) && cut_after < Duration::from_secs(5),
        "idle time and header deadline: {cut_after:?}"
    );
}

/// A viewer that stops reading a 32 MiB download is cut after
/// `viewer_send_timeout` (only the bytes it had been sent, all right), and
/// the object is then served whole to the next viewer.
#[test]
fn a_viewer_that_stops_reading_is_cut() {
    let stack = Stack::start_configured("  - path_pattern: /open/*\n    origin: store\n", "", "viewer_send_timeout: 1s");
    let data = patterned(32 << 20);
    stack.put("/open/big.bin", "application/octet-stream", &data);
    let mut stalled = TcpStream::connect(stack.edge).unwrap();
    write!(stalled, "GET /open/big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    let body_start = received.windows(4).position(|w| w == b"\r\n\r\n").expect("a header") + 4;
    let body = &received[body_start..];
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(
        body.len() < data.len(),
        "cut short, not sent whole to a viewer that stopped reading"
    );
    assert!(body == &data[..body.len()], "only right bytes");
    let whole = request(stack.edge, "GET", "/open/big.bin", &[], b"");
    assert!(whole.status == 200 && whole.body == data, "the next viewer gets it whole");
}

/// A viewer that resets its connection mid-body harms nobody: a viewer of
/// the same object at the same time, and the next one, get it byte-exact.
#[test]
fn a_viewer_reset_mid_body_harms_nobody() {
    let stack = Stack::start_with("  - path_pattern: /open/*\n    origin: store\n", "  slice_size: 1MiB");
    let data = patterned(8 << 20);
    stack.put("/open/film.mp4", "video/mp4", &data);
    let alongside = {
        let edge = stack.edge;
        std::thread::spawn(move || request(edge, "GET", "/open/film.mp4", &[], b""))
    };
    for _ in 0..5 {
        let mut viewer = TcpStream::connect(stack.edge).unwrap();
        write!(viewer, "GET /open/film.mp4 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut some = vec![0u8; 100_000];
        viewer.read_exact(&mut some).unwrap();
        // Closing with unread bytes in the receive buffer sends a reset.
        drop(viewer);
    }
    let alongside = alongside.join().unwrap();
    assert!(
        alongside.status == 200 && alongside.body == data,
        "the viewer alongside got it whole"
    );
    let next = request(stack.edge, "GET", "/open/film.mp4", &[], b"");
    assert!(next.status == 200 && next.body == data, "the next viewer gets it whole");
    assert_eq!(stack.origin_requests(), 8, "each slice fetched once, resets or not");
}

/// The object replaced at the origin between a viewer's HEAD and its GET
/// (same size, other bytes), and again while a stale copy is revalidated:
/// every answer is one whole version, never a mix.
#[test]
fn an_object_replaced_between_head_and_get_or_during_revalidation() {
    let stack = Stack::start_with("  - path_pattern: /swap/*\n    origin: store\n", "  slice_size: 64KiB");
    let versions: Vec<Vec<u8>> = (0..3u8)
        .map(|v| patterned(3 * 65536 + 11).iter().map(|b| b ^ (v * 85)).collect())
        .collect();
    let put = |version: &[u8]| {
        stack.put_with(
            "/swap/doc.pdf",
            &[("content-type", "application/pdf"), ("cache-control", "max-age=1")],
            version,
        )
    };
    put(&versions[0]);
    let head = request(stack.edge, "HEAD", "/swap/doc.pdf", &[], b"");
    assert_eq!(head.status, 200);
    let old_etag = head.header("etag").unwrap().to_owned();
    put(&versions[1]);
    let ranged = request(stack.edge, "GET", "/swap/doc.pdf", &[("Range", "bytes=70000-140000")], b"");
    assert_eq!(ranged.status, 206);
    assert!(
        ranged.body == versions[1][70000..=140000],
        "the GET after the HEAD is the new version only"
    );
    assert_ne!(ranged.header("etag"), Some(old_etag.as_str()));
    let whole = stack.get("/swap/doc.pdf");
    assert!(whole.body == versions[1]);

    stack.state.cache.clock.advance(Duration::from_secs(2));
    put(&versions[2]);
    let revalidated = stack.get("/swap/doc.pdf");
    assert_eq!(revalidated.status, 200);
    assert!(
        revalidated.body == versions[2],
        "a stale copy revalidated against a replaced object is the new one, whole"
    );
    let ranged = request(stack.edge, "GET", "/swap/doc.pdf", &[("Range", "bytes=0-70000")], b"");
    assert!(ranged.body == versions[2][..=70000]);
}

/// Reloads, one after another, while four viewers fetch: no request fails
/// and every body is right.
#[test]
fn reloads_under_load_fail_no_request() {
    let stack = Stack::start("  - path_pattern: /open/*\n    origin: store\n");
    let data = patterned(100_000);
    stack.put("/open/clip.mp4", "video/mp4", &data);
    let signed = stack.signed("/clip.mp4");
    stack.put("/clip.mp4", "video/mp4", &data);
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let viewers: Vec<_> = (0..4)
        .map(|i| {
            let (edge, running, target) = (
                stack.edge,
                running.clone(),
                if i % 2 == 0 { "/open/clip.mp4".to_owned() } else { signed.clone() },
            );
            let data = data.clone();
            std::thread::spawn(move || {
                let mut served = 0;
                while running.load(std::sync::atomic::Ordering::SeqCst) || served == 0 {
                    let response = request(edge, "GET", &target, &[("Range", "bytes=1000-60999")], b"");
                    assert_eq!(response.status, 206, "{target}: {}", response.text());
                    assert!(response.body == data[1000..61000]);
                    served += 1;
                }
                served
            })
        })
        .collect();
    for _ in 0..20 {
        stack.rewrite_config(|config| config);
    }
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let served: usize = viewers.into_iter().map(|viewer| viewer.join().unwrap()).sum();
    assert!(served >= 4, "{served} requests");
}

/// An origin that closes a kept connection just as the next request goes
/// out on it (as S3 does to connections it finds idle): the fill asks once
/// more on a new connection, and the viewer never sees the failure.
#[test]
fn a_kept_origin_connection_closed_under_a_request_is_retried_on_a_new_one() {
    let stack = Stack::start("  - path_pattern: /relayed/*\n    origin: relayed\n");
    let body = |index: usize| patterned(1000 + index);
    for index in 0..4 {
        stack.put(&format!("/relayed/{index}"), "application/octet-stream", &body(index));
    }
    stack.relay.close_at_second_request();
    for index in 0..4 {
        let answer = stack.get(&format!("/relayed/{index}"));
        assert!(
            answer.status == 200 && answer.body == body(index),
            "/relayed/{index}: {} {}",
            answer.status,
            answer.text()
        );
    }
    // The first miss dialled; each later one found its kept connection
    // closed and dialled again.
    assert_eq!(stack.relay.connections(), 4);
}
