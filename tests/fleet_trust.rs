//! The fleet and the control plane together, over real sockets: a shield
//! and a site of three in-process nodes, each with its own control plane,
//! one control log in the bucket. What one node's API creates is served by
//! every node as that distribution (its keys, OriginPath and bucket), and
//! nothing an unsigned viewer sends, through any node with any Host, nor
//! any replayed node request, gets a byte of a signed object.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{NS, field, text};
use common::{BUCKET, OTHER_ACCESS_KEY, OTHER_BUCKET, OTHER_SECRET, Response, Stack, free_address, request, wait_for, wait_until};
use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PrivateKey, Signer};
use keyfront::edge::EdgeState;
use keyfront::emulator::call_api;
use keyfront::fleet::{FleetRequest, FleetSecret};
use keyfront::origin::{Credentials, Origin, put_object};
use keyfront::plain_http::Answer;

const API_KEY: &str = "AKFLEETTEST";
const API_SECRET: &str = "fleet-api-secret";

/// The YAML's signed object (its `*` behavior trusts only the file's key).
const YAML_SECRET: &[u8] = b"the config file's signed object: never for an unsigned viewer";
/// The distribution's signed object, under its OriginPath in the other bucket.
const DIST_SECRET: &[u8] = b"the distribution's signed object";
/// The distribution's public object, and the file's object at the same path.
const DIST_PUBLIC: &[u8] = b"the distribution's public page";
const YAML_PUBLIC: &[u8] = b"the config file's page at the same path";

/// A CloudFront API call to `control`, SigV4-signed as the SDKs sign.
fn call(control: SocketAddr, method: &str, path: &str, body: &[u8], if_match: Option<&str>) -> Answer {
    let credentials = Credentials {
        access_key_id: API_KEY.into(),
        secret_access_key: API_SECRET.into(),
        session_token: None,
    };
    call_api(control, &credentials, method, path, body, if_match).unwrap()
}

/// Whether `body` holds any of the signed objects' bytes.
fn leaks(body: &[u8]) -> bool {
    [YAML_SECRET, DIST_SECRET]
        .iter()
        .any(|secret| body.windows(secret.len()).any(|w| w == *secret))
}

struct Node {
    name: &'static str,
    edge: SocketAddr,
    control: SocketAddr,
    state: Arc<EdgeState>,
}

struct Site {
    stack: Stack,
    nodes: Vec<Node>,
    secret: FleetSecret,
    _secrets: tempfile::TempDir,
}

impl Site {
    /// A shield and three site nodes under it (a ring of one copy per
    /// site), each with a control plane whose S3 origin is the other bucket.
    fn start() -> Site {
        Site::serving_distributions_from("other")
    }

    /// `start`, the control plane's distributions served through the
    /// origin `s3_origin` (its endpoint and credentials).
    fn serving_distributions_from(s3_origin: &str) -> Site {
        let stack = Stack::start("  - path_pattern: /open/*\n    origin: store\n");
        let secrets = tempfile::tempdir().unwrap();
        let text = format!("{:064x}", rand::random::<u128>());
        let secret_file = secrets.path().join("fleet.secret");
        std::fs::write(&secret_file, &text).unwrap();
        let names = ["shield", "site-a", "site-b", "site-c"];
        let edges: Vec<SocketAddr> = names.iter().map(|_| free_address()).collect();
        let peers = |me: usize| -> String {
            (1..4)
                .filter(|i| *i != me)
                .map(|i| format!("\"{}\"", edges[i]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let control = free_address();
            let topology = match i {
                0 => String::new(),
                _ => format!(
                    ", parents: [\"{}\"], site_peers: [{}], site_address: \"{}\"",
                    edges[0],
                    peers(i),
                    edges[i]
                ),
            };
            let settings = format!(
                "fleet: {{node: {name}, secret_file: \"{}\", control: {{origin: store, poll: 1s}}{topology}}}\ncontrol_listen: \"{control}\"\ncontrol_api: {{s3_origin: {s3_origin}, credentials: [{{access_key_id: {API_KEY}, secret_access_key: {API_SECRET}}}], domain_suffix: cloudfront.test}}\nkey_groups:",
                secret_file.display()
            );
            let store = stack.store;
            let (edge, _admin, state) = stack.start_edge_on(edges[i], |template| {
                template.replacen("key_groups:", &settings, 1).replacen(
                    "origins:\n",
                    &format!(
                        "origins:\n  other: {{type: s3, endpoint: \"http://{store}\", bucket: {OTHER_BUCKET}, path_style: true, access_key_id: {OTHER_ACCESS_KEY}, secret_access_key: {OTHER_SECRET}}}\n"
                    ),
                    1,
                )
            });
            wait_for(control);
            nodes.push(Node {
                name,
                edge,
                control,
                state,
            });
        }
        Site {
            stack,
            nodes,
            secret: FleetSecret::new(text.as_bytes()).unwrap(),
            _secrets: secrets,
        }
    }

    /// A GET to the shield as node `site-a` would send it, signed for
    /// `table` and `(object, path)`, sent for `sent_path` with `headers`.
    fn node_request(&self, table: &str, (object, path): (&str, &str), sent_path: &str, headers: &[(&str, &str)]) -> Response {
        let signature = self.secret.sign(&FleetRequest {
            method: "GET",
            table,
            object,
            path,
            range: "",
            node: "site-a",
            time: common::now(),
            not_before: 0,
            site_hop: false,
        });
        let mut all: Vec<(&str, &str)> = signature.iter().map(|(n, v)| (*n, v.as_str())).collect();
        all.extend_from_slice(headers);
        request(self.nodes[0].edge, "GET", sent_path, &all, b"")
    }

    /// A distribution (see `distribution`) whose default behavior's cache
    /// policy keys `parts` (its headers, cookies and query strings configs),
    /// made through the second node's API and served by every node, the
    /// shield included (a node that did not serve it yet would send its
    /// children to the origin). Its id and DomainName.
    fn keyed_distribution(&self, parts: &str) -> (String, String) {
        let control = self.nodes[1].control;
        let policy = format!(
            "<CachePolicyConfig {NS}><Name>keyed</Name><MinTTL>0</MinTTL><DefaultTTL>3600</DefaultTTL><MaxTTL>3600</MaxTTL>\
             <ParametersInCacheKeyAndForwardedToOrigin><EnableAcceptEncodingGzip>false</EnableAcceptEncodingGzip>{parts}\
             </ParametersInCacheKeyAndForwardedToOrigin></CachePolicyConfig>"
        );
        let created = call(control, "POST", "/2020-05-31/cache-policy", policy.as_bytes(), None);
        assert_eq!(created.status, 201, "{}", text(&created));
        let policy = field(&text(&created), "Id");
        let (_, group) = key_group(control);
        let (id, domain) = distribution_with(control, &group, &format!("<CachePolicyId>{policy}</CachePolicyId>"));
        self.put_other("/d/ready.bin", b"ready");
        for node in &self.nodes {
            wait_until(&format!("{} serves the distribution", node.name), || {
                get(node.edge, &domain, "/ready.bin").status == 200
            });
        }
        (id, domain)
    }

    fn put_other(&self, key: &str, body: &[u8]) {
        let other = Origin::embedded(self.stack.store, OTHER_BUCKET, OTHER_ACCESS_KEY, OTHER_SECRET);
        assert_eq!(put_object(&other, key, &[], body).unwrap(), 200);
    }
}

/// A public key and a key group through `control`'s API; the signer and the group's id.
fn key_group(control: SocketAddr) -> (Signer, String) {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let body = format!(
        "<PublicKeyConfig {NS}><CallerReference>k</CallerReference><Name>dist-key</Name><EncodedKey>{}</EncodedKey></PublicKeyConfig>",
        key.public_key().to_pem()
    );
    let created = call(control, "POST", "/2020-05-31/public-key", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let key_id = field(&text(&created), "Id");
    let body = format!("<KeyGroupConfig {NS}><Name>dist-group</Name><Items><PublicKey>{key_id}</PublicKey></Items></KeyGroupConfig>");
    let created = call(control, "POST", "/2020-05-31/key-group", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    (Signer::new(key_id, key, HashAlgorithm::Sha1), field(&text(&created), "Id"))
}

/// A distribution over the other bucket under `/d`: public by default,
/// `/priv/*` signed by `group`. Its id and DomainName.
fn distribution(control: SocketAddr, group: &str) -> (String, String) {
    distribution_with(control, group, "")
}

/// `distribution`, its default behavior given `extra` elements.
fn distribution_with(control: SocketAddr, group: &str, extra: &str) -> (String, String) {
    let body = format!(
        "<DistributionConfig {NS}><CallerReference>fleet</CallerReference><Comment/><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{OTHER_BUCKET}.s3.amazonaws.com</DomainName><OriginPath>/d</OriginPath></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy>{extra}</DefaultCacheBehavior>\
         <CacheBehaviors><Quantity>1</Quantity><Items><CacheBehavior><PathPattern>priv/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><TrustedKeyGroups><Enabled>true</Enabled><Quantity>1</Quantity><Items><KeyGroup>{group}</KeyGroup></Items></TrustedKeyGroups></CacheBehavior></Items></CacheBehaviors></DistributionConfig>"
    );
    let created = call(control, "POST", "/2020-05-31/distribution", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let xml = text(&created);
    (field(&xml, "Id"), field(&xml, "DomainName"))
}

fn get(node: SocketAddr, host: &str, target: &str) -> Response {
    request(node, "GET", target, &[("Host", host)], b"")
}

/// Defect 1 of the trust issue, and the fleet's promise for distributions:
/// created through one node's API, a distribution is served by every node
/// (its own objects, signatures, OriginPath and bucket) within a poll;
/// through any node and any Host, an unsigned viewer gets no byte of a
/// signed object of the file or of the distribution; invalidated through
/// a third node, it is purged everywhere; disabled through another node, it
/// is refused everywhere within a poll, and deleted, it is gone everywhere.
#[test]
fn a_distribution_made_on_one_node_is_served_by_every_node_as_itself() {
    let site = Site::start();
    let stack = &site.stack;
    stack.put("/secret.bin", "application/octet-stream", YAML_SECRET);
    stack.put("/priv/secret.bin", "application/octet-stream", YAML_SECRET);
    stack.put("/pub/page.txt", "text/plain", YAML_PUBLIC);
    site.put_other("/d/priv/secret.bin", DIST_SECRET);
    site.put_other("/d/pub/page.txt", DIST_PUBLIC);
    let (signer, group) = key_group(site.nodes[1].control);
    let (id, domain) = distribution(site.nodes[1].control, &group);

    let signed = signer.sign_url(
        &format!("http://{domain}/priv/secret.bin"),
        &PolicySpec::Canned {
            expires: common::now() + 600,
        },
    );
    let signed_target = &signed[format!("http://{domain}").len()..];
    let unsigned_get_nothing = |node: &Node| {
        let name = node.name;
        for (host, target) in [
            (domain.as_str(), "/priv/secret.bin"),
            (domain.as_str(), "/secret.bin"),
            (domain.as_str(), "/PRIV/secret.bin"),
            (domain.as_str(), "/pub/../priv/secret.bin"),
            (domain.as_str(), "/pub/%2e%2e/priv/secret.bin"),
            ("d-unknown.cloudfront.test", "/priv/secret.bin"),
            ("", "/secret.bin"),
        ] {
            let answer = get(node.edge, host, target);
            assert!(
                !leaks(&answer.body) && answer.status >= 400,
                "{name}: unsigned {host} {target} answered {} {}",
                answer.status,
                answer.text()
            );
        }
        let answer = get(node.edge, &domain, &stack.signed("/priv/secret.bin"));
        assert_eq!(answer.status, 403, "{name}: the file's key does not open the distribution's object");
        assert!(!leaks(&answer.body), "{name}");
        let host = node.edge.to_string();
        let answer = get(node.edge, &host, "/secret.bin");
        assert!(
            answer.status == 403 && answer.text().contains("MissingKey"),
            "{name}: the file's object needs its signature"
        );
    };
    // The node whose API made it, at once: its site peers and shield are
    // asked for the distribution's objects, never the file's.
    unsigned_get_nothing(&site.nodes[1]);
    let started = Instant::now();
    for node in &site.nodes {
        wait_until(&format!("{} serves the distribution", node.name), || {
            get(node.edge, &domain, "/pub/page.txt").body == DIST_PUBLIC
        });
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within a poll or two: {:?}",
        started.elapsed()
    );
    for node in &site.nodes {
        let answer = get(node.edge, &domain, signed_target);
        assert!(
            answer.status == 200 && answer.body == DIST_SECRET,
            "{}: the distribution's own key opens its object",
            node.name
        );
        unsigned_get_nothing(node);
    }

    // Node requests: one made with the fleet secret for the distribution's
    // public object is served; the same, pointed at anything else, is not.
    let object = format!("{id}/o\n/{OTHER_BUCKET}/d/pub/page.txt");
    let node_request = |table: &str, object: &str, path: &str, sent_path: &str, host: &str| {
        site.node_request(table, (object, path), sent_path, &[("Host", host)])
    };
    let good = node_request(&id, &object, "/pub/page.txt", "/pub/page.txt", "anything");
    assert!(good.status == 200 && good.body == DIST_PUBLIC, "{}", good.status);
    let replays = [
        (
            "another path",
            node_request(&id, &object, "/pub/page.txt", "/priv/secret.bin", &domain),
        ),
        (
            "another path, the file's",
            node_request(&id, &object, "/pub/page.txt", "/secret.bin", "anything"),
        ),
        (
            "the file's table",
            node_request("-", &object, "/pub/page.txt", "/pub/page.txt", &domain),
        ),
        (
            "the file's object, signed for the distribution",
            node_request(&id, "store\n/media/secret.bin", "/secret.bin", "/secret.bin", &domain),
        ),
    ];
    for (what, answer) in replays {
        assert_eq!(answer.status, 403, "{what}");
        assert!(
            !leaks(&answer.body) && !answer.body.windows(DIST_PUBLIC.len()).any(|w| w == DIST_PUBLIC),
            "{what}"
        );
    }

    // An invalidation through a third node's API purges every node.
    site.put_other("/d/pub/page.txt", b"the page, changed");
    for node in &site.nodes {
        assert_eq!(get(node.edge, &domain, "/pub/page.txt").body, DIST_PUBLIC, "{}: cached", node.name);
    }
    let batch = format!(
        "<InvalidationBatch {NS}><Paths><Quantity>1</Quantity><Items><Path>/pub/*</Path></Items></Paths><CallerReference>purge</CallerReference></InvalidationBatch>"
    );
    let created = call(
        site.nodes[3].control,
        "POST",
        &format!("/2020-05-31/distribution/{id}/invalidation"),
        batch.as_bytes(),
        None,
    );
    assert_eq!(created.status, 201, "{}", text(&created));
    let invalidation = field(&text(&created), "Id");
    for node in &site.nodes {
        wait_until(&format!("{} serves the changed page", node.name), || {
            get(node.edge, &domain, "/pub/page.txt").body == b"the page, changed"
        });
        wait_until(&format!("{} knows the invalidation", node.name), || {
            call(
                node.control,
                "GET",
                &format!("/2020-05-31/distribution/{id}/invalidation/{invalidation}"),
                b"",
                None,
            )
            .status
                == 200
        });
    }

    // Disabled through another node's API: refused everywhere.
    let config = call(
        site.nodes[2].control,
        "GET",
        &format!("/2020-05-31/distribution/{id}/config"),
        b"",
        None,
    );
    assert_eq!(config.status, 200, "site-b knows the distribution: {}", text(&config));
    let etag = config.header("etag").unwrap().to_owned();
    let disabled = text(&config).replace("<Enabled>true</Enabled>", "<Enabled>false</Enabled>");
    let updated = call(
        site.nodes[2].control,
        "PUT",
        &format!("/2020-05-31/distribution/{id}/config"),
        disabled.as_bytes(),
        Some(&etag),
    );
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let started = Instant::now();
    for node in &site.nodes {
        wait_until(&format!("{} refuses the disabled distribution", node.name), || {
            get(node.edge, &domain, "/pub/page.txt").status == 403
        });
        let answer = get(node.edge, &domain, signed_target);
        assert!(answer.status == 403 && !leaks(&answer.body), "{}", node.name);
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let shown = call(site.nodes[3].control, "GET", &format!("/2020-05-31/distribution/{id}"), b"", None);
    assert!(text(&shown).contains("<Enabled>false</Enabled>"), "site-c's API shows the change");

    // Deleted through site-c: gone from every node's API and table.
    let etag = shown.header("etag").unwrap().to_owned();
    let deleted = call(
        site.nodes[3].control,
        "DELETE",
        &format!("/2020-05-31/distribution/{id}"),
        b"",
        Some(&etag),
    );
    assert_eq!(deleted.status, 204, "{}", text(&deleted));
    for node in &site.nodes {
        wait_until(&format!("{} forgot the distribution", node.name), || {
            call(node.control, "GET", &format!("/2020-05-31/distribution/{id}"), b"", None).status == 404
        });
        let answer = get(node.edge, &domain, "/pub/page.txt");
        assert!(
            answer.status == 403 && answer.text().contains("MissingKey"),
            "{}: its name now falls to the file's signed behavior",
            node.name
        );
    }
}

/// Viewers never reach the control log's prefix, whatever a behavior
/// allows: a public behavior with every method over the log's bucket
/// refuses reads and writes there before the origin, and nothing lands.
#[test]
fn no_viewer_reads_or_writes_the_control_log() {
    let site = Site::start();
    let stack = &site.stack;
    let node = &site.nodes[1];
    let token = format!("Bearer {}", common::ADMIN_TOKEN);
    stack.put("/uploads/ok.txt", "text/plain", b"before");
    let config = std::fs::read_to_string(stack.config_dir().join(format!("keyfront-{}.yaml", node.edge.port()))).unwrap();
    let open = config.replacen(
        "behaviors:\n",
        "behaviors:\n  - path_pattern: \"/*\"\n    origin: store\n    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]\n",
        1,
    );
    std::fs::write(stack.config_dir().join(format!("keyfront-{}.yaml", node.edge.port())), open).unwrap();
    node.state.reload().unwrap();
    let now_ms = common::now() * 1000;
    let entry_key = format!("/_keyfront/control/{now_ms:016}-evil-00000000.json");
    let grant = br#"{"node":"evil","time_ms":1,"key_groups":{"main":[["KEVIL","-----BEGIN PUBLIC KEY-----"]]}}"#;
    for (method, path) in [
        ("PUT", entry_key.as_str()),
        ("PUT", "/_keyfront/control/x"),
        ("POST", "/_keyfront/control/?uploads"),
        ("DELETE", "/_keyfront/control/x"),
        ("GET", "/_keyfront/control/"),
        ("GET", entry_key.as_str()),
        ("PUT", "/_keyfront/./control/y.json"),
        ("PUT", "/_keyfront%2Fcontrol/z.json"),
    ] {
        let answer = request(node.edge, method, path, &[("Authorization", &token)], grant);
        assert!(
            answer.status == 403 || answer.status == 400,
            "{method} {path}: {} {}",
            answer.status,
            answer.text()
        );
    }
    // An entry that is there: its bytes never reach a viewer, in any spelling.
    let stored = "/_keyfront/control/0000000000000001-real-00000000.json";
    stack.put(stored, "application/json", b"an entry's own bytes");
    for path in [
        stored,
        "/_keyfront/control/../control/0000000000000001-real-00000000.json",
        "/_keyfront/%63ontrol/0000000000000001-real-00000000.json",
    ] {
        let answer = request(node.edge, "GET", path, &[], b"");
        assert!(
            answer.status >= 400 && !answer.text().contains("an entry's own bytes"),
            "GET {path}: {} {}",
            answer.status,
            answer.text()
        );
    }
    let written = request(node.edge, "PUT", "/uploads/ok.txt", &[], b"after");
    assert_eq!(written.status, 200, "the behavior does write elsewhere: {}", written.text());
    let log = Origin::embedded(stack.store, BUCKET, common::ACCESS_KEY, common::SECRET);
    for key in [
        entry_key.as_str(),
        "/_keyfront/control/x",
        "/_keyfront/control/y.json",
        "/_keyfront/control/z.json",
    ] {
        let answer = common::store_request(&log, stack.store, "GET", &format!("/{BUCKET}{key}"), &[], b"");
        assert_eq!(answer.status, 404, "{key} was never written");
    }
}

/// A response headers policy is laid over what a node answers its viewers,
/// and never over what it answers another node: a policy telling browsers
/// `Cache-Control: no-store` leaves the nodes of the fleet caching.
#[test]
fn response_headers_policies_apply_to_viewers_not_between_nodes() {
    let site = Site::start();
    let data = common::patterned(3 << 20);
    site.put_other("/d/big.bin", &data);
    let control = site.nodes[1].control;
    let policy = format!(
        "<ResponseHeadersPolicyConfig {NS}><Name>edge-only</Name>\
         <CustomHeadersConfig><Quantity>1</Quantity><Items><ResponseHeadersPolicyCustomHeader><Header>Cache-Control</Header><Value>no-store</Value><Override>true</Override></ResponseHeadersPolicyCustomHeader></Items></CustomHeadersConfig>\
         </ResponseHeadersPolicyConfig>"
    );
    let created = call(control, "POST", "/2020-05-31/response-headers-policy", policy.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let policy = field(&text(&created), "Id");
    let (_, group) = key_group(control);
    let (_, domain) = distribution_with(
        control,
        &group,
        &format!("<ResponseHeadersPolicyId>{policy}</ResponseHeadersPolicyId>"),
    );
    for node in &site.nodes[1..] {
        wait_until(&format!("{} serves the distribution", node.name), || {
            get(node.edge, &domain, "/big.bin").status == 200
        });
        let answer = get(node.edge, &domain, "/big.bin");
        assert!(answer.body == data, "{}: the object whole", node.name);
        assert_eq!(
            answer.header("cache-control"),
            Some("no-store"),
            "{}: the policy's header",
            node.name
        );
        assert!(
            answer.header("x-cache").is_some_and(|cache| cache.starts_with("Hit")),
            "{}: kept by the fleet: {:?}",
            node.name,
            answer.header("x-cache")
        );
    }
}

/// A cache policy's query strings travel the fleet: a variant one node
/// fetched is kept for every node (each serves the copy of before an origin
/// change), another variant is another object, and a node request signed
/// for one variant and sent for another is refused with no byte of either.
#[test]
fn query_string_variants_are_kept_by_the_fleet_and_bound_by_its_signature() {
    let site = Site::start();
    site.put_other("/d/a.bin", b"first");
    let (id, domain) = site.keyed_distribution(
        "<HeadersConfig><HeaderBehavior>none</HeaderBehavior></HeadersConfig><CookiesConfig><CookieBehavior>none</CookieBehavior></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>whitelist</QueryStringBehavior><QueryStrings><Quantity>1</Quantity><Items><Name>w</Name></Items></QueryStrings></QueryStringsConfig>",
    );
    assert_eq!(get(site.nodes[1].edge, &domain, "/a.bin?w=1").text(), "first");
    site.put_other("/d/a.bin", b"second");
    for node in &site.nodes[1..] {
        let kept = get(node.edge, &domain, "/a.bin?x=5&w=1");
        assert_eq!(kept.text(), "first", "{}: the variant the fleet keeps", node.name);
        let other = get(node.edge, &domain, "/a.bin?w=2");
        assert_eq!(other.text(), "second", "{}: another variant", node.name);
    }

    let node_request = |signed_path: &str, signed_object: &str, sent_path: &str| {
        site.node_request(&id, (signed_object, signed_path), sent_path, &[("Host", "anything")])
    };
    let object = |query: &str| format!("{id}/o\n/{OTHER_BUCKET}/d/a.bin?{query}");
    let good = node_request("/a.bin?w=1", &object("w=1"), "/a.bin?w=1");
    assert_eq!(
        (good.status, good.text().as_str()),
        (200, "first"),
        "a node's request for its variant"
    );
    for (what, answer) in [
        ("another variant sent", node_request("/a.bin?w=1", &object("w=1"), "/a.bin?w=2")),
        (
            "the variant's parameter dropped",
            node_request("/a.bin?w=1", &object("w=1"), "/a.bin"),
        ),
        (
            "signed without the query",
            node_request("/a.bin", &format!("{id}/o\n/{OTHER_BUCKET}/d/a.bin"), "/a.bin?w=1"),
        ),
    ] {
        assert_eq!(answer.status, 403, "{what}");
        assert!(
            !answer.text().contains("first") && !answer.text().contains("second"),
            "{what}: {}",
            answer.text()
        );
    }
}

/// A cache policy's headers and cookies travel the fleet as its query
/// strings do: a node's parent keys what the node sends it by the same
/// behavior, so each variant is one object fleet-wide, and a node request
/// signed for one variant and sent with another's values is refused.
#[test]
fn header_and_cookie_variants_are_kept_by_the_fleet_and_bound_by_its_signature() {
    let site = Site::start();
    site.put_other("/d/v.bin", b"first");
    let (id, domain) = site.keyed_distribution(
        "<HeadersConfig><HeaderBehavior>whitelist</HeaderBehavior><Headers><Quantity>1</Quantity><Items><Name>X-Tenant</Name></Items></Headers></HeadersConfig>\
         <CookiesConfig><CookieBehavior>whitelist</CookieBehavior><Cookies><Quantity>1</Quantity><Items><Name>plan</Name></Items></Cookies></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>none</QueryStringBehavior></QueryStringsConfig>",
    );
    let get_as = |node: SocketAddr, tenant: &str, cookie: &str| {
        request(
            node,
            "GET",
            "/v.bin",
            &[("Host", &domain), ("X-Tenant", tenant), ("Cookie", cookie)],
            b"",
        )
    };
    assert_eq!(get_as(site.nodes[1].edge, "t1", "plan=gold; other=1").text(), "first");
    site.put_other("/d/v.bin", b"second");
    for node in &site.nodes[1..] {
        let kept = get_as(node.edge, "t1", "plan=gold");
        assert_eq!(kept.text(), "first", "{}: the variant the fleet keeps", node.name);
        let tenant = get_as(node.edge, "t2", "plan=gold");
        assert_eq!(tenant.text(), "second", "{}: another tenant", node.name);
        let plan = get_as(node.edge, "t1", "plan=free");
        assert_eq!(plan.text(), "second", "{}: another plan", node.name);
    }

    let object = format!("{id}/o\n/{OTHER_BUCKET}/d/v.bin\nx-tenant:t1\nplan=gold");
    let node_request = |headers: &[(&str, &str)]| {
        let mut all = vec![("Host", "anything")];
        all.extend_from_slice(headers);
        site.node_request(&id, (&object, "/v.bin"), "/v.bin", &all)
    };
    let good = node_request(&[("X-Tenant", "t1"), ("Cookie", "plan=gold")]);
    assert_eq!(
        (good.status, good.text().as_str()),
        (200, "first"),
        "a node's request for its variant"
    );
    for (what, headers) in [
        ("another tenant sent", &[("X-Tenant", "t2"), ("Cookie", "plan=gold")][..]),
        ("the cookie dropped", &[("X-Tenant", "t1")][..]),
        ("no values", &[][..]),
    ] {
        let answer = node_request(headers);
        assert_eq!(answer.status, 403, "{what}");
        assert!(
            !answer.text().contains("first") && !answer.text().contains("second"),
            "{what}: {}",
            answer.text()
        );
    }
}

/// A function created and published through one node's API, and a
/// distribution running it made through another's, run on every node;
/// its next version, published through a third, too. A node's request to
/// another runs no function a second time: the rewritten path is asked
/// for as it is, and the viewer-response header is added once.
#[test]
fn a_function_published_on_one_node_runs_on_every_node() {
    use base64::Engine as _;
    let site = Site::start();
    site.put_other("/d/pub/index.html", DIST_PUBLIC);
    let (_, group) = key_group(site.nodes[1].control);
    let code = |stamp: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "function handler(event) {{ if (event.response) {{ var r = event.response; r.headers['x-stamp'] = {{ value: (r.headers['x-stamp'] ? r.headers['x-stamp'].value + ',' : '') + '{stamp}' }}; return r; }}\n\
             var q = event.request; if (q.uri.endsWith('/')) {{ q.uri += 'index.html'; }} return q; }}"
        ))
    };
    let body = |root: &str, stamp: &str| {
        format!(
            "<{root} {NS}><Name>site</Name><FunctionConfig><Comment/><Runtime>cloudfront-js-2.0</Runtime></FunctionConfig><FunctionCode>{}</FunctionCode></{root}>",
            code(stamp)
        )
    };
    let created = call(
        site.nodes[0].control,
        "POST",
        "/2020-05-31/function",
        body("CreateFunctionRequest", "v1").as_bytes(),
        None,
    );
    assert_eq!(created.status, 201, "{}", text(&created));
    let etag = created.header("etag").unwrap().to_owned();
    let published = call(site.nodes[0].control, "POST", "/2020-05-31/function/site/publish", b"", Some(&etag));
    assert_eq!(published.status, 200, "{}", text(&published));
    let arn = field(&text(&published), "FunctionARN");
    let functions = format!(
        "<FunctionAssociations><Quantity>2</Quantity><Items><FunctionAssociation><FunctionARN>{arn}</FunctionARN><EventType>viewer-request</EventType></FunctionAssociation><FunctionAssociation><FunctionARN>{arn}</FunctionARN><EventType>viewer-response</EventType></FunctionAssociation></Items></FunctionAssociations>"
    );
    // The node whose API makes the distribution learns the function first.
    wait_until("node 1 knows the published function", || {
        call(
            site.nodes[1].control,
            "GET",
            "/2020-05-31/function/site/describe?Stage=LIVE",
            b"",
            None,
        )
        .status
            == 200
    });
    let (_, domain) = distribution_with(site.nodes[1].control, &group, &functions);
    for node in &site.nodes {
        wait_until(&format!("{} runs the function", node.name), || {
            let answer = get(node.edge, &domain, "/pub/");
            answer.body == DIST_PUBLIC && answer.header("x-stamp") == Some("v1")
        });
    }

    let described = call(site.nodes[2].control, "GET", "/2020-05-31/function/site/describe", b"", None);
    let etag = described.header("etag").unwrap().to_owned();
    let updated = call(
        site.nodes[2].control,
        "PUT",
        "/2020-05-31/function/site",
        body("UpdateFunctionRequest", "v2").as_bytes(),
        Some(&etag),
    );
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let etag = updated.header("etag").unwrap().to_owned();
    wait_until("node 3 knows the new version", || {
        call(site.nodes[3].control, "GET", "/2020-05-31/function/site/describe", b"", None).header("etag") == Some(etag.as_str())
    });
    let published = call(site.nodes[3].control, "POST", "/2020-05-31/function/site/publish", b"", Some(&etag));
    assert_eq!(published.status, 200, "{}", text(&published));
    for node in &site.nodes {
        wait_until(&format!("{} runs the new version", node.name), || {
            get(node.edge, &domain, "/pub/").header("x-stamp") == Some("v2")
        });
    }
}

/// An origin group's second member is guarded as its first: with the
/// control plane serving through the control log's own bucket and
/// credentials, a group whose first member misses (404) and whose second
/// maps the viewer's path onto the log's prefix never reaches the log.
#[test]
fn an_origin_groups_second_member_never_reaches_the_control_log() {
    let site = Site::serving_distributions_from("store");
    let stack = &site.stack;
    let entry = "/_keyfront/control/0000000000000001-real-00000000.json";
    stack.put(entry, "application/json", b"an entry's own bytes");
    stack.put("/public.txt", "text/plain", b"the bucket's public page");
    let body = format!(
        "<DistributionConfig {NS}><CallerReference>group</CallerReference><Comment/><Enabled>true</Enabled>\
         <Origins><Quantity>2</Quantity><Items>\
         <Origin><Id>first</Id><DomainName>{BUCKET}.s3.amazonaws.com</DomainName><OriginPath>/elsewhere</OriginPath></Origin>\
         <Origin><Id>second</Id><DomainName>{BUCKET}.s3.amazonaws.com</DomainName></Origin></Items></Origins>\
         <OriginGroups><Quantity>1</Quantity><Items><OriginGroup><Id>group</Id><FailoverCriteria><StatusCodes><Quantity>2</Quantity><Items><StatusCode>403</StatusCode><StatusCode>404</StatusCode></Items></StatusCodes></FailoverCriteria>\
         <Members><Quantity>2</Quantity><Items><OriginGroupMember><OriginId>first</OriginId></OriginGroupMember><OriginGroupMember><OriginId>second</OriginId></OriginGroupMember></Items></Members></OriginGroup></Items></OriginGroups>\
         <DefaultCacheBehavior><TargetOriginId>group</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy></DefaultCacheBehavior></DistributionConfig>"
    );
    let created = call(site.nodes[1].control, "POST", "/2020-05-31/distribution", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    let node = &site.nodes[1];
    let public = get(node.edge, &domain, "/public.txt");
    assert_eq!(
        public.body, b"the bucket's public page",
        "the group fails over to its second member"
    );
    for path in [entry, "/_keyfront/%63ontrol/0000000000000001-real-00000000.json"] {
        let answer = get(node.edge, &domain, path);
        assert!(
            answer.status == 403 && !answer.text().contains("an entry's own bytes"),
            "GET {path}: {} {}",
            answer.status,
            answer.text()
        );
    }
}

/// A viewer-request function that rewrites a path onto the control log's
/// prefix is refused as a viewer naming it would be: the origin path is
/// found, and guarded, again after every rewrite.
#[test]
fn a_function_never_rewrites_a_path_into_the_control_log() {
    use base64::Engine as _;
    let site = Site::serving_distributions_from("store");
    let entry = "/_keyfront/control/0000000000000001-real-00000000.json";
    site.stack.put(entry, "application/json", b"an entry's own bytes");
    let code = base64::engine::general_purpose::STANDARD.encode(format!(
        "function handler(event) {{ event.request.uri = '{entry}'; return event.request; }}"
    ));
    let control = site.nodes[1].control;
    let body = format!(
        "<CreateFunctionRequest {NS}><Name>into-log</Name><FunctionConfig><Comment/><Runtime>cloudfront-js-2.0</Runtime></FunctionConfig><FunctionCode>{code}</FunctionCode></CreateFunctionRequest>"
    );
    let created = call(control, "POST", "/2020-05-31/function", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let etag = created.header("etag").unwrap().to_owned();
    let published = call(control, "POST", "/2020-05-31/function/into-log/publish", b"", Some(&etag));
    let arn = field(&text(&published), "FunctionARN");
    let body = format!(
        "<DistributionConfig {NS}><CallerReference>rewrite</CallerReference><Comment/><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{BUCKET}.s3.amazonaws.com</DomainName></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy>\
         <FunctionAssociations><Quantity>1</Quantity><Items><FunctionAssociation><FunctionARN>{arn}</FunctionARN><EventType>viewer-request</EventType></FunctionAssociation></Items></FunctionAssociations></DefaultCacheBehavior></DistributionConfig>"
    );
    let created = call(control, "POST", "/2020-05-31/distribution", body.as_bytes(), None);
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    let answer = get(site.nodes[1].edge, &domain, "/anything.txt");
    assert!(
        answer.status == 403 && !answer.text().contains("an entry's own bytes"),
        "{} {}",
        answer.status,
        answer.text()
    );
}
