//! Memory per viewer, measured on a `keyfront serve` process of its own:
//! viewers that stop reading mid-slice hold the piece they are being sent,
//! never the slice.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{Stack, free_address, patterned};

const MIB: usize = 1 << 20;
const SLICE: usize = 4 * MIB;
const SLICES: usize = 24;
/// What a stalled viewer may add to the process: its 32 KiB piece, its
/// share of the disk reads and the allocator's slack (measured 165 KiB;
/// 350 KiB with the 256 KiB pieces of before, 4 MiB before pieces).
const PER_STALLED_VIEWER: usize = 256 << 10;

/// A process's resident memory, in bytes.
fn resident_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// `stack`'s config (and so its disk tier) served by a `keyfront serve`
/// process of its own, whose memory can be measured: its edge address.
fn serve_in_own_process(stack: &Stack) -> (SocketAddr, Served) {
    let (edge, admin) = (free_address(), free_address());
    let config = std::fs::read_to_string(stack.config_path())
        .unwrap()
        .replace(&format!("\"{}\"", stack.edge), &format!("\"{edge}\""))
        .replace(&format!("\"{}\"", stack.admin), &format!("\"{admin}\""))
        .replace(&format!("access-{}.log", stack.edge.port()), "access-served.log");
    let config_path = stack.config_dir().join("served.yaml");
    std::fs::write(&config_path, config).unwrap();
    (edge, Served::start(&config_path, edge, None))
}

/// A viewer that asks for bytes from `start` on and reads only the head
/// and the first bytes: its connection and what it has read.
fn stalled_viewer(edge: SocketAddr, start: usize) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(edge).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "GET /keep/film.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes={start}-\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "the edge closed the connection");
        seen.extend_from_slice(&buffer[..read]);
    }
    (stream, seen)
}

/// 24 viewers, each stalled at the start of another 4 MiB slice that only
/// the disk tier holds (the memory tier, 2 MiB, can hold none, so none is
/// promoted): before pieces each held its whole slice until its socket took
/// it, and the process grew by 100 MiB; now each holds one 32 KiB piece, and
/// it grows by about 4 MiB with the disk reads and the allocator's slack. A
/// stalled viewer that reads on gets every byte. The process runs without
/// transparent huge pages, whose 2 MiB pages stay resident while any byte
/// of them is in use.
#[test]
fn stalled_viewers_of_disk_slices_hold_pieces_not_slices() {
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  memory: 2MiB\n  slice_size: 4MiB\n  disk: {path: disk, size: 512MiB}");
    let data = patterned(SLICES * SLICE + 1000);
    stack.put("/keep/film.mp4", "video/mp4", &data);
    assert!(stack.get("/keep/film.mp4").body == data);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.state.cache.usage().1.unwrap().1 < SLICES as u64 + 1 {
        assert!(Instant::now() < deadline, "every slice reaches the disk");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The same disk tier, served by a process of its own started afresh:
    // its memory tier is empty, so every slice is read from disk.
    let (edge, served) = serve_in_own_process(&stack);
    let pid = served.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|line| line.split_whitespace().eq(["THP_enabled:", "0"])),
        "transparent huge pages are off for keyfront serve"
    );
    let warm = common::request(edge, "GET", "/keep/film.mp4", &[("range", "bytes=0-99")], b"");
    assert!(warm.status == 206 && warm.body == data[..100]);
    std::thread::sleep(Duration::from_millis(300));
    let before = resident_bytes(pid);

    let mut viewers: Vec<(TcpStream, Vec<u8>)> = (0..SLICES).map(|slice| stalled_viewer(edge, slice * SLICE)).collect();
    let mut peak = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(50));
        peak = peak.max(resident_bytes(pid));
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < SLICES * PER_STALLED_VIEWER,
        "{SLICES} stalled viewers grew the process from {} MiB by {} KiB",
        before / MIB,
        grown / 1024
    );

    let (mut stream, mut response) = viewers.remove(3);
    stream.read_to_end(&mut response).unwrap();
    let body = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        response[body..] == data[3 * SLICE..],
        "a stalled viewer that reads on gets every byte"
    );
}

/// The kernel send buffer of this process's socket whose local address is
/// `local` and whose peer is `peer`: the in-process edge's side of a viewer
/// connection, found among the process's open files.
fn send_buffer_of(local: SocketAddr, peer: SocketAddr) -> Option<usize> {
    fn address(fd: i32, read: unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32) -> Option<SocketAddr> {
        let mut storage: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let read = unsafe { read(fd, (&raw mut storage).cast(), &mut length) };
        (read == 0 && i32::from(storage.sin_family) == libc::AF_INET).then(|| {
            let ip = std::net::Ipv4Addr::from(u32::from_be(storage.sin_addr.s_addr));
            SocketAddr::from((ip, u16::from_be(storage.sin_port)))
        })
    }
    std::fs::read_dir("/proc/self/fd").ok()?.flatten().find_map(|entry| {
        let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
        if address(fd, libc::getsockname)? != local || address(fd, libc::getpeername)? != peer {
            return None;
        }
        let mut size: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let read = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&raw mut size).cast(), &mut length) };
        (read == 0).then_some(size as usize)
    })
}

/// Each viewer connection's kernel send buffer is capped (Linux reports
/// twice the size set): 512 KiB unless configured, the configured size
/// otherwise, so a slow viewer pins a bounded amount of kernel memory.
#[test]
fn viewer_connections_have_a_bounded_send_buffer() {
    for (setting, expected) in [("", 2 * 512 * 1024), ("viewer_send_buffer: 64KiB", 2 * 64 * 1024)] {
        let stack = Stack::start_configured("", "", setting);
        let viewer = TcpStream::connect(stack.edge).unwrap();
        let client = viewer.local_addr().unwrap();
        let mut found = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while found.is_none() && Instant::now() < deadline {
            found = send_buffer_of(stack.edge, client);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(found, Some(expected), "{setting:?}");
    }
}

/// `count` threads, each asking `edge` for another `slice` bytes of
/// `/slow/film.mp4` at once (the n-th for the n-th slice).
fn slice_viewers(edge: SocketAddr, slice: usize, count: usize) -> Vec<std::thread::JoinHandle<common::Response>> {
    (0..count)
        .map(|index| {
            std::thread::spawn(move || {
                let range = format!("bytes={}-{}", index * slice, (index + 1) * slice - 1);
                common::request(edge, "GET", "/slow/film.mp4", &[("range", &range)], b"")
            })
        })
        .collect()
}

/// Slices arriving from upstream are held within an eighth of the memory
/// budget, whatever the number of viewers missing at once: 16 viewers each
/// missing another slice of a slow origin held 4 MiB in fills (every slice
/// at once) with an 8 MiB budget before, at most the 1 MiB reserve now;
/// the others wait their turn and every one gets its bytes.
#[test]
fn slices_arriving_at_once_are_held_within_the_fill_reserve() {
    const SLICE: usize = 256 * 1024;
    const VIEWERS: usize = 16;
    let public = "  - path_pattern: /slow/*\n    origin: relayed\n";
    let stack = Stack::start_with(public, "  memory: 8MiB\n  slice_size: 256KiB");
    let data = patterned(VIEWERS * SLICE);
    stack.put("/slow/film.mp4", "video/mp4", &data);
    let meta = common::request(stack.edge, "HEAD", "/slow/film.mp4", &[], b"");
    assert_eq!(meta.status, 200);
    stack.relay.trickle(Duration::from_millis(10));

    let filling = stack.state.cache.metrics.filling_bytes.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (filling, done) = (filling.clone(), done.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(filling.get());
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let viewers = slice_viewers(stack.edge, SLICE, VIEWERS);
    for (slice, viewer) in viewers.into_iter().enumerate() {
        let answer = viewer.join().unwrap();
        assert_eq!(answer.status, 206, "slice {slice}: {}", answer.text());
        assert!(answer.body == data[slice * SLICE..(slice + 1) * SLICE], "slice {slice}'s bytes");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    assert!(peak >= SLICE as i64 / 2, "fills held bytes while the test watched: peak {peak}");
    assert!(peak <= MIB as i64, "fills held {} KiB at once, over the 1 MiB reserve", peak / 1024);
    // A viewer has its last byte when the fill publishes it; the fill lets
    // its bytes go a moment later, once it has stored the slice.
    common::wait_until("every fill let its bytes go", || filling.get() == 0);
}

/// What a keep-alive viewer costs while it waits between requests: its
/// connection's buffers and task, 42 KiB each on this machine in a debug
/// build (the 16 KiB read buffer included; it was 64 KiB before
/// `VIEWER_READ_BUFFER_BYTES`, 56 KiB while the origin client's exchange
/// made every request's future, held from the first byte read, 37 KB).
#[test]
fn idle_keep_alive_viewers_cost_a_bounded_amount_each() {
    const VIEWERS: usize = 400;
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  memory: 64MiB");
    let data = patterned(4096);
    stack.put("/keep/small.bin", "application/octet-stream", &data);
    let (edge, served) = serve_in_own_process(&stack);
    let pid = served.child.id();
    let hit = |stream: &mut TcpStream| {
        write!(stream, "GET /keep/small.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = vec![0u8; 0];
        let mut buffer = [0u8; 8192];
        while !(answer.len() > data.len() && answer.ends_with(&data[data.len() - 16..])) {
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0, "the edge closed the connection");
            answer.extend_from_slice(&buffer[..read]);
        }
    };
    let mut warm = TcpStream::connect(edge).unwrap();
    hit(&mut warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = resident_bytes(pid);
    let viewers: Vec<TcpStream> = (0..VIEWERS)
        .map(|_| {
            let mut stream = TcpStream::connect(edge).unwrap();
            hit(&mut stream);
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let each = resident_bytes(pid).saturating_sub(before) / VIEWERS;
    assert!(each < 52 * 1024, "{VIEWERS} idle viewers cost {} KiB each", each / 1024);
    let mut again = viewers.into_iter().next_back().unwrap();
    hit(&mut again);
}

/// A viewer that misses many cold slices of a slow origin at once (24
/// connections from one address) holds at most half of the fill reserve:
/// another viewer's miss (through an origin that allows 1 s to its first
/// byte) is served at once instead of queueing behind every one of them
/// until its timeout (a 504; 4.8 s here with a 5 s timeout). The greedy
/// viewer's own requests get their bytes whole or a 504, never wrong bytes.
#[test]
fn one_viewers_misses_leave_room_for_another_viewers() {
    const SLICE: usize = 256 * 1024;
    const GREEDY: usize = 24;
    let public = "  - path_pattern: /slow/*\n    origin: relayed\n  - path_pattern: /quick/*\n    origin: relayed_impatient\n";
    let stack = Stack::start_with(public, "  memory: 8MiB\n  slice_size: 256KiB");
    let data = patterned(GREEDY * SLICE);
    stack.put("/slow/film.mp4", "video/mp4", &data);
    stack.put("/quick/page.html", "text/html", b"<p>another viewer's page</p>");
    assert_eq!(common::request(stack.edge, "HEAD", "/slow/film.mp4", &[], b"").status, 200);
    assert_eq!(common::request(stack.edge, "HEAD", "/quick/page.html", &[], b"").status, 200);
    // 1.6 s a slice: four slices take the whole 1 MiB reserve.
    stack.relay.trickle(Duration::from_millis(100));
    let greedy = slice_viewers(stack.edge, SLICE, GREEDY);
    std::thread::sleep(Duration::from_millis(300));
    let other = common::request_from("127.0.0.2".parse().unwrap(), stack.edge, "GET", "/quick/page.html", &[]);
    assert_eq!(
        (other.status, other.text().as_str()),
        (200, "<p>another viewer's page</p>"),
        "another viewer's miss is not queued behind the greedy one's"
    );
    for (slice, viewer) in greedy.into_iter().enumerate() {
        let answer = viewer.join().unwrap();
        match answer.status {
            206 => assert!(answer.body == data[slice * SLICE..(slice + 1) * SLICE], "slice {slice}'s bytes"),
            504 => assert!(!answer.text().contains("film"), "slice {slice}: {}", answer.text()),
            status => panic!("slice {slice}: {status} {}", answer.text()),
        }
    }
}
