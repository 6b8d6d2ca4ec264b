//! `bench/fleet`: the seven-node fleet of `tests/common/fleet.rs` (two
//! sites of three nodes under a shield) against the same seven processes
//! each on its own, on one workload: what the origin sees, and how long an
//! invalidation takes to reach every node.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Failure;
use crate::common::fleet::{Fleet, Node};
use crate::common::{patterned, request};

const OBJECTS: usize = 8;
const OBJECT_BYTES: usize = 16 << 20;
const RANGE_BYTES: usize = 256 << 10;
const VIEWERS_PER_NODE: usize = 8;
const REQUESTS_PER_VIEWER: usize = 150;
const INVALIDATIONS: usize = 10;

fn object(index: usize) -> Vec<u8> {
    patterned(OBJECT_BYTES).iter().map(|b| b ^ (index as u8 + 1)).collect()
}

/// What one setup's origin saw for the workload.
struct Traffic {
    viewer_bytes: u64,
    origin_requests: u64,
    origin_bytes: u64,
}

/// Every edge node's viewers fetch random ranges of the objects (the same
/// ranges for both setups: seeded by viewer), checking every byte.
fn workload(fleet: &Fleet, objects: &std::sync::Arc<Vec<Vec<u8>>>) -> Result<Traffic, Failure> {
    let edges: Vec<_> = fleet.edges().map(|node| node.edge).collect();
    let viewers: Vec<_> = (0..edges.len() * VIEWERS_PER_NODE)
        .map(|viewer| {
            let (edge, objects) = (edges[viewer % edges.len()], objects.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut rng = StdRng::seed_from_u64(viewer as u64);
                let mut bytes = 0;
                for _ in 0..REQUESTS_PER_VIEWER {
                    let index = rng.gen_range(0..OBJECTS);
                    let first = rng.gen_range(0..OBJECT_BYTES - RANGE_BYTES);
                    let range = format!("bytes={first}-{}", first + RANGE_BYTES - 1);
                    let answer = request(edge, "GET", &format!("/bench/{index}.bin"), &[("Range", &range)], b"");
                    if answer.status != 206 || answer.body != objects[index][first..first + RANGE_BYTES] {
                        return Err(format!("{edge}: {range} of object {index} answered {} wrongly", answer.status));
                    }
                    bytes += RANGE_BYTES as u64;
                }
                Ok(bytes)
            })
        })
        .collect();
    let mut viewer_bytes = 0;
    for viewer in viewers {
        viewer_bytes += viewer.join().map_err(|_| "a viewer panicked")??;
    }
    let sum = |prefix: &str| fleet.nodes().map(|node| node.metric(prefix)).sum::<u64>();
    Ok(Traffic {
        viewer_bytes,
        origin_requests: sum("keyfront_origin_requests_total{"),
        origin_bytes: sum("keyfront_origin_body_bytes_total"),
    })
}

/// Each node's last control entry applied, from its admin API.
fn last_applied(node: &Node) -> String {
    let state = request(node.admin, "GET", "/fleet", &[], b"").text();
    state.split("\"control_last_applied\":").nth(1).unwrap_or_default().to_owned()
}

/// Sends invalidations to the edge nodes in turn; returns, for each node and
/// invalidation, the time until the node had applied it.
fn propagation(fleet: &Fleet) -> Result<Vec<Duration>, Failure> {
    let token = format!("Bearer {}", crate::common::ADMIN_TOKEN);
    let edges: Vec<&Node> = fleet.edges().collect();
    let mut times = Vec::new();
    for round in 0..INVALIDATIONS {
        let before: Vec<String> = fleet.nodes().map(last_applied).collect();
        let body = format!("{{\"paths\": [\"/bench/{}.bin\"]}}", round % OBJECTS);
        let sent = Instant::now();
        let answer = request(
            edges[round % edges.len()].admin,
            "POST",
            "/invalidations",
            &[("Authorization", &token)],
            body.as_bytes(),
        );
        if answer.status != 200 {
            return Err(format!("invalidation {round}: {} {}", answer.status, answer.text()).into());
        }
        for (node, earlier) in fleet.nodes().zip(before) {
            while last_applied(node) == earlier {
                if sent.elapsed() > Duration::from_secs(30) {
                    return Err(format!("{} never applied invalidation {round}", node.name).into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            times.push(sent.elapsed());
        }
    }
    Ok(times)
}

fn row(name: &str, traffic: &Traffic) {
    let hit_ratio = 1.0 - traffic.origin_bytes as f64 / traffic.viewer_bytes as f64;
    println!(
        "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.3} |",
        traffic.origin_requests,
        traffic.origin_bytes as f64 / (1u64 << 20) as f64,
        traffic.viewer_bytes as f64 / (1u64 << 20) as f64,
        hit_ratio
    );
}

pub fn run() -> Result<(), Failure> {
    let objects = std::sync::Arc::new((0..OBJECTS).map(object).collect::<Vec<_>>());
    println!(
        "bench/fleet: {} viewers on six edge nodes, {REQUESTS_PER_VIEWER} random 256 KiB ranges each over {OBJECTS} objects of 16 MiB",
        6 * VIEWERS_PER_NODE
    );
    let mut results = Vec::new();
    for in_fleet in [true, false] {
        let fleet = Fleet::start(in_fleet);
        for (index, body) in objects.iter().enumerate() {
            fleet.put(&format!("/bench/{index}.bin"), body);
        }
        let traffic = workload(&fleet, &objects)?;
        let times = if in_fleet { Some(propagation(&fleet)?) } else { None };
        results.push((in_fleet, traffic, times));
    }
    println!("\n| setup | origin requests | origin bytes | viewer bytes | hit ratio (1 - origin/viewer bytes) |\n|---|---|---|---|---|");
    for (in_fleet, traffic, _) in &results {
        row(
            if *in_fleet {
                "fleet: 2 sites x 3 nodes + shield"
            } else {
                "7 independent nodes"
            },
            traffic,
        );
    }
    if let Some((_, _, Some(times))) = results.first() {
        let mut times = times.clone();
        times.sort();
        println!(
            "\ninvalidation propagation over {INVALIDATIONS} invalidations x 7 nodes (poll 1 s): p50 {:?}, max {:?}",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    Ok(())
}
