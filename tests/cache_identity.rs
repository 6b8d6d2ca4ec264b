//! What the cache's identity and bounds promise, over real sockets: bytes
//! cut at one slice size never stand for another, a changed object is
//! dropped whole, a stalled fill frees its slot, remembered 404s stay in
//! the budget, and one stale object costs one revalidation at a time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Stack, patterned, request, wait_until};
use keyfront::cache::ObjectRef;
use keyfront::config::Ttl;

const SLICE: usize = 64 * 1024;

/// Two fills of slice 1 of one object, one cut at 64 KiB and one at 128 KiB
/// (two behaviors, or a reload between them), each get their own bytes.
#[test]
fn fills_at_two_slice_sizes_never_share_bytes() {
    let stack = Stack::start("");
    let data = patterned(4 * SLICE);
    stack.put("/sizes/clip.bin", "application/octet-stream", &data);
    let store = stack
        .state
        .routing()
        .default
        .behaviors
        .last()
        .expect("the default behavior")
        .origin
        .clone();
    let object = |slice_size: u64| ObjectRef {
        key: ObjectRef::cache_key("store", "/media/sizes/clip.bin", ""),
        table: "-".into(),
        path: "/sizes/clip.bin".into(),
        site_hop: false,
        origin_name: "store".into(),
        origin: store.clone(),
        origin_path: "/media/sizes/clip.bin".into(),
        ttl: Ttl {
            min: Duration::ZERO,
            default: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
        },
        slice_size,
        viewer: None,
        failover: None,
        sent: None,
        error_caching: std::sync::Arc::from([]),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (small, large) = runtime.block_on(async {
        let small = stack.state.cache.start_fill(&object(SLICE as u64), None, 1);
        let large = stack.state.cache.start_fill(&object(2 * SLICE as u64), None, 1);
        let read = |mut reader: keyfront::cache::FillReader| async move {
            let mut bytes = Vec::new();
            while let Some(chunk) = reader.next_chunk().await.unwrap() {
                bytes.extend_from_slice(&chunk);
            }
            bytes
        };
        tokio::join!(read(small), read(large))
    });
    assert!(small == data[SLICE..2 * SLICE], "slice 1 at 64 KiB");
    assert!(large == data[2 * SLICE..4 * SLICE], "slice 1 at 128 KiB");
}

/// A reload that changes `slice_size` keeps every answer byte-exact, before
/// and after the object's cached version is replaced.
#[test]
fn a_reload_that_changes_the_slice_size_serves_exact_bytes() {
    let stack = Stack::start_with("  - path_pattern: /open/*\n    origin: store\n", "  slice_size: 64KiB");
    let data = patterned(5 * SLICE + 17);
    stack.put("/open/film.mp4", "video/mp4", &data);
    let ranges = [
        (0, 99),
        (SLICE - 10, SLICE + 10),
        (3 * SLICE + 5, 5 * SLICE + 16),
        (2 * SLICE, 2 * SLICE),
    ];
    let check = |when: &str| {
        for (start, end) in ranges {
            let response = request(
                stack.edge,
                "GET",
                "/open/film.mp4",
                &[("Range", &format!("bytes={start}-{end}"))],
                b"",
            );
            assert_eq!(response.status, 206, "{when}");
            assert!(response.body == data[start..=end], "{when}: bytes {start}-{end}");
        }
        assert!(stack.get("/open/film.mp4").body == data, "{when}: whole");
    };
    check("64 KiB slices");
    stack.rewrite_config(|config| config.replace("slice_size: 64KiB", "slice_size: 128KiB"));
    check("after the reload, the cached version keeps its 64 KiB slices");
    let invalidated = request(
        stack.admin,
        "POST",
        "/invalidations",
        &[("Authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
        br#"{"paths": ["/open/*"]}"#,
    );
    assert_eq!(invalidated.status, 200, "{}", invalidated.text());
    check("a version fetched after the reload, in 128 KiB slices");
}

/// With a disk tier, an object replaced at the origin while its first slice
/// is cached: the viewer who meets the change is cut short, and the next
/// one gets the new version whole (the old metadata is gone from disk too).
#[test]
fn a_changed_object_is_dropped_from_both_tiers() {
    let stack = Stack::start_with("", "  slice_size: 64KiB\n  disk: {path: disk, size: 64MiB}");
    let old = patterned(4 * SLICE);
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    stack.put("/live/feed.bin", "application/octet-stream", &old);
    let target = stack.signed("/live/feed.bin");
    assert_eq!(request(stack.edge, "GET", &target, &[("Range", "bytes=0-99")], b"").status, 206);
    wait_until("the metadata is on disk", || {
        std::fs::read_dir(stack.config_dir().join("disk/objects"))
            .unwrap()
            .flatten()
            .any(|d| d.path().join("meta.json").exists())
    });
    stack.put("/live/feed.bin", "application/octet-stream", &new);
    let broken = stack.get(&target);
    assert!(broken.body.len() < new.len(), "the viewer who met the change is cut short");
    assert!(broken.body == old[..broken.body.len()], "only old bytes went out");
    for attempt in ["next", "one after"] {
        let next = stack.get(&target);
        assert_eq!(next.status, 200);
        assert!(
            next.body == new,
            "the {attempt} request gets the new version whole ({} bytes)",
            next.body.len()
        );
    }
}

/// An origin that answers every request with a 206 head and the first 1,000
/// bytes of its slice, then stalls; counts the requests it took.
fn stalling_origin() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().take(16).flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let header = format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {SLICE}\r\ncontent-range: bytes 0-{}/{}\r\netag: \"stall\"\r\n\r\n",
                SLICE - 1,
                4 * SLICE
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&patterned(1000));
            held.push(stream);
        }
    });
    (address, requests)
}

/// A fill whose origin stalls mid-slice ends within the first-byte timeout:
/// its viewer is cut short, nothing partial is cached, and the next request
/// starts a new fill instead of waiting on the dead one.
#[test]
fn a_stalled_fill_releases_its_slot() {
    let (stalling, origin_requests) = stalling_origin();
    let stack = Stack::start_with("", "  slice_size: 64KiB");
    let stalls = format!(
        "{{type: s3, endpoint: \"http://{stalling}\", bucket: media, path_style: true, access_key_id: a, secret_access_key: b, first_byte_timeout: 400ms}}"
    );
    stack.route_to_origin("stalls", &stalls, "/stall/*");
    let mut seen = 0;
    for attempt in 1..=2 {
        let started = Instant::now();
        let response = stack.get("/stall/clip.bin");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "attempt {attempt} waited {:?}",
            started.elapsed()
        );
        assert!(response.body.len() <= 1000, "never more than the origin sent");
        assert!(response.body == patterned(1000)[..response.body.len()]);
        let now_seen = origin_requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            now_seen > seen,
            "attempt {attempt} started a fill of its own, not a wait on the dead one"
        );
        seen = now_seen;
    }
    assert_eq!(stack.state.cache.usage().0.1, 0, "no partial slice was cached");
}

/// Endless requests for missing keys cost metadata within an eighth of the
/// memory budget, and no disk at all.
#[test]
fn remembered_404s_stay_within_the_budget() {
    let stack = Stack::start_with(
        "  - path_pattern: /nothing/*\n    origin: store\n",
        "  memory: 1MiB\n  disk: {path: disk, size: 64MiB}",
    );
    for i in 0..1500 {
        assert_eq!(stack.get(&format!("/nothing/missing-{i:05}-{}", "x".repeat(100))).status, 404);
    }
    let (bytes, entries) = stack.state.cache.metadata_usage();
    assert!(bytes <= 1024 * 1024 / 8, "metadata holds {bytes} bytes in {entries} entries");
    assert!(entries < 1500, "older 404s were evicted ({entries} remembered)");
    let on_disk = std::fs::read_dir(stack.config_dir().join("disk/objects")).unwrap().count();
    assert_eq!(on_disk, 0, "no 404 was written to disk");
}

/// Forty viewers of a stale object (stale-while-revalidate) at once, with a
/// slow origin: all get the stale copy at once, and the origin sees one
/// revalidation.
#[test]
fn one_background_revalidation_per_object() {
    let stack = Stack::start("  - path_pattern: /relayed/*\n    origin: relayed\n");
    let headers = [
        ("content-type", "text/plain"),
        ("cache-control", "max-age=1, stale-while-revalidate=60"),
    ];
    stack.put_with("/relayed/ticker.txt", &headers, b"ticker");
    assert_eq!(stack.get("/relayed/ticker.txt").status, 200);
    stack.state.cache.clock.advance(Duration::from_secs(2));
    stack.relay.slow_down(Duration::from_millis(500));
    let before = stack.origin_requests();
    let viewers: Vec<_> = (0..40)
        .map(|_| {
            let edge = stack.edge;
            std::thread::spawn(move || request(edge, "GET", "/relayed/ticker.txt", &[], b""))
        })
        .collect();
    for viewer in viewers {
        let response = viewer.join().unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, b"ticker".as_slice()));
    }
    wait_until("the revalidation reached the origin", || stack.origin_requests() > before);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(stack.origin_requests() - before, 1, "one revalidation, not one per viewer");
}
