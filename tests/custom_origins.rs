//! Custom origins (`CustomOriginConfig`) made through the control-plane
//! API and served by the emulator's edge from a real HTTP application on
//! loopback: what reaches the application (never a signature made with the
//! node's S3 credentials, never the viewer's credentials, always the
//! origin's custom headers), what is cached, and where the node refuses to
//! go.

mod common;

use common::api::{NS, field, key_group, text};
use common::app::App;
use common::{now, request, wait_until};
use keyfront::auth::PolicySpec;
use keyfront::emulator::{Emulator, EmulatorOptions};

/// A distribution whose origin is the custom origin at `domain:port`
/// (under `/site`, with one custom header): public by default, signed
/// under `/private/*` by `group`.
fn distribution(reference: &str, domain: &str, port: u16, group: &str) -> String {
    format!(
        "<DistributionConfig {NS}><CallerReference>{reference}</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>app</Id><DomainName>{domain}</DomainName><OriginPath>/site</OriginPath>\
         <CustomHeaders><Quantity>1</Quantity><Items><OriginCustomHeader><HeaderName>X-Origin-Verify</HeaderName><HeaderValue>s3cr3t</HeaderValue></OriginCustomHeader></Items></CustomHeaders>\
         <CustomOriginConfig><HTTPPort>{port}</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>http-only</OriginProtocolPolicy><OriginReadTimeout>5</OriginReadTimeout></CustomOriginConfig></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>app</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL></DefaultCacheBehavior>\
         <CacheBehaviors><Quantity>1</Quantity><Items><CacheBehavior><PathPattern>/private/*</PathPattern><TargetOriginId>app</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy>\
         <TrustedKeyGroups><Enabled>true</Enabled><Quantity>1</Quantity><Items><KeyGroup>{group}</KeyGroup></Items></TrustedKeyGroups><MinTTL>0</MinTTL></CacheBehavior></Items></CacheBehaviors></DistributionConfig>"
    )
}

fn create(emulator: &Emulator, body: &str) -> String {
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    field(&text(&created), "DomainName")
}

#[test]
fn a_custom_origin_is_served_unsigned_with_its_headers_and_cached() {
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, signer) = key_group(&emulator);
    let domain = create(&emulator, &distribution("app", "127.0.0.1", app.address.port(), &group));
    let get = |target: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Host", domain.as_str())];
        all.extend_from_slice(headers);
        request(emulator.edge, "GET", target, &all, b"")
    };

    // The viewer's own credentials are for the edge, never the origin's.
    let page = get(
        "/page.html",
        &[("Authorization", "Bearer viewer-token"), ("Cookie", "session=viewer")],
    );
    assert_eq!((page.status, page.text().as_str()), (200, "<h1>a page of the application</h1>"));
    assert_eq!(page.header("content-type"), Some("text/html"));
    let heads = app.heads();
    let asked = heads
        .iter()
        .find(|head| head.starts_with("GET /site/page.html "))
        .expect("the page was asked for");
    let lower = asked.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", app.address.port())),
        "{asked}"
    );
    assert!(lower.contains("\r\nx-origin-verify: s3cr3t\r\n"), "{asked}");
    for never in ["authorization", "x-amz-", "cookie", "viewer-token", "session=viewer"] {
        assert!(!lower.contains(never), "{never} reached the custom origin: {asked}");
    }
    wait_until("the page is cached", || {
        get("/page.html", &[]).header("x-cache") == Some("Hit from keyfront")
    });
    let before = app.heads().len();
    assert_eq!(get("/page.html", &[]).text(), "<h1>a page of the application</h1>");
    assert_eq!(app.heads().len(), before, "a hit asks the application nothing");

    // A chunked answer with no length and no validator is cached whole
    // (it fits a slice), and a HEAD of it gets its length, never 0.
    let first = get("/count.json", &[]);
    assert_eq!((first.status, first.text().as_str()), (200, "{\"count\":1}"));
    wait_until("the count is cached", || {
        get("/count.json", &[]).header("x-cache") == Some("Hit from keyfront")
    });
    assert_eq!(
        get("/count.json", &[]).text(),
        "{\"count\":1}",
        "a hit serves the bytes first fetched"
    );
    let head = request(emulator.edge, "HEAD", "/count.json", &[("Host", domain.as_str())], b"");
    assert_eq!((head.status, head.header("content-length")), (200, Some("11")));
    let cold_head = request(emulator.edge, "HEAD", "/other.json", &[("Host", domain.as_str())], b"");
    assert_eq!(
        (cold_head.status, cold_head.header("content-length")),
        (200, Some("11")),
        "a HEAD first"
    );
    assert!(cold_head.body.is_empty());
    assert_eq!(get("/missing.html", &[]).status, 404, "the application's own 404");

    // Longer than a slice with no length: refused, never held whole.
    let big = get("/big", &[]);
    assert_eq!(big.status, 502);
    assert!(!big.text().contains("xxxx"), "no byte of a refused answer");

    // A signed behavior over a custom origin: nothing reaches the
    // application unsigned, and the signature never does.
    let before = app.heads().len();
    let unsigned = get("/private/report.pdf", &[]);
    assert_eq!(unsigned.status, 403);
    assert!(!unsigned.text().contains("application"));
    assert_eq!(app.heads().len(), before, "an unsigned request asks the origin nothing");
    let url = signer.sign_url(
        &format!("http://{domain}/private/report.pdf"),
        &PolicySpec::Canned { expires: now() + 600 },
    );
    let target = &url[url.find("/private").unwrap()..];
    let signed = get(target, &[]);
    assert_eq!(
        signed.status,
        404,
        "the application has no /site/private/report.pdf: {}",
        signed.text()
    );
    let asked = app
        .heads()
        .into_iter()
        .find(|head| head.contains("/site/private/report.pdf"))
        .unwrap();
    for never in ["Signature", "Key-Pair-Id", "Expires", "Policy"] {
        assert!(!asked.contains(never), "{never} reached the custom origin: {asked}");
    }
}

#[test]
fn a_custom_origin_outside_the_allowed_networks_is_never_connected_to() {
    // A listener the node could reach, on an address the emulator's
    // networks (loopback) do not cover for a name that is not loopback.
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, _) = key_group(&emulator);
    let domain = create(&emulator, &distribution("far", "192.0.2.10", 8080, &group));
    let started = std::time::Instant::now();
    let refused = request(emulator.edge, "GET", "/page.html", &[("Host", domain.as_str())], b"");
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "refused before any connection attempt (192.0.2.10 never answers), took {:?}",
        started.elapsed()
    );

    // Names the API refuses outright, each with CloudFront's code.
    for (domain, port) in [
        ("app.internal/x", 8080),
        ("user@127.0.0.1", 8080),
        ("127.0.0.1:8080", 8080),
        ("127.0.0.1", 22),
    ] {
        let refused = emulator
            .call(
                "POST",
                "/2020-05-31/distribution",
                distribution("bad", domain, port, &group).as_bytes(),
                None,
            )
            .unwrap();
        assert_eq!(
            (refused.status, field(&text(&refused), "Code")),
            (400, "InvalidArgument".to_owned()),
            "{domain} {port}"
        );
    }
}
