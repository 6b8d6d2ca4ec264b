//! A fleet of real `keyfront serve` processes on loopback addresses (see
//! `common::fleet`): what tiers, sites and the control log promise, across
//! processes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fleet::Fleet;
use common::{patterned, request, wait_until};

const SLICE: usize = 1 << 20;

/// 50 viewers spread over the six edge nodes asking at once for one cold
/// slice make one origin request; each site keeps the slice once.
#[test]
fn fifty_viewers_on_six_nodes_make_one_origin_request() {
    let fleet = Fleet::start(true);
    let data = patterned(SLICE);
    fleet.put("/cold/one.bin", &data);
    let edges: Vec<SocketAddr> = fleet.edges().map(|node| node.edge).collect();
    let start = std::sync::Arc::new(std::sync::Barrier::new(50));
    let viewers: Vec<_> = (0..50)
        .map(|i| {
            let (edge, start) = (edges[i % edges.len()], start.clone());
            std::thread::spawn(move || {
                start.wait();
                request(edge, "GET", "/cold/one.bin", &[], b"")
            })
        })
        .collect();
    for viewer in viewers {
        let answer = viewer.join().unwrap();
        assert!(answer.status == 200 && answer.body == data, "every viewer served whole");
    }
    assert_eq!(
        fleet.shield.metric("keyfront_origin_requests_total{"),
        1,
        "one origin request in all"
    );
    let origin_requests: u64 = fleet.edges().map(|node| node.metric("keyfront_origin_requests_total{")).sum();
    assert_eq!(origin_requests, 0, "no edge went to the origin");
    let origin_bytes: u64 = fleet.edges().map(|node| node.metric("keyfront_origin_body_bytes_total")).sum();
    let fleet_bytes: u64 = fleet.edges().map(|node| node.metric("keyfront_fleet_body_bytes_total")).sum();
    assert_eq!(origin_bytes, 0, "no edge read a byte from the origin");
    assert!(
        fleet_bytes >= 2 * SLICE as u64,
        "each site's owner read the slice from the shield: {fleet_bytes}"
    );
    for site in &fleet.sites {
        let kept: u64 = site.iter().map(|node| node.metric("keyfront_cache_items{tier=\"memory\"}")).sum();
        assert_eq!(kept, 1, "the site keeps the slice once");
    }
}

/// A node killed (SIGKILL) while viewers fetch ranges from the others costs
/// none of them a request: its slices are fetched by the asking nodes
/// themselves until the health check takes it out of the ring. Started
/// again, it takes its share of the site's slices back.
#[test]
fn a_node_killed_mid_load_costs_no_viewer_request() {
    let mut fleet = Fleet::start(true);
    let data = std::sync::Arc::new(patterned(12 * SLICE));
    fleet.put("/load/film.mp4", &data);
    let survivors: Vec<SocketAddr> = fleet
        .edges()
        .map(|node| node.edge)
        .filter(|edge| *edge != fleet.sites[0][0].edge)
        .collect();
    let until = Instant::now() + Duration::from_secs(5);
    let viewers: Vec<_> = survivors
        .iter()
        .map(|edge| {
            let (edge, data) = (*edge, data.clone());
            std::thread::spawn(move || {
                let mut served = 0;
                let mut first = 0usize;
                while Instant::now() < until {
                    first = (first + 700_001) % (data.len() - 200_000);
                    let range = format!("bytes={first}-{}", first + 199_999);
                    let answer = request(edge, "GET", "/load/film.mp4", &[("Range", &range)], b"");
                    assert_eq!(answer.status, 206, "{edge}: {}", answer.text());
                    let expected = &data[first..first + 200_000];
                    assert!(
                        answer.body == expected,
                        "{edge}: {} bytes of {range}, first difference at {:?}",
                        answer.body.len(),
                        answer.body.iter().zip(expected).position(|(a, b)| a != b)
                    );
                    served += 1;
                }
                served
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let victim = fleet.sites[0][0].process.take().unwrap();
    drop(victim); // SIGKILL, as the OOM killer or a power cut would
    let served: u32 = viewers
        .into_iter()
        .map(|viewer| viewer.join().expect("no viewer request failed"))
        .sum();
    assert!(served > 20, "viewers were served throughout: {served}");

    fleet.sites[0][0].restart();
    fleet.wait_until_healthy();
    let fresh = patterned(12 * SLICE);
    fleet.put("/load/fresh.mp4", &fresh);
    let whole = request(fleet.sites[0][1].edge, "GET", "/load/fresh.mp4", &[], b"");
    assert!(whole.status == 200 && whole.body == fresh);
    let kept = fleet.sites[0][0].metric("keyfront_cache_items{tier=\"memory\"}");
    assert!(kept > 0, "the node back keeps its share of the new object's slices");
}

/// An invalidation sent to one node's admin API is applied by all seven
/// within the poll interval (1 s) and a second; each then serves the new
/// version.
#[test]
fn an_invalidation_reaches_all_seven_nodes() {
    let fleet = Fleet::start(true);
    let version = |v: u8| -> Vec<u8> { patterned(SLICE / 4).iter().map(|b| b ^ v).collect() };
    fleet.put("/docs/a.pdf", &version(1));
    for node in fleet.nodes() {
        assert_eq!(request(node.edge, "GET", "/docs/a.pdf", &[], b"").body, version(1));
    }
    fleet.put("/docs/a.pdf", &version(2));
    // Metadata is timed in seconds: the invalidation must come after it.
    std::thread::sleep(Duration::from_millis(1100));
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    let sent = Instant::now();
    let body = br#"{"paths": ["/docs/*"]}"#;
    let answer = request(
        fleet.sites[1][2].admin,
        "POST",
        "/invalidations",
        &[("Authorization", &token)],
        body,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut applied = Vec::new();
    for node in fleet.nodes() {
        wait_until(&format!("{} applied the invalidation", node.name), || {
            request(node.admin, "GET", "/fleet", &[], b"").text().contains("-site2-2-")
        });
        applied.push(sent.elapsed());
        assert_eq!(
            request(node.edge, "GET", "/docs/a.pdf", &[], b"").body,
            version(2),
            "{} serves v2",
            node.name
        );
    }
    let slowest = applied.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(3),
        "all seven within the poll interval and a second: {applied:?}"
    );
}
