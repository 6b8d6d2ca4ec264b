//! Custom origins (`CustomOriginConfig`) made through the control-plane
//! API and served by the emulator's edge from a real HTTP application on
//! loopback: what reaches the application (never a signature made with the
//! node's S3 credentials, never the viewer's credentials, always the
//! origin's custom headers), what is cached, and where the node refuses to
//! go.

mod common;

use common::api::{NS, field, key_group, text};
use std::net::SocketAddr;

use common::app::App;
use common::{now, request, wait_until};
use keyfront::auth::PolicySpec;
use keyfront::emulator::{Emulator, EmulatorOptions};
use keyfront::origin::{Origin, put_object};

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

    // The application's own error answers reach the viewer as it sent
    // them, kept for the error TTL like other origin errors; a 403 is its
    // refusal of the viewer, not of keyfront; a body too long for an error
    // page is not replayed.
    for _ in 0..2 {
        let missing = get("/missing.json", &[]);
        assert_eq!(
            (missing.status, missing.header("content-type"), missing.text().as_str()),
            (404, Some("application/json"), "{\"error\":\"no such thing\"}")
        );
    }
    let forbidden = get("/forbidden", &[]);
    assert_eq!((forbidden.status, forbidden.text().as_str()), (403, "forbidden by the application"));
    let huge = get("/huge-error", &[]);
    assert_eq!(huge.status, 500);
    assert!(huge.body.len() < 1024 && !huge.text().contains("eeee"), "{}", huge.text());
    let head = request(emulator.edge, "HEAD", "/missing.json", &[("Host", domain.as_str())], b"");
    assert_eq!((head.status, head.header("content-length")), (404, Some("25")));
    assert!(head.body.is_empty());

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

/// A distribution whose default behavior targets an origin group of
/// `first` then the emulator's bucket, failing over on `statuses`.
fn grouped(emulator: &Emulator, reference: &str, first: SocketAddr, statuses: &[u16]) -> String {
    let codes: String = statuses.iter().map(|status| format!("<StatusCode>{status}</StatusCode>")).collect();
    format!(
        "<DistributionConfig {NS}><CallerReference>{reference}</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
         <Origins><Quantity>2</Quantity><Items>\
         <Origin><Id>app</Id><DomainName>{}</DomainName><OriginPath>/site</OriginPath><CustomOriginConfig><HTTPPort>{}</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>http-only</OriginProtocolPolicy></CustomOriginConfig></Origin>\
         <Origin><Id>bucket</Id><DomainName>{}.s3.amazonaws.com</DomainName><S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig></Origin>\
         </Items></Origins>\
         <OriginGroups><Quantity>1</Quantity><Items><OriginGroup><Id>group</Id><FailoverCriteria><StatusCodes><Quantity>{}</Quantity><Items>{codes}</Items></StatusCodes></FailoverCriteria>\
         <Members><Quantity>2</Quantity><Items><OriginGroupMember><OriginId>app</OriginId></OriginGroupMember><OriginGroupMember><OriginId>bucket</OriginId></OriginGroupMember></Items></Members></OriginGroup></Items></OriginGroups>\
         <DefaultCacheBehavior><TargetOriginId>group</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL></DefaultCacheBehavior></DistributionConfig>",
        first.ip(),
        first.port(),
        emulator.bucket,
        statuses.len()
    )
}

#[test]
fn an_origin_group_fails_over_to_its_second_origin_as_its_criteria_say() {
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let bucket = Origin::embedded(emulator.s3, &emulator.bucket, &emulator.access_key_id, &emulator.secret_access_key);
    assert_eq!(put_object(&bucket, "/hello.txt", &[], b"hello from the bucket").unwrap(), 200);
    let get = |domain: &str, target: &str| request(emulator.edge, "GET", target, &[("Host", domain)], b"");

    let on_404 = create(&emulator, &grouped(&emulator, "on-404", app.address, &[404]));
    assert_eq!(
        get(&on_404, "/page.html").text(),
        "<h1>a page of the application</h1>",
        "the first origin answers"
    );
    let hello = get(&on_404, "/hello.txt");
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello from the bucket"));
    assert!(
        app.heads().iter().any(|head| head.starts_with("GET /site/hello.txt ")),
        "the first origin was asked first"
    );

    let on_500 = create(&emulator, &grouped(&emulator, "on-500", app.address, &[500, 503]));
    assert_eq!(get(&on_500, "/hello.txt").status, 404, "a 404 is not among its criteria");

    let dead = create(&emulator, &grouped(&emulator, "dead", common::free_address(), &[503]));
    let hello = get(&dead, "/hello.txt");
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "hello from the bucket"),
        "a first origin not reached"
    );

    // Groups CloudFront refuses.
    let body = grouped(&emulator, "bad", app.address, &[404]);
    for (what, broken, code) in [
        (
            "one member",
            body.replace(
                "<Quantity>2</Quantity><Items><OriginGroupMember><OriginId>app</OriginId></OriginGroupMember>",
                "<Quantity>1</Quantity><Items>",
            ),
            "InvalidArgument",
        ),
        (
            "an unknown member",
            body.replace("<OriginId>bucket</OriginId>", "<OriginId>nowhere</OriginId>"),
            "NoSuchOrigin",
        ),
        (
            "a status CloudFront does not fail over on",
            body.replace("<StatusCode>404</StatusCode>", "<StatusCode>200</StatusCode>"),
            "InvalidArgument",
        ),
        (
            "an origin's id",
            body.replace("<Id>group</Id>", "<Id>app</Id>")
                .replace("<TargetOriginId>group", "<TargetOriginId>app"),
            "InvalidArgument",
        ),
    ] {
        let refused = emulator.call("POST", "/2020-05-31/distribution", broken.as_bytes(), None).unwrap();
        assert_eq!(field(&text(&refused), "Code"), code, "{what}: {}", text(&refused));
    }
}

/// Makes a cache policy keying the header `Accept-Language`, the cookie
/// `session` and the parameter `v`, and an origin request policy sending
/// `X-Tenant`, the cookie `theme` and every parameter besides; returns their ids.
fn keyed_and_sent_policies(emulator: &Emulator) -> (String, String) {
    let names = |item: &str, names: &[&str]| {
        let items: String = names.iter().map(|name| format!("<{item}>{name}</{item}>")).collect();
        format!("<Quantity>{}</Quantity><Items>{items}</Items>", names.len())
    };
    let cache = format!(
        "<CachePolicyConfig {NS}><Comment>c</Comment><Name>by-language</Name><MinTTL>0</MinTTL><DefaultTTL>3600</DefaultTTL><MaxTTL>3600</MaxTTL>\
         <ParametersInCacheKeyAndForwardedToOrigin><EnableAcceptEncodingGzip>false</EnableAcceptEncodingGzip>\
         <HeadersConfig><HeaderBehavior>whitelist</HeaderBehavior><Headers>{}</Headers></HeadersConfig>\
         <CookiesConfig><CookieBehavior>whitelist</CookieBehavior><Cookies>{}</Cookies></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>whitelist</QueryStringBehavior><QueryStrings>{}</QueryStrings></QueryStringsConfig>\
         </ParametersInCacheKeyAndForwardedToOrigin></CachePolicyConfig>",
        names("Name", &["Accept-Language"]),
        names("Name", &["session"]),
        names("Name", &["v"]),
    );
    let origin_request = format!(
        "<OriginRequestPolicyConfig {NS}><Comment>c</Comment><Name>tenant</Name>\
         <HeadersConfig><HeaderBehavior>whitelist</HeaderBehavior><Headers>{}</Headers></HeadersConfig>\
         <CookiesConfig><CookieBehavior>whitelist</CookieBehavior><Cookies>{}</Cookies></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>all</QueryStringBehavior></QueryStringsConfig></OriginRequestPolicyConfig>",
        names("Name", &["X-Tenant"]),
        names("Name", &["theme"]),
    );
    let make = |path: &str, body: &str| {
        let created = emulator.call("POST", path, body.as_bytes(), None).unwrap();
        assert_eq!(created.status, 201, "{}", text(&created));
        field(&text(&created), "Id")
    };
    (
        make("/2020-05-31/cache-policy", &cache),
        make("/2020-05-31/origin-request-policy", &origin_request),
    )
}

/// A cache policy's headers and cookies are the cache key as its query
/// strings are, and go to the origin; an origin request policy's go too but
/// are not keyed (one viewer's unkeyed values are what a shared copy was
/// made with, as on CloudFront); nothing else of the viewer's does, a
/// signature's cookies never; an invalidation of the path removes every
/// variant.
#[test]
fn a_policys_headers_and_cookies_key_the_cache_and_reach_the_origin() {
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, _) = key_group(&emulator);
    let (cache_policy, origin_request_policy) = keyed_and_sent_policies(&emulator);
    let config = distribution("variants", "127.0.0.1", app.address.port(), &group).replacen(
        "<MinTTL>0</MinTTL></DefaultCacheBehavior>",
        &format!(
            "<AllowedMethods><Quantity>7</Quantity><Items><Method>GET</Method><Method>HEAD</Method><Method>OPTIONS</Method><Method>PUT</Method><Method>POST</Method><Method>PATCH</Method><Method>DELETE</Method></Items></AllowedMethods>\
             <CachePolicyId>{cache_policy}</CachePolicyId><OriginRequestPolicyId>{origin_request_policy}</OriginRequestPolicyId></DefaultCacheBehavior>"
        ),
        1,
    );
    let domain = create(&emulator, &config);
    let get = |target: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Host", domain.as_str())];
        all.extend_from_slice(headers);
        let answer = request(emulator.edge, "GET", target, &all, b"");
        assert_eq!(answer.status, 200, "{target}: {}", answer.text());
        answer
    };
    let french = [
        ("Accept-Language", "fr"),
        ("X-Tenant", "t1"),
        ("Authorization", "Bearer viewer-token"),
        (
            "Cookie",
            "session=s1; theme=dark; tracking=x; CloudFront-Signature=sig; CloudFront-Key-Pair-Id=K",
        ),
    ];
    let first = get("/echo/a?utm=z&v=1", &french).text();
    assert_eq!(
        first, "/site/echo/a?utm=z&v=1 lang=fr tenant=t1 cookie=session=s1; theme=dark authorization=- n=1",
        "the keyed and the sent values, in one spelling; nothing else"
    );
    wait_until("the French copy is kept", || {
        get("/echo/a?v=1&utm=z", &french).header("x-cache") == Some("Hit from keyfront")
    });
    let hit = |headers: &[(&str, &str)], target: &str| {
        let answer = get(target, headers);
        (answer.header("x-cache") == Some("Hit from keyfront"), answer.text())
    };
    // Unkeyed values, sent or not, change nothing: the copy is shared.
    let shared = [("Accept-Language", "fr"), ("X-Tenant", "t2"), ("Cookie", "theme=light; session=s1")];
    assert_eq!(hit(&shared, "/echo/a?v=1&utm=other"), (true, first.clone()));
    // Each keyed value is an object of its own.
    let english = hit(&[("Accept-Language", "en"), ("Cookie", "session=s1")], "/echo/a?v=1");
    assert!(
        !english.0 && english.1.contains("lang=en") && english.1.ends_with("n=2"),
        "{english:?}"
    );
    let other_session = hit(&[("Accept-Language", "fr"), ("Cookie", "session=s2")], "/echo/a?v=1");
    assert!(
        !other_session.0 && other_session.1.contains("cookie=session=s2"),
        "{other_session:?}"
    );
    let no_language = hit(&[("Cookie", "session=s1")], "/echo/a?v=1");
    assert!(!no_language.0 && no_language.1.contains("lang=-"), "{no_language:?}");
    let other_version = hit(&french, "/echo/a?v=2");
    assert!(!other_version.0, "{other_version:?}");
    // A value spelling another variant's separators is its own object (a
    // raw line break never arrives: the request is refused before).
    let forged = hit(&[("Accept-Language", "fr%0Asession=s1")], "/echo/a?v=1");
    assert!(!forged.0 && forged.1.contains("lang=fr%0Asession=s1"), "{forged:?}");

    // An invalidation of a path removes every header and cookie variant
    // of it (a query is named in the path, as on CloudFront).
    let english = [("Accept-Language", "en"), ("Cookie", "session=s1")];
    for variant in [&french[..], &english[..]] {
        get("/echo/b", variant);
        wait_until("the variant is kept", || hit(variant, "/echo/b").0);
    }
    let invalidation = format!(
        "<InvalidationBatch {NS}><Paths><Quantity>1</Quantity><Items><Path>/echo/b</Path></Items></Paths><CallerReference>variants</CallerReference></InvalidationBatch>"
    );
    let id = field(&text(&emulator.call("GET", "/2020-05-31/distribution", b"", None).unwrap()), "Id");
    let created = emulator
        .call(
            "POST",
            &format!("/2020-05-31/distribution/{id}/invalidation"),
            invalidation.as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let (french_after, english_after) = (hit(&french, "/echo/b"), hit(&english, "/echo/b"));
    assert!(!french_after.0 && !english_after.0, "{french_after:?} {english_after:?}");
    assert!(hit(&french, "/echo/a?v=1").0, "another path stays");

    // A method passed through to the origin sends what the policies send.
    let mut all = vec![("Host", domain.as_str())];
    all.extend_from_slice(&french);
    let deleted = request(emulator.edge, "DELETE", "/echo/c?v=1", &all, b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let echoed = deleted.text();
    assert!(
        echoed.contains("lang=fr tenant=t1 cookie=session=s1; theme=dark authorization=-"),
        "{echoed}"
    );
}

/// `Managed-AllViewer` sends a custom origin the viewer's `Host` (an
/// application serving several sites by name needs it), on a miss and on a
/// request passed through; `Managed-AllViewerExceptHostHeader` sends the
/// origin's own, as CloudFront's do. (An S3 origin never takes the viewer's:
/// `Origin::takes_viewer_header`.)
#[test]
fn a_custom_origin_gets_the_viewers_host_only_when_a_policy_sends_it() {
    const ALL_VIEWER: &str = "216adef6-5c7f-47e4-b989-5492eafa07d3";
    const ALL_VIEWER_EXCEPT_HOST: &str = "b689b0a8-53d0-40ab-baf2-68738e2966ac";
    const CACHING_DISABLED: &str = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad";
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, _) = key_group(&emulator);
    let origin_host = format!("127.0.0.1:{}", app.address.port());
    let host_asked_for = |path: &str| {
        let heads = app.heads();
        let head = heads
            .iter()
            .rev()
            .find(|head| head.split_whitespace().nth(1) == Some(path))
            .cloned();
        let head = head.unwrap_or_else(|| panic!("the application was asked for {path}: {heads:?}"));
        let host = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("host"));
        host.map(|(_, value)| value.trim().to_owned()).unwrap_or_default()
    };
    for (policy, expected) in [(ALL_VIEWER, None), (ALL_VIEWER_EXCEPT_HOST, Some(origin_host.as_str()))] {
        let config = distribution(policy, "127.0.0.1", app.address.port(), &group).replacen(
            "<MinTTL>0</MinTTL></DefaultCacheBehavior>",
            &format!(
                "<AllowedMethods><Quantity>7</Quantity><Items><Method>GET</Method><Method>HEAD</Method><Method>OPTIONS</Method><Method>PUT</Method><Method>POST</Method><Method>PATCH</Method><Method>DELETE</Method></Items></AllowedMethods>\
                 <CachePolicyId>{CACHING_DISABLED}</CachePolicyId><OriginRequestPolicyId>{policy}</OriginRequestPolicyId></DefaultCacheBehavior>"
            ),
            1,
        );
        let domain = create(&emulator, &config);
        let expected = expected.unwrap_or(&domain);
        let path = format!("/echo/{policy}");
        let got = request(emulator.edge, "GET", &path, &[("Host", &domain)], b"");
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(host_asked_for(&format!("/site{path}")), expected, "a miss under {policy}");
        let deleted = request(emulator.edge, "DELETE", &format!("{path}/gone"), &[("Host", &domain)], b"");
        assert_eq!(deleted.status, 200, "{}", deleted.text());
        assert_eq!(
            host_asked_for(&format!("/site{path}/gone")),
            expected,
            "a passthrough under {policy}"
        );
    }
    // Hostile: the Host a viewer may send on is one the distribution
    // answers to. Another name routes elsewhere, never to this origin.
    let before = app.heads().len();
    let foreign = request(
        emulator.edge,
        "GET",
        &format!("/echo/{ALL_VIEWER}"),
        &[("Host", "evil.example")],
        b"",
    );
    assert!(!foreign.text().contains("/site/echo"), "{}", foreign.text());
    assert_eq!(app.heads().len(), before, "the origin was never asked");
    assert!(!app.heads().iter().any(|head| head.to_ascii_lowercase().contains("evil.example")));
}

/// A distribution's `ErrorCachingMinTTL` is how long an origin's error is
/// remembered: at 0 every request asks the origin again, as a test suite
/// that creates an object after a 404 needs; at 1, the origin is asked
/// again once the second has passed, and its own error body is served
/// again (not the edge's page); without one, the 404 is remembered (the
/// cache's `error_ttl`). A value that is not a number of seconds is
/// refused, naming the field.
#[test]
fn error_caching_min_ttl_is_how_long_an_origin_error_is_remembered() {
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, _) = key_group(&emulator);
    let with_errors = |reference: &str, ttl: &str| {
        distribution(reference, "127.0.0.1", app.address.port(), &group).replacen(
            "</DistributionConfig>",
            &format!(
                "<CustomErrorResponses><Quantity>1</Quantity><Items><CustomErrorResponse><ErrorCode>404</ErrorCode><ErrorCachingMinTTL>{ttl}</ErrorCachingMinTTL></CustomErrorResponse></Items></CustomErrorResponses></DistributionConfig>"
            ),
            1,
        )
    };
    let refused = emulator
        .call("POST", "/2020-05-31/distribution", with_errors("bad", "ten").as_bytes(), None)
        .unwrap();
    assert_eq!(refused.status, 400, "{}", text(&refused));
    assert!(text(&refused).contains("ErrorCachingMinTTL"), "{}", text(&refused));
    let asked = || {
        app.heads()
            .iter()
            .filter(|head| head.starts_with("GET /site/missing.json "))
            .count()
    };
    for (domain, asks) in [
        (create(&emulator, &with_errors("never", "0")), 2),
        (
            create(&emulator, &distribution("default", "127.0.0.1", app.address.port(), &group)),
            1,
        ),
    ] {
        let before = asked();
        for _ in 0..2 {
            let answer = request(emulator.edge, "GET", "/missing.json", &[("Host", &domain)], b"");
            assert_eq!(answer.status, 404, "{}", answer.text());
            assert!(answer.text().contains("no such thing"), "{}", answer.text());
        }
        assert_eq!(asked() - before, asks, "{domain}");
    }
    let domain = create(&emulator, &with_errors("second", "1"));
    let missing = || {
        let answer = request(emulator.edge, "GET", "/missing.json", &[("Host", &domain)], b"");
        assert_eq!((answer.status, answer.text()), (404, "{\"error\":\"no such thing\"}".to_owned()));
    };
    let before = asked();
    missing();
    missing();
    assert_eq!(asked() - before, 1, "remembered within its second");
    // Freshness counts whole seconds: two make sure one has passed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    missing();
    assert_eq!(asked() - before, 2, "asked again, whole, once its second has passed");
}

#[test]
fn a_miss_sends_each_part_as_the_origin_gives_it() {
    use std::io::{BufRead, Read, Write};
    let app = App::start();
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, _) = key_group(&emulator);
    let domain = create(&emulator, &distribution("trickle", "127.0.0.1", app.address.port(), &group));
    let mut connection = std::net::TcpStream::connect(emulator.edge).unwrap();
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let asked = std::time::Instant::now();
    write!(connection, "GET /trickle HTTP/1.1\r\nHost: {domain}\r\n\r\n").unwrap();
    let mut reader = std::io::BufReader::new(connection);
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let mut first = vec![0; 1000];
    reader.read_exact(&mut first).unwrap();
    let first_bytes = asked.elapsed();
    assert!(first == vec![b't'; 1000]);
    // Held until 16 KiB had gathered, they would come with the rest, 1.5 s on.
    assert!(
        first_bytes < std::time::Duration::from_millis(1000),
        "the first bytes came after {first_bytes:?}"
    );
    let mut rest = vec![0; (64 << 10) - 1000];
    reader.read_exact(&mut rest).unwrap();
    assert!(rest.iter().all(|byte| *byte == b't'));
}
