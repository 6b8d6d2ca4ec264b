//! The slice cache over real sockets, with the origin's request counter as
//! the witness: what is fetched, how often, and what is never stitched.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{Response, Stack, patterned, request, wait_until};
use keyfront::range::{ByteRange, Multipart, RangeRequest, parse_range};

const SLICE: usize = 64 * 1024;

/// A deterministic generator for the randomized range tests (xorshift64).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn get_range(stack: &Stack, target: &str, range: &str) -> Response {
    request(stack.edge, "GET", target, &[("Range", range)], b"")
}

/// Random single and multiple ranges, across slice edges and the object's
/// end, answered byte for byte: first while the slices are being filled,
/// then again from the cache.
#[test]
fn random_ranges_are_byte_exact_on_misses_and_hits() {
    let stack = Stack::start_with("", "  slice_size: 64KiB");
    let data = patterned(5 * SLICE + 12_345);
    stack.put("/p/object.bin", "application/octet-stream", &data);
    let target = stack.signed("/p/object.bin");
    for pass in ["filling", "cached"] {
        assert_random_ranges(stack.edge, &target, &data, SLICE, pass);
    }
}

/// The same with slices of four pieces: ranges that start, end and cross
/// inside a slice at piece edges, answered from fills, from memory, and
/// from disk on a restarted edge (whose memory tier is empty), byte for byte.
#[test]
fn ranges_across_pieces_are_byte_exact_from_every_tier() {
    const MIB: usize = 1 << 20;
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  slice_size: 1MiB\n  disk: {path: disk, size: 64MiB}");
    let data = patterned(5 * MIB + 12_345);
    stack.put("/keep/object.bin", "application/octet-stream", &data);
    let piece = keyfront::cache::PIECE_BYTES as u64;
    let edges = [
        format!("bytes={}-{}", piece - 1, piece),
        format!("bytes={}-{}", 3 * piece, 5 * piece - 1),
        format!("bytes={}-{},{}-{}", piece - 2, piece + 1, MIB - 1, MIB as u64 + piece),
        format!("bytes={}-", 4 * MIB as u64 + 3 * piece + 7),
    ];
    let check = |edge, pass: &str| {
        for range in &edges {
            let response = request(edge, "GET", "/keep/object.bin", &[("Range", range)], b"");
            let RangeRequest::Partial(ranges) = parse_range(Some(range), data.len() as u64) else {
                panic!("{range} is satisfiable")
            };
            assert_range_answer(&response, &ranges, &data, &format!("{pass}: {range}"));
        }
        assert_random_ranges(edge, "/keep/object.bin", &data, MIB, pass);
    };
    check(stack.edge, "filling");
    check(stack.edge, "memory");
    wait_until("every slice is on disk", || slice_files(stack.config_dir()).len() == 6);
    let (edge, state) = stack.start_another_edge();
    check(edge, "disk");
    assert_eq!(
        state.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "all from disk"
    );
}

/// A 206 with exactly the bytes of `ranges` of `data`: one range as such,
/// several as multipart/byteranges with keyfront's framing.
fn assert_range_answer(response: &Response, ranges: &[ByteRange], data: &[u8], label: &str) {
    let size = data.len() as u64;
    assert_eq!(response.status, 206, "{label}");
    if let [r] = ranges {
        assert_eq!(response.header("content-range"), Some(r.content_range(size).as_str()), "{label}");
        assert!(response.body == data[r.start as usize..=r.end as usize], "{label}: wrong bytes");
        return;
    }
    let framing = Multipart {
        boundary: "keyfront-byteranges-5f2c9e7a",
        content_type: "application/octet-stream",
        size,
    };
    let mut expected = Vec::new();
    for r in ranges {
        expected.extend_from_slice(framing.part_head(*r).as_bytes());
        expected.extend_from_slice(&data[r.start as usize..=r.end as usize]);
    }
    expected.extend_from_slice(framing.tail().as_bytes());
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges; boundary=")
    );
    assert!(response.body == expected, "{label}: wrong multipart body");
}

/// 80 random ranges (single, open, suffix, multiple) of `data` at `target`,
/// across slices of `slice` bytes, each answered byte for byte; then the
/// whole object.
fn assert_random_ranges(edge: std::net::SocketAddr, target: &str, data: &[u8], slice: usize, pass: &str) {
    let size = data.len();
    let mut random = Random(0x5eed_1234);
    for case in 0..80 {
        let kind = random.below(4);
        let start = random.below(size as u64);
        let (header, ranges) = match kind {
            0 => {
                let end = (start + random.below(3 * slice as u64)).min(size as u64 - 1);
                (format!("bytes={start}-{end}"), vec![ByteRange { start, end }])
            }
            1 => (
                format!("bytes={start}-"),
                vec![ByteRange {
                    start,
                    end: size as u64 - 1,
                }],
            ),
            2 => {
                let n = 1 + random.below(2 * slice as u64);
                let first = (size as u64).saturating_sub(n);
                (
                    format!("bytes=-{n}"),
                    vec![ByteRange {
                        start: first,
                        end: size as u64 - 1,
                    }],
                )
            }
            _ => {
                let mut cuts: Vec<u64> = (0..4).map(|_| random.below(size as u64)).collect();
                cuts.sort();
                cuts.dedup();
                let ranges: Vec<ByteRange> = cuts
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| ByteRange {
                        start: c[0],
                        end: c[1] - 1,
                    })
                    .filter(|r| r.start <= r.end)
                    .collect();
                if ranges.len() < 2 {
                    continue;
                }
                let spec: Vec<String> = ranges.iter().map(|r| format!("{}-{}", r.start, r.end)).collect();
                (format!("bytes={}", spec.join(",")), ranges)
            }
        };
        let response = request(edge, "GET", target, &[("Range", &header)], b"");
        assert_range_answer(&response, &ranges, data, &format!("{pass} case {case}: {header}"));
    }
    let whole = request(edge, "GET", target, &[], b"");
    assert_eq!(whole.status, 200);
    assert!(whole.body == data, "{pass}: the whole object");
    let open_ended = request(edge, "GET", target, &[("Range", "bytes=0-")], b"");
    assert_eq!((open_ended.status, open_ended.body.len()), (206, size));
}

#[test]
fn fifty_concurrent_cold_requests_make_one_origin_request() {
    let stack = Stack::start("");
    let data = patterned(300_000);
    stack.put("/hot/launch.mp4", "video/mp4", &data);
    let target = stack.signed("/hot/launch.mp4");
    let before = stack.origin_requests();
    let barrier = std::sync::Barrier::new(50);
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    stack.get(&target).body
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong: Vec<usize> = bodies.iter().filter(|body| **body != data).map(Vec::len).collect();
    assert!(
        wrong.is_empty(),
        "every viewer gets the whole object; these got other bodies of lengths {wrong:?}"
    );
    assert_eq!(stack.origin_requests() - before, 1, "one origin request for fifty viewers");
    let metrics = request(stack.admin, "GET", "/metrics", &[], b"").text();
    let waits = metrics
        .lines()
        .find(|l| l.starts_with("keyfront_coalesced_waits_total"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(waits.parse::<u64>().unwrap() >= 1, "the others joined the first one's fill");
}

#[test]
fn concurrent_viewers_of_a_many_slice_object_fetch_each_slice_once() {
    // A memory tier a quarter of the object's size: most slices live on disk.
    let stack = Stack::start_with("", "  memory: 1MiB\n  slice_size: 64KiB\n  disk: {path: disk, size: 64MiB}");
    let size = 64 * 64 * 1024;
    let data = patterned(size);
    stack.put("/film.mp4", "video/mp4", &data);
    let target = stack.signed("/film.mp4");
    let (requests, bytes) = (stack.origin_requests(), stack.origin_bytes());
    let barrier = std::sync::Barrier::new(30);
    std::thread::scope(|scope| {
        for _ in 0..30 {
            scope.spawn(|| {
                barrier.wait();
                assert!(stack.get(&target).body == data, "every viewer gets the whole object");
            });
        }
    });
    // Fills outlive their viewers; wait for the stragglers, then count.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(stack.origin_requests() - requests, 64, "one origin request per slice");
    assert_eq!(stack.origin_bytes() - bytes, size as u64, "every byte fetched once");
}

#[test]
fn a_seek_near_the_end_fetches_only_the_slices_it_covers() {
    let behaviors = "  - path_pattern: /big/*\n    origin: store\n    slice_size: 256KiB\n";
    let stack = Stack::start(behaviors);
    let size = 4 * 1024 * 1024 + 77;
    stack.put("/big/movie.mp4", "video/mp4", &patterned(size));
    let (requests, bytes) = (stack.origin_requests(), stack.origin_bytes());
    let start = size - 1000;
    let response = get_range(&stack, "/big/movie.mp4", &format!("bytes={start}-{}", start + 99));
    assert_eq!(response.status, 206);
    assert_eq!(response.header("x-cache"), Some("Miss from keyfront"));
    assert!(response.body == patterned(size)[start..start + 100]);
    // The seek lands deep in its slice: the viewer's bytes come straight from
    // the origin while the aligned slice is filled for the cache.
    assert_eq!(stack.origin_requests() - requests, 2, "the slice, and the viewer's bytes within it");
    wait_until("the slice fill is done", || stack.origin_bytes() - bytes >= 256 * 1024);
    assert!(stack.origin_bytes() - bytes <= 2 * 256 * 1024, "at most two slices were read");
    let other_slice = get_range(&stack, "/big/movie.mp4", "bytes=0-99");
    assert_eq!(
        other_slice.header("x-cache"),
        Some("Miss from keyfront"),
        "fresh metadata, uncached bytes: a miss"
    );
    let requests = requests + 1; // that slice's own fill
    let again = get_range(&stack, "/big/movie.mp4", &format!("bytes={start}-{}", start + 99));
    assert_eq!(
        (again.header("x-cache"), stack.origin_requests() - requests),
        (Some("Hit from keyfront"), 2)
    );
    // A suffix range needs the size first: a HEAD, then the one slice (the
    // last slice holds the object's final 77 bytes).
    stack.put("/big/other.mp4", "video/mp4", &patterned(size));
    let requests = stack.origin_requests();
    let tail = get_range(&stack, "/big/other.mp4", "bytes=-50");
    assert!(tail.body == patterned(size)[size - 50..]);
    assert_eq!(stack.origin_requests() - requests, 2);
}

/// A cold seek deep into a slice takes the object's metadata from the
/// origin's answer to the viewer's own range (one round trip to the first
/// byte): what it learns there must be the whole object's truth.
#[test]
fn a_cold_deep_seek_learns_the_object_from_its_own_range() {
    let stack = Stack::start("  - path_pattern: /big/*\n    origin: store\n    slice_size: 256KiB\n");
    let size = 1024 * 1024 + 5;
    let content = patterned(size);
    for name in ["a", "b", "c", "d"] {
        stack.put(&format!("/big/{name}.bin"), "video/mp4", &content);
    }
    let seek = get_range(&stack, "/big/a.bin", "bytes=300000-300099");
    assert_eq!(seek.status, 206);
    assert_eq!(seek.header("content-range"), Some(format!("bytes 300000-300099/{size}").as_str()));
    assert!(seek.body == content[300_000..300_100]);
    let head = request(stack.edge, "HEAD", "/big/a.bin", &[], b"");
    assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(
        (head.header("content-type"), head.header("etag")),
        (Some("video/mp4"), seek.header("etag"))
    );
    let whole = stack.get("/big/a.bin");
    assert_eq!(whole.status, 200);
    assert!(
        whole.body == content,
        "the whole object, byte for byte, after a seek learned its size"
    );

    // Open-ended: the first slice's rest comes directly, the others from the cache's fills.
    let open = get_range(&stack, "/big/b.bin", "bytes=300000-");
    assert_eq!(open.status, 206);
    assert!(open.body == content[300_000..], "{} bytes", open.body.len());
    // Past the end: the origin's 416 is not metadata; the answer is still right.
    let past = get_range(&stack, "/big/c.bin", "bytes=99999999-");
    assert_eq!(
        (past.status, past.header("content-range")),
        (416, Some(format!("bytes */{size}").as_str()))
    );
    // Hostile ranges on objects never seen: the largest offset there is, and
    // a range that ends before it starts. Neither panics nor teaches the
    // cache a wrong size: the first is unsatisfiable, the second ignored.
    stack.put("/big/e.bin", "video/mp4", &content);
    let huge = get_range(&stack, "/big/e.bin", &format!("bytes={}-", u64::MAX));
    assert_eq!(
        (huge.status, huge.header("content-range")),
        (416, Some(format!("bytes */{size}").as_str()))
    );
    assert!(huge.body.is_empty());
    stack.put("/big/f.bin", "video/mp4", &content);
    let backwards = get_range(&stack, "/big/f.bin", "bytes=300000-200000");
    assert_eq!(backwards.status, 200);
    assert!(backwards.body == content, "an invalid range is ignored: the whole object");
    let after = request(stack.edge, "HEAD", "/big/e.bin", &[], b"");
    assert_eq!(after.header("content-length"), Some(size.to_string().as_str()));
    // A conditional seek takes the aligned path: an If-Range that does not match is the whole object.
    let conditional = request(
        stack.edge,
        "GET",
        "/big/d.bin",
        &[("Range", "bytes=300000-300099"), ("If-Range", "\"another-version\"")],
        b"",
    );
    assert_eq!(conditional.status, 200);
    assert!(conditional.body == content);
}

#[test]
fn hits_conditionals_and_head_are_answered_without_the_origin() {
    let stack = Stack::start("");
    stack.put("/doc/guide.pdf", "application/pdf", &patterned(10_000));
    let target = stack.signed("/doc/guide.pdf");
    let first = stack.get(&target);
    assert_eq!(first.header("x-cache"), Some("Miss from keyfront"));
    let requests = stack.origin_requests();
    let second = stack.get(&target);
    assert_eq!(second.header("x-cache"), Some("Hit from keyfront"));
    assert!(second.header("age").is_some());
    assert_eq!(second.body, first.body);
    let head = request(stack.edge, "HEAD", &target, &[], b"");
    assert_eq!(
        (head.status, head.header("content-length"), head.header("x-cache")),
        (200, Some("10000"), Some("Hit from keyfront"))
    );
    let etag = first.header("etag").unwrap().to_owned();
    let not_modified = request(stack.edge, "GET", &target, &[("If-None-Match", &etag)], b"");
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    let since = request(
        stack.edge,
        "GET",
        &target,
        &[("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
        b"",
    );
    assert_eq!(since.status, 304);
    let stale_if_range = request(
        stack.edge,
        "GET",
        &target,
        &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
        b"",
    );
    assert_eq!((stale_if_range.status, stale_if_range.body.len()), (200, 10_000));
    let fresh_if_range = request(stack.edge, "GET", &target, &[("Range", "bytes=0-9"), ("If-Range", &etag)], b"");
    assert_eq!((fresh_if_range.status, fresh_if_range.body.len()), (206, 10));
    let beyond = get_range(&stack, &target, "bytes=20000-");
    assert_eq!((beyond.status, beyond.header("content-range")), (416, Some("bytes */10000")));
    let invalid = get_range(&stack, &target, "bytes=9-1");
    assert_eq!((invalid.status, invalid.body.len()), (200, 10_000));
    assert_eq!(stack.origin_requests(), requests, "all of the above came from the cache");
}

fn slice_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for object in std::fs::read_dir(dir.join("disk/objects")).into_iter().flatten().flatten() {
        files.extend(
            std::fs::read_dir(object.path())
                .unwrap()
                .flatten()
                .map(|f| f.path())
                .filter(|p| p.extension().is_some_and(|e| e == "slice")),
        );
    }
    files
}

#[test]
fn the_disk_tier_survives_a_restart_and_damaged_files_are_refetched() {
    // Public, because the restarted edge listens on another port (another host for signed URLs).
    let public = "  - path_pattern: /keep/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  slice_size: 64KiB\n  disk: {path: disk, size: 64MiB}");
    let data = patterned(3 * SLICE + 5);
    stack.put("/keep/film.mp4", "video/mp4", &data);
    let path = "/keep/film.mp4";
    assert!(stack.get(path).body == data);
    wait_until("four slices are on disk", || slice_files(stack.config_dir()).len() == 4);
    wait_until("the metadata is on disk", || {
        std::fs::read_dir(stack.config_dir().join("disk/objects"))
            .unwrap()
            .flatten()
            .any(|d| d.path().join("meta.json").exists())
    });

    let (edge, restarted) = stack.start_another_edge();
    let response = request(edge, "GET", path, &[], b"");
    assert_eq!((response.status, response.body.len()), (200, data.len()), "{}", response.text());
    assert!(response.body == data, "the restarted edge serves the same bytes");
    assert_eq!(response.header("x-cache"), Some("Hit from keyfront"));
    assert_eq!(
        restarted.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a restart keeps disk hits"
    );

    for file in slice_files(stack.config_dir()) {
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
    }
    let (edge, state) = stack.start_another_edge();
    let repaired = request(edge, "GET", path, &[], b"");
    assert!(repaired.body == data, "damaged slices are misses, refetched");
    // Each damaged file is counted at least once, by the node that found
    // it: a prefetch and the answer may both open one before its refetch
    // replaces it, and it is counted as that read ends, which may be just
    // after the answer. The restarted edge still runs on the same
    // directory, and under load its background reads of the slices it
    // served (promotions into memory) may come after the damage: then it
    // finds a file damaged and removes it, and the last edge has a plain
    // miss for that slice.
    wait_until("each damaged file is counted", || {
        common::disk_errors(&restarted) + common::disk_errors(&state) >= 4
    });
    assert_eq!(state.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[test]
fn an_object_that_changes_mid_response_is_never_stitched() {
    let stack = Stack::start_with("", "  slice_size: 64KiB");
    let size = 4 * SLICE;
    let old: Vec<u8> = patterned(size);
    let new: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
    stack.put("/live/feed.bin", "application/octet-stream", &old);
    let target = stack.signed("/live/feed.bin");
    assert_eq!(get_range(&stack, &target, "bytes=0-99").status, 206);
    stack.put("/live/feed.bin", "application/octet-stream", &new);

    let broken = stack.get(&target);
    let promised: usize = broken.header("content-length").unwrap().parse().unwrap();
    assert!(broken.body.len() < promised, "the connection ends instead of mixing versions");
    assert!(broken.body == old[..broken.body.len()], "only bytes of the old version went out");
    let next = stack.get(&target);
    assert!(next.body == new, "the next request gets the new version whole");
}

#[test]
fn a_slice_is_cached_even_when_its_viewer_leaves() {
    let stack = Stack::start("");
    let data = patterned(1024 * 1024);
    stack.put("/gone/clip.mp4", "video/mp4", &data);
    let target = stack.signed("/gone/clip.mp4");
    let mut viewer = TcpStream::connect(stack.edge).unwrap();
    write!(viewer, "GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", stack.edge).unwrap();
    let mut first_bytes = [0u8; 512];
    viewer.read_exact(&mut first_bytes).unwrap();
    drop(viewer);
    let requests = stack.origin_requests();
    wait_until("the slice is in memory", || stack.state.cache.usage().0.1 >= 1);
    let again = stack.get(&target);
    assert!(again.body == data);
    assert_eq!(stack.origin_requests(), requests, "the second viewer needed no origin request");
}

#[test]
fn stale_objects_are_revalidated_and_served_when_the_origin_is_down() {
    let behaviors = "  - path_pattern: /relayed/*\n    origin: relayed\n";
    let stack = Stack::start(behaviors);
    let data = patterned(50_000);
    stack.put_with(
        "/relayed/news.json",
        &[
            ("content-type", "application/json"),
            ("cache-control", "max-age=1, stale-if-error=600"),
        ],
        &data,
    );
    assert_eq!(stack.get("/relayed/news.json").header("x-cache"), Some("Miss from keyfront"));
    let background = [
        ("content-type", "text/plain"),
        ("cache-control", "max-age=1, stale-while-revalidate=60"),
    ];
    stack.put_with("/relayed/ticker.txt", &background, b"ticker");
    assert_eq!(stack.get("/relayed/ticker.txt").status, 200);
    stack.state.cache.clock.advance(Duration::from_secs(2));
    // stale-while-revalidate: the stale copy at once, the revalidation behind it.
    let requests = stack.origin_requests();
    let quick = stack.get("/relayed/ticker.txt");
    assert_eq!(
        (quick.body.as_slice(), quick.header("x-cache")),
        (b"ticker".as_slice(), Some("Hit from keyfront"))
    );
    assert!(quick.header("age").unwrap().parse::<u64>().unwrap() >= 2);
    wait_until("the background revalidation reached the origin", || {
        stack.origin_requests() > requests
    });
    let refreshed = stack.get("/relayed/news.json");
    assert_eq!(refreshed.header("x-cache"), Some("RefreshHit from keyfront"));
    assert!(refreshed.body == data);

    stack.state.cache.clock.advance(Duration::from_secs(2));
    stack.relay.set_on(false);
    let stale = stack.get("/relayed/news.json");
    assert_eq!(stale.status, 200, "stale-if-error serves the cached copy");
    assert!(stale.body == data);
    assert_eq!(stack.get("/relayed/never-cached.json").status, 502);
    stack.relay.set_on(true);
}

#[test]
fn origin_404s_are_remembered_for_the_error_ttl() {
    let stack = Stack::start_with("", "  error_ttl: 1s");
    let target = stack.signed("/missing/thing.mp4");
    let requests = stack.origin_requests();
    assert_eq!(stack.get(&target).status, 404);
    assert_eq!(stack.get(&target).status, 404);
    assert_eq!(stack.origin_requests() - requests, 1, "the second 404 came from the cache");
    stack.state.cache.clock.advance(Duration::from_secs(2));
    stack.put("/missing/thing.mp4", "video/mp4", b"now here");
    let found = stack.get(&target);
    assert_eq!((found.status, found.body.as_slice()), (200, b"now here".as_slice()));
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
        .sum()
}

#[test]
fn invalidations_empty_both_tiers_for_the_next_request() {
    let public = "  - path_pattern: /inv/*\n    origin: store\n";
    let stack = Stack::start_with(public, "  disk: {path: disk, size: 64MiB}");
    for name in ["a", "b", "c"] {
        stack.put(&format!("/inv/{name}.txt"), "text/plain", name.as_bytes());
        assert_eq!(stack.get(&format!("/inv/{name}.txt")).header("x-cache"), Some("Miss from keyfront"));
    }
    stack.put("/inv/b.txt", "text/plain", b"b, version 2");
    assert_eq!(stack.get("/inv/b.txt").body, b"b", "cached: the origin's change is not seen yet");
    wait_until("the three objects are on disk", || {
        files_under(&stack.config_dir().join("disk/objects")) >= 6
    });

    let admin = |token: &str, body: &str| {
        request(
            stack.admin,
            "POST",
            "/invalidations",
            &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    assert_eq!(admin("wrong-token-wrong-token", r#"{"paths":["/inv/*"]}"#).status, 401);
    assert_eq!(admin(common::ADMIN_TOKEN, r#"{"paths":["inv/b.txt"]}"#).status, 400);
    assert_eq!(admin(common::ADMIN_TOKEN, r#"{"paths":["/inv/b.txt"]}"#).status, 200);
    let fresh = stack.get("/inv/b.txt");
    assert_eq!(
        (fresh.body.as_slice(), fresh.header("x-cache")),
        (b"b, version 2".as_slice(), Some("Miss from keyfront"))
    );
    assert_eq!(
        stack.get("/inv/a.txt").header("x-cache"),
        Some("Hit from keyfront"),
        "an exact path leaves the others"
    );

    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_keyfront"))
        .args(["invalidate", "--admin", &format!("http://{}", stack.admin), "/inv/*"])
        .env("KEYFRONT_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stdout));
    assert_eq!(stack.get("/inv/a.txt").header("x-cache"), Some("Miss from keyfront"));
    assert_eq!(stack.get("/inv/c.txt").header("x-cache"), Some("Miss from keyfront"));
    let health = request(stack.admin, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
}

#[test]
fn an_origin_that_ignores_range_still_works() {
    let behaviors = "  - path_pattern: /whole/*\n    origin: ignores_range\n";
    let stack = Stack::start_with(behaviors, "  slice_size: 64KiB");
    let body = common::range_ignoring_body();
    let middle = get_range(&stack, "/whole/file.bin", "bytes=70000-70099");
    assert_eq!(middle.status, 206);
    assert!(middle.body == body[70000..70100]);
    let across = get_range(&stack, "/whole/file.bin", "bytes=65000-140000");
    assert!(across.body == body[65000..=140000], "slices cut from whole bodies join up");
    let whole = stack.get("/whole/file.bin");
    assert!(whole.body == body);
    assert_eq!(stack.get("/whole/file.bin").header("x-cache"), Some("Hit from keyfront"));
}

#[test]
fn objects_larger_than_the_memory_budget_still_stream_whole() {
    // 1 MiB of memory, no disk, 64 KiB slices: a 5 MiB object never fits.
    let stack = Stack::start_with("", "  memory: 1MiB\n  slice_size: 64KiB");
    let data = patterned(5 * 1024 * 1024 + 3);
    stack.put("/huge/film.mp4", "video/mp4", &data);
    let target = stack.signed("/huge/film.mp4");
    for _ in 0..2 {
        let response = stack.get(&target);
        assert_eq!(response.status, 200);
        assert!(response.body == data, "streamed whole, slice by slice");
    }
    let ((memory_bytes, _), _) = stack.state.cache.usage();
    assert!(memory_bytes <= 1024 * 1024, "the memory tier kept to its budget: {memory_bytes}");
    let metrics = request(stack.admin, "GET", "/metrics", &[], b"").text();
    let evicted = metrics
        .lines()
        .find(|l| l.starts_with(r#"keyfront_cache_evictions_total{tier="memory"}"#))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(evicted.parse::<u64>().unwrap() >= 60, "slices were evicted to make room: {evicted}");
}
