//! A fleet on loopback: in-process keyfront nodes over one embedded origin,
//! children asking parents (the shield tier) before the origin, every
//! node-to-node request authenticated with the fleet secret.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::dns::Dns;
use common::{Stack, dead_address, free_address, patterned, request, wait_until};
use keyfront::auth::PolicySpec;
use keyfront::edge::EdgeState;
use keyfront::fleet::{FleetRequest, FleetSecret};

const SLICE: usize = 1 << 20;

/// A fleet secret: `fill` (7 is a fleet's own) under the fleet's random
/// `salt`, so that fleets of tests running side by side never trust each other.
fn secret_text(salt: u32, fill: u8) -> String {
    format!("{salt:08x}{}", format!("{fill:02x}").repeat(28))
}

/// A secret file (absolute path) holding `secret_text(salt, fill)`.
fn secret_file(dir: &std::path::Path, name: &str, salt: u32, fill: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", secret_text(salt, fill))).unwrap();
    path.display().to_string()
}

fn secret(salt: u32, fill: u8) -> FleetSecret {
    FleetSecret::new(secret_text(salt, fill).as_bytes()).unwrap()
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
    salt: u32,
    shield_fleet: String,
}

impl Fleet {
    fn start() -> Fleet {
        Self::start_with("")
    }

    /// A shield with `extra` fleet settings (`, control: {...}`).
    fn start_with(extra: &str) -> Fleet {
        let secrets = tempfile::tempdir().unwrap();
        let salt = rand::random::<u32>();
        let secret = secret_file(secrets.path(), "fleet.secret", salt, 7);
        let shield_fleet = format!("fleet: {{node: shield, secret_file: \"{secret}\"{extra}}}");
        let stack = Stack::start_configured(
            "  - path_pattern: /open/*\n    origin: store\n",
            "  slice_size: 1MiB",
            &shield_fleet,
        );
        Fleet {
            stack,
            secrets,
            salt,
            shield_fleet,
        }
    }

    /// A node named `node` with `parents`, its secret filled with `fill`
    /// (7 is the fleet's), `extra` fleet settings (`go_direct: false`).
    fn child(&self, node: &str, parents: &[SocketAddr], fill: u8, extra: &str) -> (SocketAddr, Arc<EdgeState>) {
        let (edge, _admin, state) = self.node(node, parents, fill, extra);
        (edge, state)
    }

    /// As `child`, with the node's admin listener.
    fn node(&self, node: &str, parents: &[SocketAddr], fill: u8, extra: &str) -> (SocketAddr, SocketAddr, Arc<EdgeState>) {
        let parents: Vec<String> = parents.iter().map(|p| format!("\"{p}\"")).collect();
        self.node_with(node, fill, &format!("parents: [{}]{extra}", parents.join(", ")))
    }

    /// A node named `node` whose fleet settings are `settings` (YAML flow
    /// fields after its name and secret).
    fn node_with(&self, node: &str, fill: u8, settings: &str) -> (SocketAddr, SocketAddr, Arc<EdgeState>) {
        let secret = secret_file(self.secrets.path(), &format!("{node}.secret"), self.salt, fill);
        let settings = format!("fleet: {{node: {node}, secret_file: \"{secret}\", {settings}}}");
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
/// method, table, origin key, path, range and time it was signed for, and
/// routes it by its table whatever its Host; a viewer cannot make one, a
/// captured one changed in any part gets 403 and no byte, and a node with a
/// wrong secret gets nothing (its viewers go direct).
#[test]
fn fleet_requests_need_the_fleet_secret() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(2 * SLICE);
    stack.put("/priv/secret.bin", "application/octet-stream", &data);
    let now = common::now();
    let range = "bytes=0-1048575";
    let object = "store\n/media/priv/secret.bin";
    let ask_for = |signed_with: &FleetSecret, table: &str, object: &str, method: &str, path: &str, time: u64, sent: &[(&str, &str)]| {
        let signed = FleetRequest {
            method,
            table,
            object,
            path,
            range,
            node: "edge-x",
            time,
            not_before: 0,
            site_hop: false,
        };
        let headers = signed_with.sign(&signed);
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        all.push(("Range", range));
        // What the sender changed after signing replaces what was signed.
        for (name, value) in sent {
            all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            all.push((name, value));
        }
        let sent_path = sent.iter().find(|(n, _)| *n == ":path").map_or("/priv/secret.bin", |(_, p)| *p);
        all.retain(|(n, _)| *n != ":path");
        request(stack.edge, "GET", sent_path, &all, b"")
    };
    let ask = |signed_with: &FleetSecret, method: &str, path: &str, time: u64, sent_path: &str| {
        ask_for(signed_with, "-", object, method, path, time, &[(":path", sent_path)])
    };
    // The fleet's own request for the secret, `header` changed after signing.
    let altered = |header: &str, value: &str| {
        ask_for(
            &secret(fleet.salt, 7),
            "-",
            object,
            "GET",
            "/priv/secret.bin",
            now,
            &[(header, value)],
        )
    };
    let good = ask(&secret(fleet.salt, 7), "GET", "/priv/secret.bin", now, "/priv/secret.bin");
    assert!(
        good.status == 206 && good.body == data[..SLICE],
        "the fleet's own request is served"
    );
    let fleet_secret = secret(fleet.salt, 7);
    let another_host = altered("Host", "d123.cloudfront.net");
    assert!(
        another_host.status == 206 && another_host.body == data[..SLICE],
        "a node request is routed by its signed table, never by its Host"
    );

    let refused = [
        (
            "wrong secret",
            ask(&secret(fleet.salt, 8), "GET", "/priv/secret.bin", now, "/priv/secret.bin"),
        ),
        (
            "expired",
            ask(&secret(fleet.salt, 7), "GET", "/priv/secret.bin", now - 120, "/priv/secret.bin"),
        ),
        (
            "another path",
            ask(&secret(fleet.salt, 7), "GET", "/priv/other.bin", now, "/priv/secret.bin"),
        ),
        (
            "another method",
            ask(&secret(fleet.salt, 7), "HEAD", "/priv/secret.bin", now, "/priv/secret.bin"),
        ),
        (
            "another origin key",
            ask_for(
                &fleet_secret,
                "-",
                "store\n/media/priv/other.bin",
                "GET",
                "/priv/secret.bin",
                now,
                &[],
            ),
        ),
        (
            "an unknown distribution",
            ask_for(&fleet_secret, "E1NOSUCHDIST", object, "GET", "/priv/secret.bin", now, &[]),
        ),
        ("the table changed after signing", altered("x-keyfront-fleet-table", "E1NOSUCHDIST")),
        ("the range changed after signing", altered("Range", "bytes=0-")),
        ("no table at all", altered("x-keyfront-fleet-table", "")),
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
    let (second_shield, _, second_state) = stack.start_edge_with(|template| template);
    let dead = dead_address();
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

    let (_, alone_admin, _) = fleet.node("edge-watch", &[stack.edge, dead], 7, "");
    wait_until("the admin API shows the dead parent down", || {
        let state = request(alone_admin, "GET", "/fleet", &[], b"").text();
        state.contains(&format!("{{\"address\":\"{dead}\",\"healthy\":false}}"))
            && state.contains(&format!("{{\"address\":\"{}\",\"healthy\":true}}", stack.edge))
            && state.contains("\"node\":\"edge-watch\"")
    });

    let (strict, _) = fleet.child("edge-strict", &[dead], 7, ", go_direct: false");
    let refused = request(strict, "GET", "/open/long.mp4", &[("Range", "bytes=0-99")], b"");
    assert_eq!(refused.status, 502, "{}", refused.text());
}

/// A parent that breaks off mid-slice (a relay in front of it cuts every
/// answer after 300,000 bytes, as a node dying mid-body does) costs its
/// child's viewers nothing: the rest of the slice, and of a direct seek,
/// comes from the next parent, or from the origin when allowed.
#[test]
fn a_parent_breaking_off_mid_slice_costs_no_viewer_a_byte() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(16 * SLICE);
    stack.put("/open/cut.mp4", "video/mp4", &data);
    stack.put("/open/seek.mp4", "video/mp4", &data);
    let (relay, cuts) = common::cutting_relay(stack.edge, 300_000);

    let (child, _, child_state) = fleet.node("edge-direct", &[relay], 7, "");
    let whole = request(child, "GET", "/open/cut.mp4", &[], b"");
    assert!(
        whole.status == 200 && whole.body == data,
        "served whole: {} with {} bytes, first difference at {:?}",
        whole.status,
        whole.body.len(),
        whole.body.iter().zip(&data).position(|(a, b)| a != b)
    );
    assert!(cuts.load(Ordering::SeqCst) >= 16, "every slice was broken off once");
    assert!(child_state.cache.usage().0.1 >= 16, "and kept whole");
    let seek = request(child, "GET", "/open/seek.mp4", &[("Range", "bytes=5500000-6700000")], b"");
    assert!(
        seek.status == 206 && seek.body == data[5_500_000..=6_700_000],
        "a deep seek resumed"
    );

    let before = cuts.load(Ordering::SeqCst);
    let (strict, strict_admin, _) = fleet.node("edge-strict", &[relay, stack.edge], 7, ", go_direct: false");
    let whole = request(strict, "GET", "/open/cut.mp4", &[], b"");
    assert!(whole.status == 200 && whole.body == data, "served whole from the other parent");
    assert!(cuts.load(Ordering::SeqCst) > before, "the ring sent slices to the breaking parent");
    assert_eq!(origin_requests_of(strict_admin), 0, "and never to the origin");
}

const CONTROL: &str = ", control: {origin: store, poll: 1s}";

/// An invalidation sent to one node's admin API reaches every node of the
/// fleet through the control log in the bucket, within a poll interval
/// (1 s here) and a second.
#[test]
fn an_invalidation_on_one_node_reaches_every_node() {
    let fleet = Fleet::start_with(CONTROL);
    let stack = &fleet.stack;
    let version = |v: u8| -> Vec<u8> { patterned(SLICE / 2).iter().map(|b| b ^ v).collect() };
    let put = |v: u8| stack.put_with("/open/doc.pdf", &[("cache-control", "max-age=3600")], &version(v));
    put(1);
    let (a, a_admin, a_state) = fleet.node("edge-a", &[stack.edge], 7, CONTROL);
    let (b, _, b_state) = fleet.node("edge-b", &[stack.edge], 7, CONTROL);
    let nodes = [(stack.edge, stack.state.clone()), (a, a_state), (b, b_state)];
    for (node, _) in &nodes {
        assert_eq!(request(*node, "GET", "/open/doc.pdf", &[], b"").body, version(1));
    }
    put(2);
    for (node, _) in &nodes {
        assert_eq!(
            request(*node, "GET", "/open/doc.pdf", &[], b"").body,
            version(1),
            "cached for an hour"
        );
    }

    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    let sent = std::time::Instant::now();
    let answer = request(
        a_admin,
        "POST",
        "/invalidations",
        &[("Authorization", &token)],
        br#"{"paths": ["/open/*"]}"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let control = |state: &Arc<EdgeState>| state.fleet.as_ref().unwrap().control.as_ref().unwrap().last_applied();
    wait_until("every node applied the entry", || {
        nodes.iter().all(|(_, state)| control(state).contains("-edge-a-"))
    });
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(3),
        "within the poll interval and a second: {:?}",
        sent.elapsed()
    );
    for (node, _) in &nodes {
        assert_eq!(
            request(*node, "GET", "/open/doc.pdf", &[], b"").body,
            version(2),
            "{node} serves the new version"
        );
    }
}

/// An invalidation of 2,900 paths (1.5 MB of JSON, more than a control-log
/// reader takes in one entry) is published in entries it can read: every
/// node applies all of it, the last path included, and the log goes on.
#[test]
fn an_invalidation_larger_than_an_entry_reaches_every_node_whole() {
    let fleet = Fleet::start_with(CONTROL);
    let stack = &fleet.stack;
    stack.put_with("/open/last.txt", &[("cache-control", "max-age=3600")], b"old");
    assert_eq!(request(stack.edge, "GET", "/open/last.txt", &[], b"").body, b"old");
    stack.put("/open/last.txt", "text/plain", b"new");
    let (_, a_admin, _) = fleet.node("edge-a", &[stack.edge], 7, CONTROL);
    let mut paths: Vec<String> = (0..2899).map(|i| format!("/open/{i:04}/{}", "p".repeat(490))).collect();
    paths.push("/open/last.txt".into());
    let body = serde_json::json!({ "paths": paths }).to_string();
    assert!(body.len() > 1_400_000, "{} bytes", body.len());
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    let sent = request(a_admin, "POST", "/invalidations", &[("Authorization", &token)], body.as_bytes());
    assert_eq!(sent.status, 200, "{}", sent.text());
    wait_until("the shield applied the last path", || {
        request(stack.edge, "GET", "/open/last.txt", &[], b"").body == b"new"
    });
    let shield = stack.state.fleet.as_ref().unwrap().control.as_ref().unwrap();
    assert_eq!(shield.refused(), 0, "every entry was readable");
}

/// The purge race between tiers: a node that invalidated an object never
/// takes the old copy back from a parent that has not (here the shield
/// keeps no control log at all): its request tells the shield to answer
/// from nothing fetched before the invalidation.
#[test]
fn a_node_that_invalidated_never_gets_the_old_copy_back_from_its_parent() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let version = |v: u8| -> Vec<u8> { patterned(3 * SLICE / 2).iter().map(|b| b ^ v).collect() };
    let put = |v: u8| stack.put_with("/open/doc.pdf", &[("cache-control", "max-age=3600")], &version(v));
    put(1);
    let (a, a_admin, _) = fleet.node("edge-a", &[stack.edge], 7, "");
    assert_eq!(request(a, "GET", "/open/doc.pdf", &[], b"").body, version(1));
    put(2);
    assert_eq!(
        request(stack.edge, "GET", "/open/doc.pdf", &[], b"").body,
        version(1),
        "the shield holds v1"
    );

    // Invalidations are timed in milliseconds, metadata in seconds: a copy
    // fetched in the same second as the invalidation counts as older.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    let body = br#"{"paths": ["/open/doc.pdf"]}"#;
    assert_eq!(
        request(a_admin, "POST", "/invalidations", &[("Authorization", &token)], body).status,
        200
    );
    let whole = request(a, "GET", "/open/doc.pdf", &[], b"");
    assert!(whole.body == version(2), "edge-a got the new version, not the shield's old copy");
    let ranged = request(a, "GET", "/open/doc.pdf", &[("Range", "bytes=1048570-1048600")], b"");
    assert_eq!(ranged.body, version(2)[1_048_570..=1_048_600]);
    assert_eq!(
        request(stack.edge, "GET", "/open/doc.pdf", &[], b"").body,
        version(2),
        "the shield refetched"
    );
}

/// A node's origin requests so far, from its metrics.
fn origin_requests_of(admin: SocketAddr) -> u64 {
    let metrics = request(admin, "GET", "/metrics", &[], b"").text();
    metrics
        .lines()
        .filter(|line| line.starts_with("keyfront_origin_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One copy per site: three nodes of a site (and a fourth, dead, in their
/// peer lists), each serving a 6-slice object whole: each slice is fetched
/// from the origin once and kept by one node; the others borrow it.
#[test]
fn a_site_keeps_each_slice_once() {
    let fleet = Fleet::start();
    let stack = &fleet.stack;
    let data = patterned(6 * SLICE);
    stack.put("/open/site.mp4", "video/mp4", &data);
    let members = [free_address(), free_address(), free_address()];
    let dead = dead_address();
    let secret = secret_file(fleet.secrets.path(), "site.secret", fleet.salt, 7);
    let nodes: Vec<(SocketAddr, SocketAddr, Arc<EdgeState>)> = members
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let peers: Vec<String> = members
                .iter()
                .chain([&dead])
                .filter(|peer| *peer != me)
                .map(|peer| format!("\"{peer}\""))
                .collect();
            let settings = format!(
                "fleet: {{node: site-{i}, secret_file: \"{secret}\", site_peers: [{}]}}",
                peers.join(", ")
            );
            stack.start_edge_on(*me, |template| template.replace(&fleet.shield_fleet, &settings))
        })
        .collect();
    for (_, admin, _) in &nodes {
        wait_until("the live peers found live and the dead one dead", || {
            let state = request(*admin, "GET", "/fleet", &[], b"").text();
            let shown =
                |address: &SocketAddr, healthy: bool| state.contains(&format!("{{\"address\":\"{address}\",\"healthy\":{healthy}}}"));
            shown(&dead, false) && members.iter().all(|member| shown(member, true))
        });
    }
    for (edge, _, _) in &nodes {
        let whole = request(*edge, "GET", "/open/site.mp4", &[], b"");
        assert!(
            whole.status == 200 && whole.body == data,
            "served whole by {edge}: {} with {} bytes, first difference at {:?}: {}",
            whole.status,
            whole.body.len(),
            whole.body.iter().zip(&data).position(|(a, b)| a != b),
            String::from_utf8_lossy(&whole.body[..whole.body.len().min(300)])
        );
    }
    let fetched: u64 = nodes.iter().map(|(_, admin, _)| origin_requests_of(*admin)).sum();
    assert_eq!(fetched, 6, "each slice fetched from the origin once by the site");
    let kept: Vec<u64> = nodes.iter().map(|(_, _, state)| state.cache.usage().0.1).collect();
    assert_eq!(kept.iter().sum::<u64>(), 6, "each slice kept by one node of the site: {kept:?}");
    assert!(
        kept.iter().filter(|count| **count > 0).count() >= 2,
        "slices spread over the site: {kept:?}"
    );
}

/// The key a rotation brings in (`KNEW`, not in any file at first).
fn new_signer() -> keyfront::auth::Signer {
    let key = keyfront::auth::PrivateKey::from_pem(&std::fs::read_to_string(common::fixture("ec_pkcs8.pem")).unwrap()).unwrap();
    keyfront::auth::Signer::new("KNEW", key, keyfront::auth::HashAlgorithm::Sha1)
}

/// GET `/priv/doc.txt` at `node`, signed by `signer`.
fn get_signed(node: SocketAddr, signer: &keyfront::auth::Signer) -> common::Response {
    let base = format!("http://{node}");
    let url = signer.sign_url(
        &format!("{base}/priv/doc.txt"),
        &PolicySpec::Canned {
            expires: common::now() + 600,
        },
    );
    request(node, "GET", &url[base.len()..], &[], b"")
}

/// Adds `KNEW` to group `main` in `node`'s config file (or takes it out again).
fn edit_main_group(stack: &common::Stack, node: SocketAddr, with_new_key: bool) {
    let path = stack.config_dir().join(format!("keyfront-{}.yaml", node.port()));
    let text = std::fs::read_to_string(&path).unwrap();
    let new_key = format!("    - id: KNEW\n      public_key: {}\n", common::fixture("ec_public.pem").display());
    let edited = match with_new_key {
        true => text.replacen("key_groups:\n  main:\n", &format!("key_groups:\n  main:\n{new_key}"), 1),
        false => text.replacen(&new_key, "", 1),
    };
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
}

fn reload(admin: SocketAddr) {
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    assert_eq!(request(admin, "POST", "/reload", &[("Authorization", &token)], b"").status, 200);
}

/// A key group rotated on one node (its file changed, then reloaded) is
/// honoured by every node of the fleet within a poll interval and a second:
/// a URL signed with the new key is refused everywhere before and served
/// everywhere after; the old key keeps working.
#[test]
fn a_key_group_rotated_on_one_node_is_honoured_by_all() {
    let fleet = Fleet::start_with(CONTROL);
    let stack = &fleet.stack;
    stack.put("/priv/doc.txt", "text/plain", b"for signed eyes");
    let (a, a_admin, _) = fleet.node("edge-a", &[stack.edge], 7, CONTROL);
    let (b, _, _) = fleet.node("edge-b", &[stack.edge], 7, CONTROL);
    let signer = new_signer();
    let nodes = [stack.edge, a, b];
    for node in nodes {
        let refused = get_signed(node, &signer);
        assert!(
            refused.status == 403 && refused.text().contains("<Code>InvalidKey</Code>"),
            "{node}: not yet trusted"
        );
    }

    edit_main_group(stack, a, true);
    let sent = std::time::Instant::now();
    reload(a_admin);
    for node in nodes {
        wait_until(&format!("{node} trusts the new key"), || get_signed(node, &signer).status == 200);
        assert_eq!(get_signed(node, &signer).body, b"for signed eyes");
        assert_eq!(get_signed(node, &stack.signer).status, 200, "{node}: the old key still works");
    }
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(3),
        "within the poll interval and a second: {:?}",
        sent.elapsed()
    );
}

/// Revocation is final. A key taken out of one node's file and reloaded is
/// refused by every node within 3 s; a key every node's file dropped stays
/// refused across a restart of every node, though the control log still
/// holds the entry that once granted it (a node's file, modified after that
/// entry, is authoritative for the groups it defines).
#[test]
fn a_revoked_key_stays_revoked_on_every_node_and_across_restarts() {
    let fleet = Fleet::start_with(CONTROL);
    let stack = &fleet.stack;
    stack.put("/priv/doc.txt", "text/plain", b"for signed eyes");
    let (a, a_admin, _) = fleet.node("edge-a", &[stack.edge], 7, CONTROL);
    let (b, _, _) = fleet.node("edge-b", &[stack.edge], 7, CONTROL);
    let signer = new_signer();
    let nodes = [stack.edge, a, b];
    let all_trust = |trusted: bool| {
        for node in nodes {
            wait_until(&format!("{node} trusts KNEW: {trusted}"), || {
                (get_signed(node, &signer).status == 200) == trusted
            });
        }
    };
    edit_main_group(stack, a, true);
    reload(a_admin);
    all_trust(true);
    edit_main_group(stack, a, false);
    let sent = std::time::Instant::now();
    reload(a_admin);
    all_trust(false);
    assert!(sent.elapsed() < std::time::Duration::from_secs(3), "{:?}", sent.elapsed());

    // Granted again through the log; then every node restarts on a file
    // written after that entry, without the key.
    edit_main_group(stack, a, true);
    reload(a_admin);
    all_trust(true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    for name in ["shield-2", "edge-a-2", "edge-b-2"] {
        let (node, state) = fleet.child(name, &[stack.edge], 7, CONTROL);
        let control = state.fleet.as_ref().unwrap().control.as_ref().unwrap().clone();
        wait_until(&format!("{name} replayed the log"), || control.last_applied().contains("-edge-a-"));
        let refused = get_signed(node, &signer);
        assert!(
            refused.status == 403 && refused.text().contains("<Code>InvalidKey</Code>"),
            "{name}: the replayed grant is older than the file: {} {}",
            refused.status,
            refused.text()
        );
        assert_eq!(get_signed(node, &stack.signer).status, 200, "{name}: the file's key works");
    }
}

/// The control log is a prefix anyone with the bucket's keys can write, so
/// only entries signed with the fleet secret for their own key count:
/// strays, unsigned entries, entries signed with another secret or copied
/// to another key, one too large to read, and one dated far ahead are all
/// passed over, the refused ones counted, and none stops the log: an entry
/// behind 1,001 other keys (more than a listing's page) from a node whose
/// clock is seconds behind (its key sorts before the newest applied) still
/// applies.
#[test]
fn the_control_log_applies_only_signed_entries_and_never_stalls() {
    use keyfront::fleet::{ControlEntry, signed_entry};
    let fleet = Fleet::start_with(CONTROL);
    let stack = &fleet.stack;
    let paths = ["late", "future", "unsigned", "forged", "moved"];
    for name in paths {
        let key = format!("/open/{name}.txt");
        stack.put_with(&key, &[("cache-control", "max-age=3600")], &[1; 100]);
        assert_eq!(request(stack.edge, "GET", &key, &[], b"").body, vec![1; 100], "{key} cached");
        stack.put(&key, "text/plain", &[2; 100]);
    }
    let json = |node: &str, time_ms: u64, invalidate: Vec<String>| {
        serde_json::to_vec(&ControlEntry {
            node: node.into(),
            time_ms,
            invalidate,
            ..ControlEntry::default()
        })
        .unwrap()
    };
    let name = |time_ms: u64, node: &str| format!("{time_ms:016}-{node}-0000abcd.json");
    let put_entry = |name: &str, body: &[u8]| stack.put(&format!("/_keyfront/control/{name}"), "application/json", body);
    let fleet_secret = secret(fleet.salt, 7);
    stack.put("/_keyfront/control/zzz", "text/plain", b"not an entry");
    let far_ahead = 9_999_999_999_999_999;
    let future = name(far_ahead, "evil");
    put_entry(
        &future,
        &signed_entry(&fleet_secret, &future, &json("evil", far_ahead, vec!["/open/future.txt".into()])),
    );

    let (_, a_admin, _) = fleet.node("edge-a", &[stack.edge], 7, CONTROL);
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    let sent = request(
        a_admin,
        "POST",
        "/invalidations",
        &[("Authorization", &token)],
        br#"{"paths": ["/open/none"]}"#,
    );
    assert_eq!(sent.status, 200);
    let shield = stack.state.fleet.as_ref().unwrap().control.as_ref().unwrap().clone();
    wait_until("the shield applied edge-a's entry", || shield.last_applied().contains("-edge-a-"));
    let refused_before = shield.refused();

    let now_ms = common::now() * 1000;
    let unsigned = name(now_ms - 20_000, "old");
    put_entry(&unsigned, &json("old", now_ms - 20_000, vec!["/open/unsigned.txt".into()]));
    let forged = name(now_ms - 19_000, "forger");
    put_entry(
        &forged,
        &signed_entry(
            &secret(fleet.salt, 8),
            &forged,
            &json("forger", now_ms - 19_000, vec!["/open/forged.txt".into()]),
        ),
    );
    let (signed_for, moved) = (name(now_ms - 90_000_000, "edge-a"), name(now_ms - 18_000, "edge-a"));
    put_entry(
        &moved,
        &signed_entry(
            &fleet_secret,
            &signed_for,
            &json("edge-a", now_ms - 90_000_000, vec!["/open/moved.txt".into()]),
        ),
    );
    let huge = name(now_ms - 17_000, "edge-a");
    let many: Vec<String> = (0..1100).map(|i| format!("/open/{i}/{}", "x".repeat(1000))).collect();
    put_entry(&huge, &signed_entry(&fleet_secret, &huge, &json("edge-a", now_ms - 17_000, many)));
    for i in 0..1001 {
        stack.put(
            &format!("/_keyfront/control/{:016}-pad-{i:04}.txt", now_ms - 16_000 + i),
            "text/plain",
            b"",
        );
    }
    let late = name(now_ms - 10_000, "slow");
    put_entry(
        &late,
        &signed_entry(&fleet_secret, &late, &json("slow", now_ms - 10_000, vec!["/open/late.txt".into()])),
    );
    wait_until("the late entry applied", || {
        request(stack.edge, "GET", "/open/late.txt", &[], b"").body == vec![2; 100]
    });
    wait_until("every bad entry counted", || shield.refused() >= refused_before + 4);
    assert_eq!(shield.refused(), refused_before + 4, "unsigned, forged, moved, too large");
    for name in ["future", "unsigned", "forged", "moved"] {
        assert_eq!(
            request(stack.edge, "GET", &format!("/open/{name}.txt"), &[], b"").body,
            vec![1; 100],
            "the {name} entry is not applied"
        );
    }
    assert!(shield.last_applied().contains("-edge-a-"), "strays never become the newest entry");
    let metrics = request(stack.admin, "GET", "/metrics", &[], b"").text();
    let line = format!("keyfront_control_entries_refused_total {}", refused_before + 4);
    assert!(metrics.contains(&line), "{line} in the metrics");
}

/// The parents of a node as its admin API lists them.
fn listed_parents(admin: SocketAddr) -> Vec<String> {
    let state: serde_json::Value = serde_json::from_slice(&request(admin, "GET", "/fleet", &[], b"").body).unwrap();
    let mut parents: Vec<String> = state["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parent| parent["address"].as_str().unwrap().to_owned())
        .collect();
    parents.sort();
    parents
}

/// Parents named by DNS (SRV targets, A records) join and leave a node's
/// ring as their records change, without a restart; a name that stops
/// resolving keeps its last members and says so in /fleet and the metrics;
/// every viewer request meanwhile is answered whole.
#[test]
fn parents_named_by_dns_follow_their_records_and_no_viewer_request_fails() {
    let fleet = Fleet::start();
    let first = fleet.stack.edge;
    let (second, _) = fleet.child("shield-2", &[], 7, "");
    let dns = Dns::start("fleet.test.");
    let ipv4 = |address: SocketAddr| match address.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("a loopback IPv4 address, not {other}"),
    };
    dns.set_a("one", &[ipv4(first)]);
    dns.set_a("two", &[ipv4(second)]);
    dns.set_srv("_keyfront._tcp", &[("one", first.port())]);
    let resolver = format!("dns: {{server: \"{}\", interval: 1s}}", dns.address);
    let (child, child_admin, _) = fleet.node_with("edge-srv", 7, &format!("parents: [{{srv: _keyfront._tcp.fleet.test}}], {resolver}"));
    let as_string = |address: SocketAddr| address.to_string();
    wait_until("the SRV target is the parent", || listed_parents(child_admin) == [as_string(first)]);

    // Viewers keep asking while the records change.
    let data = patterned(2 * SLICE + 7);
    fleet.stack.put("/open/dns.bin", "application/octet-stream", &data);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let viewer = {
        let (stop, data) = (stop.clone(), data.clone());
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let start = (answered * 7919) % (data.len() - 100);
                let range = format!("bytes={start}-{}", start + 99);
                let answer = request(child, "GET", "/open/dns.bin", &[("Range", range.as_str())], b"");
                if answer.status != 206 || answer.body != data[start..start + 100] {
                    failed.push(format!("{range}: {} {}", answer.status, answer.text()));
                }
                answered += 1;
            }
            (answered, failed)
        })
    };

    let mut both = vec![as_string(first), as_string(second)];
    both.sort();
    dns.set_srv("_keyfront._tcp", &[("one", first.port()), ("two", second.port())]);
    wait_until("a second target joins", || listed_parents(child_admin) == both);
    dns.set_srv("_keyfront._tcp", &[("two", second.port())]);
    wait_until("the first target leaves", || listed_parents(child_admin) == [as_string(second)]);
    // The name stops resolving: the last members stay, and it says so.
    dns.set_srv("_keyfront._tcp", &[]);
    wait_until("the failure is reported", || {
        let state = request(child_admin, "GET", "/fleet", &[], b"").text();
        state.contains("\"resolving\":false") && state.contains(&format!("\"members\":[\"{second}\"]"))
    });
    assert_eq!(listed_parents(child_admin), [as_string(second)], "the last good set is kept");
    let metrics = request(
        child_admin,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
        b"",
    )
    .text();
    assert!(
        metrics.contains(r#"keyfront_fleet_member_name_resolving{name="_keyfront._tcp.fleet.test"} 0"#)
            && metrics.contains(r#"keyfront_fleet_member_name_members{name="_keyfront._tcp.fleet.test"} 1"#),
        "{metrics}"
    );
    dns.set_srv("_keyfront._tcp", &[("one", first.port())]);
    wait_until("it resolves again", || listed_parents(child_admin) == [as_string(first)]);

    // A records of a name: every address at the port named.
    let (_, a_admin, _) = fleet.node_with(
        "edge-a",
        7,
        &format!("parents: [{{dns: \"one.fleet.test:{}\"}}], {resolver}", first.port()),
    );
    wait_until("the A record is the parent", || listed_parents(a_admin) == [as_string(first)]);
    let elsewhere = std::net::Ipv4Addr::new(127, 0, 0, 2);
    dns.set_a("one", &[ipv4(first), elsewhere]);
    let moved = SocketAddr::from((elsewhere, first.port())).to_string();
    let mut two = vec![as_string(first), moved.clone()];
    two.sort();
    wait_until("a second address joins", || listed_parents(a_admin) == two);

    stop.store(true, Ordering::SeqCst);
    let (answered, failed) = viewer.join().unwrap();
    assert!(answered > 20, "the viewer kept asking: {answered}");
    assert!(
        failed.is_empty(),
        "{} of {answered} viewer requests failed: {failed:?}",
        failed.len()
    );
}
