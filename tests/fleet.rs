//! A fleet on loopback: in-process keyfront nodes over one embedded origin,
//! children asking parents (the shield tier) before the origin, every
//! node-to-node request authenticated with the fleet secret.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Stack, free_address, patterned, request, wait_until};
use keyfront::auth::PolicySpec;
use keyfront::edge::EdgeState;
use keyfront::fleet::{FleetRequest, FleetSecret};

const SLICE: usize = 1 << 20;

/// A secret file (absolute path) holding 32 bytes of `fill`, hex-encoded.
fn secret_file(dir: &std::path::Path, name: &str, fill: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", format!("{fill:02x}").repeat(32))).unwrap();
    path.display().to_string()
}

fn secret(fill: u8) -> FleetSecret {
    FleetSecret::new(format!("{fill:02x}").repeat(32).as_bytes()).unwrap()
}

/// Requests (of any kind) a node's cache has sent upstream: to its parents
/// for a child, to the origin for a parent.
fn upstream_requests(state: &Arc<EdgeState>) -> u64 {
    state.cache.client.stats.requests.load(Ordering::SeqCst)
}

/// A shield (the stack's own edge) and a way to start children under it.
struct Fleet {
    stack: Stack,
    secrets: tempfile::TempDir,
    shield_fleet: String,
}

impl Fleet {
    fn start() -> Fleet {
        let secrets = tempfile::tempdir().unwrap();
        let secret = secret_file(secrets.path(), "fleet.secret", 7);
        let shield_fleet = format!("fleet: {{node: shield, secret_file: \"{secret}\"}}");
        let stack = Stack::start_configured(
            "  - path_pattern: /open/*\n    origin: store\n",
            "  slice_size: 1MiB",
            &shield_fleet,
        );
        Fleet {
            stack,
            secrets,
            shield_fleet,
        }
    }

    /// A node named `node` with `parents`, its secret filled with `fill`
    /// (7 is the fleet's), `extra` fleet settings (`go_direct: false`).
    fn child(&self, node: &str, parents: &[SocketAddr], fill: u8, extra: &str) -> (SocketAddr, Arc<EdgeState>) {
        let secret = secret_file(self.secrets.path(), &format!("{node}.secret"), fill);
        let parents: Vec<String> = parents.iter().map(|p| format!("\"{p}\"")).collect();
        let settings = format!(
            "fleet: {{node: {node}, secret_file: \"{secret}\", parents: [{}]{extra}}}",
            parents.join(", ")
        );
        self.stack
            .start_edge_with(|template| template.replace(&self.shield_fleet, &settings))
    }
}

/// Two children under one shield: each serves its viewers whole, the shield
/// fetches each slice from the origin once, signed objects still need their
/// viewer's signature at the child the viewer reached.
#[test]
fn children_fill_from_their_shield_and_the_origin_sees_each_slice_once() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(3 * SLICE + 5);
    stack.put("/open/film.mp4", "video/mp4", &data);
    stack.put("/priv/report.pdf", "application/pdf", &data[..SLICE]);
    let (a, a_state) = fleet.child("edge-a", &[stack.edge], 7, "");
    let (b, b_state) = fleet.child("edge-b", &[stack.edge], 7, "");

    for child in [a, b] {
        let whole = request(child, "GET", "/open/film.mp4", &[], b"");
        assert!(whole.status == 200 && whole.body == data, "served whole through {child}");
        let range = request(child, "GET", "/open/film.mp4", &[("Range", "bytes=2000000-2100000")], b"");
        assert!(range.status == 206 && range.body == data[2_000_000..=2_100_000]);
    }
    assert_eq!(stack.origin_requests(), 4, "the shield asked the origin once per slice");
    assert_eq!(
        upstream_requests(&a_state),
        4,
        "edge-a asked the shield, not the origin, once per slice"
    );
    assert_eq!(upstream_requests(&b_state), 4);

    let unsigned = request(a, "GET", "/priv/report.pdf", &[], b"");
    assert_eq!(unsigned.status, 403);
    assert!(unsigned.text().contains("<Code>MissingKey</Code>"));
    let base = format!("http://{a}");
    let url = stack.signer.sign_url(
        &format!("{base}/priv/report.pdf"),
        &PolicySpec::Canned {
            expires: common::now() + 600,
        },
    );
    let signed = request(a, "GET", &url[base.len()..], &[], b"");
    assert!(
        signed.status == 200 && signed.body == data[..SLICE],
        "the shield trusts edge-a's check: {} {}",
        signed.status,
        signed.text().chars().take(300).collect::<String>()
    );
    assert_eq!(stack.origin_requests(), 5);
}

/// The shield answers a fleet request only with the fleet secret, for the
/// method, path, range and time it was signed for; a viewer cannot make one,
/// and a node with a wrong secret gets nothing (its viewers go direct).
#[test]
fn fleet_requests_need_the_fleet_secret() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(2 * SLICE);
    stack.put("/priv/secret.bin", "application/octet-stream", &data);
    let now = common::now();
    let range = "bytes=0-1048575";
    let ask = |signed_with: &FleetSecret, method: &str, path: &str, time: u64, sent_path: &str| {
        let signed = FleetRequest {
            method,
            path,
            range,
            node: "edge-x",
            time,
        };
        let headers = signed_with.sign(&signed);
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        all.push(("Range", range));
        request(stack.edge, "GET", sent_path, &all, b"")
    };
    let good = ask(&secret(7), "GET", "/priv/secret.bin", now, "/priv/secret.bin");
    assert!(
        good.status == 206 && good.body == data[..SLICE],
        "the fleet's own request is served"
    );

    let refused = [
        ("wrong secret", ask(&secret(8), "GET", "/priv/secret.bin", now, "/priv/secret.bin")),
        ("expired", ask(&secret(7), "GET", "/priv/secret.bin", now - 120, "/priv/secret.bin")),
        ("another path", ask(&secret(7), "GET", "/priv/other.bin", now, "/priv/secret.bin")),
        (
            "another method",
            ask(&secret(7), "HEAD", "/priv/secret.bin", now, "/priv/secret.bin"),
        ),
    ];
    for (what, answer) in refused {
        assert_eq!(answer.status, 403, "{what}");
        assert!(answer.text().contains("fleet authentication"), "{what}: {}", answer.text());
        assert!(!answer.body.windows(16).any(|w| w == &data[..16]), "{what}: no byte of the object");
    }
    let forged = [
        ("x-keyfront-fleet-node", "edge-x"),
        ("x-keyfront-fleet-time", "0"),
        ("x-keyfront-fleet-signature", "00"),
    ];
    assert_eq!(request(stack.edge, "GET", "/priv/secret.bin", &forged, b"").status, 403);

    let before = stack.origin_requests();
    let (wrong, wrong_state) = fleet.child("edge-wrong", &[stack.edge], 9, "");
    let served = request(wrong, "GET", "/open/x.bin", &[], b"");
    assert_eq!(served.status, 404, "no such object: asked of the origin directly");
    assert!(upstream_requests(&wrong_state) >= 2, "the shield refused, the origin answered");
    assert_eq!(
        stack.origin_requests(),
        before,
        "the shield fetched nothing for a node with a wrong secret"
    );
}

/// Two shields: each slice lives on one of them; a dead parent is skipped;
/// with no parent alive a node goes to the origin itself, unless
/// `go_direct: false`, when its viewers get a 502.
#[test]
fn slices_spread_over_parents_and_dead_ones_are_skipped() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(16 * SLICE);
    stack.put("/open/long.mp4", "video/mp4", &data);
    let (second_shield, second_state) = stack.start_edge_with(|template| template);
    let dead = free_address();
    let (child, _) = fleet.child("edge-a", &[stack.edge, second_shield, dead], 7, "");
    let whole = request(child, "GET", "/open/long.mp4", &[], b"");
    assert!(whole.status == 200 && whole.body == data);
    let (first, second) = (stack.origin_requests(), upstream_requests(&second_state));
    assert_eq!(
        first + second,
        16,
        "each slice fetched from the origin by one shield: {first} + {second}"
    );
    assert!(first > 0 && second > 0, "slices spread over both shields: {first} + {second}");

    let (alone, alone_state) = fleet.child("edge-alone", &[dead], 7, "");
    wait_until("the dead parent found dead", || {
        request(alone, "GET", "/open/long.mp4", &[("Range", "bytes=0-99")], b"").status == 206
    });
    let direct = request(alone, "GET", "/open/long.mp4", &[("Range", "bytes=5000000-5000099")], b"");
    assert!(direct.status == 206 && direct.body == data[5_000_000..5_000_100], "gone direct");
    assert!(upstream_requests(&alone_state) >= 2);

    let (strict, _) = fleet.child("edge-strict", &[dead], 7, ", go_direct: false");
    let refused = request(strict, "GET", "/open/long.mp4", &[("Range", "bytes=0-99")], b"");
    assert_eq!(refused.status, 502, "{}", refused.text());
}
