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
    assert_eq!(
        metric(&text, r#"keyfront_origin_requests_total{origin="store",outcome="2xx"}"#),
        2.0,
        "one fill per object"
    );
    assert_eq!(metric(&text, r#"keyfront_origin_request_seconds_count{origin="store"}"#), 2.0);
    assert!(text.contains("keyfront_coalesced_waits_total 0"));
    assert!(text.contains("keyfront_disk_errors_total 0"));
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
    let sent = format!("GET {signed} HTTP/1.1\r\nConnection: close\r\nHost: {}\r\n\r\n", stack.edge);
    assert_eq!(entries[0][17], sent.len().to_string(), "cs-bytes: the request as it came");
    assert_eq!(entries[0][11], "-", "the signing parameters are not the viewer's query");
    let signature = signed.split("Signature=").nth(1).unwrap().split('&').next().unwrap();
    for secret in [signature, "Signature=", "Key-Pair-Id", "KTESTKEY", "Expires="] {
        assert!(!log.contains(secret), "{secret} in the access log");
    }

    assert_eq!(request(stack.admin, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(stack.admin, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(request(stack.admin, "GET", "/nothing", &[], b"").status, 404);
}

fn admin_post(stack: &Stack, path: &str) -> common::Response {
    request(
        stack.admin,
        "POST",
        path,
        &[("Authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
        b"",
    )
}

/// Key rotation as an operator does it: add the new key, reload, and later
/// remove the old one; a broken config is refused and serving goes on.
#[test]
fn a_reload_rotates_keys_without_a_restart() {
    let stack = Stack::start("");
    stack.put("/v/a.mp4", "video/mp4", b"movie");
    let old_url = stack.signed("/v/a.mp4");
    let new_key = keyfront::auth::PrivateKey::from_pem(&std::fs::read_to_string(common::fixture("ec_pkcs8.pem")).unwrap()).unwrap();
    let new_signer = keyfront::auth::Signer::new("KNEW", new_key, keyfront::auth::HashAlgorithm::Sha256);
    let policy = keyfront::auth::PolicySpec::Canned {
        expires: common::now() + 600,
    };
    let new_url = new_signer
        .sign_url(&format!("{}/v/a.mp4", stack.base()), &policy)
        .strip_prefix(&stack.base())
        .unwrap()
        .to_owned();
    assert_eq!(stack.get(&old_url).status, 200);
    assert!(stack.get(&new_url).text().contains("<Code>InvalidKey</Code>"));

    let original = std::fs::read_to_string(stack.config_path()).unwrap();
    let new_group = format!(
        "key_groups:\n  next:\n    - id: KNEW\n      public_key: {}\n",
        common::fixture("ec_public.pem").display()
    );
    let both = original
        .replacen("key_groups:\n", &new_group, 1)
        .replace("trusted_key_groups: [main]\n", "trusted_key_groups: [main, next]\n");
    std::fs::write(stack.config_path(), &both).unwrap();
    assert_eq!(request(stack.admin, "POST", "/reload", &[], b"").status, 401, "the token is needed");
    assert_eq!(admin_post(&stack, "/reload").status, 200);
    assert_eq!(stack.get(&new_url).status, 200, "the new key works");
    assert_eq!(stack.get(&old_url).status, 200, "the old key still works");

    std::fs::write(
        stack.config_path(),
        both.replace("trusted_key_groups: [main, next]", "trusted_key_groups: [next]"),
    )
    .unwrap();
    assert_eq!(admin_post(&stack, "/reload").status, 200);
    assert!(
        stack.get(&old_url).text().contains("<Code>InvalidKey</Code>"),
        "the old key is gone"
    );
    assert_eq!(stack.get(&new_url).status, 200);

    std::fs::write(stack.config_path(), "behaviors: [").unwrap();
    let refused = admin_post(&stack, "/reload");
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("keyfront-"), "the error names the file: {}", refused.text());
    assert_eq!(stack.get(&new_url).status, 200, "the previous config keeps serving");
    let metrics = request(stack.admin, "GET", "/metrics", &[], b"").text();
    assert_eq!(metric(&metrics, r#"keyfront_config_reloads_total{outcome="applied"}"#), 2.0);
    assert_eq!(metric(&metrics, r#"keyfront_config_reloads_total{outcome="refused"}"#), 1.0);
}

/// Viewers cannot mint metric series: methods outside CloudFront's set share
/// one `other` label.
#[test]
fn unknown_methods_share_one_metric_label() {
    let stack = Stack::start("");
    for method in ["XYZZY1", "XYZZY2", "BREW", "get"] {
        let response = request(stack.edge, method, "/a.mp4", &[], b"");
        assert_eq!(response.status, 403, "{method}: {}", response.text());
    }
    let text = request(stack.admin, "GET", "/metrics", &[], b"").text();
    assert!(
        !text.contains("XYZZY") && !text.contains("BREW") && !text.contains("method=\"get\""),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"keyfront_requests_total{behavior="*",cache="none",method="other",status="403"}"#
        ),
        4.0,
        "{text}"
    );
}
