//! The admin listener: health, readiness, and Prometheus metrics that move as
//! requests of each kind are served.

mod common;

use common::{Stack, patterned, request};

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_every_kind_of_request() {
    let stack = Stack::start_with(
        "  - path_pattern: /public/*\n    origin: store\n",
        "  disk: {path: disk, size: 64MiB}",
    );
    stack.put("/v/a.mp4", "video/mp4", &patterned(100_000));
    stack.put("/public/b.txt", "text/plain", b"bee");
    let scrape = || request(stack.admin, "GET", "/metrics", &[], b"").text();

    let signed = stack.signed("/v/a.mp4");
    assert_eq!(stack.get(&signed).status, 200);
    assert_eq!(stack.get(&signed).status, 200);
    assert_eq!(stack.get("/v/a.mp4").status, 403);
    assert_eq!(stack.get(&signed.replace("Key-Pair-Id=KTESTKEY", "Key-Pair-Id=KOTHER")).status, 403);
    assert_eq!(stack.get("/public/b.txt").status, 200);
    assert_eq!(request(stack.edge, "PUT", &signed, &[], b"x").status, 403);

    let text = scrape();
    let requests = |labels: &str| metric(&text, &format!("keyfront_requests_total{{{labels}}}"));
    assert_eq!(requests(r#"behavior="*",cache="miss",method="GET",status="200""#), 1.0, "{text}");
    assert_eq!(requests(r#"behavior="*",cache="hit",method="GET",status="200""#), 1.0);
    assert_eq!(requests(r#"behavior="*",cache="none",method="GET",status="403""#), 2.0);
    assert_eq!(requests(r#"behavior="/public/*",cache="miss",method="GET",status="200""#), 1.0);
    assert_eq!(requests(r#"behavior="*",cache="none",method="PUT",status="403""#), 1.0);
    assert_eq!(metric(&text, r#"keyfront_signature_rejections_total{code="MissingKey"}"#), 1.0);
    assert_eq!(metric(&text, r#"keyfront_signature_rejections_total{code="InvalidKey"}"#), 1.0);
    assert!(metric(&text, r#"keyfront_response_body_bytes_total{behavior="*"}"#) >= 200_000.0);
    assert_eq!(metric(&text, "keyfront_origin_requests_total"), 2.0, "one fill per object");
    assert!(metric(&text, "keyfront_origin_body_bytes_total") >= 100_003.0);
    assert!(metric(&text, r#"keyfront_cache_bytes{tier="memory"}"#) >= 100_003.0);
    assert!(text.contains("# TYPE keyfront_requests_total counter"));

    // The access log: CloudFront's header, one line per request, and no
    // signature, policy, key id or cookie anywhere in it.
    let log = stack.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "#Version: 1.0");
    assert!(lines[1].starts_with("#Fields: date time x-edge-location sc-bytes c-ip cs-method"));
    let entries: Vec<Vec<&str>> = lines[2..].iter().map(|l| l.split('\t').collect()).collect();
    assert_eq!(entries.len(), 6, "{log}");
    assert!(entries.iter().all(|fields| fields.len() == 33));
    let results: Vec<(&str, &str, &str)> = entries.iter().map(|f| (f[5], f[8], f[13])).collect();
    assert_eq!(
        results[..3],
        [("GET", "200", "Miss"), ("GET", "200", "Hit"), ("GET", "403", "Error")]
    );
    assert_eq!(entries[0][7], "/v/a.mp4");
    assert_eq!(entries[0][11], "-", "the signing parameters are not the viewer's query");
    let signature = signed.split("Signature=").nth(1).unwrap().split('&').next().unwrap();
    for secret in [signature, "Signature=", "Key-Pair-Id", "KTESTKEY", "Expires="] {
        assert!(!log.contains(secret), "{secret} in the access log");
    }

    assert_eq!(request(stack.admin, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(stack.admin, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(request(stack.admin, "GET", "/nothing", &[], b"").status, 404);
}
