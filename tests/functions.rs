//! CloudFront Functions through the control-plane API, run by the edge on
//! real requests: a viewer-request function that rewrites a path or
//! answers itself, a viewer-response function whose headers reach hits,
//! misses and 206s alike; hostile functions and associations first, and a
//! function never opening what a signature closes.

mod common;

use base64::Engine as _;
use common::api::{NS, field, key_group, text};
use common::{now, request, wait_until};
use keyfront::auth::PolicySpec;
use keyfront::emulator::{Emulator, EmulatorOptions};
use keyfront::origin::{Origin, put_object};
use keyfront::plain_http::Answer;

fn code_of(answer: &Answer) -> String {
    field(&text(answer), "Code")
}

fn function_body(root: &str, name: &str, runtime: &str, code: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(code);
    format!(
        "<{root} {NS}><Name>{name}</Name><FunctionConfig><Comment>c</Comment><Runtime>{runtime}</Runtime></FunctionConfig><FunctionCode>{encoded}</FunctionCode></{root}>"
    )
}

/// Creates and publishes `name`; its ARN.
fn published(emulator: &Emulator, name: &str, code: &str) -> String {
    let created = emulator
        .call(
            "POST",
            "/2020-05-31/function",
            function_body("CreateFunctionRequest", name, "cloudfront-js-2.0", code).as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    assert_eq!(field(&text(&created), "Stage"), "DEVELOPMENT");
    assert_eq!(field(&text(&created), "Status"), "UNPUBLISHED");
    let etag = created.header("etag").unwrap().to_owned();
    let publish = emulator
        .call("POST", &format!("/2020-05-31/function/{name}/publish"), b"", Some(&etag))
        .unwrap();
    assert_eq!(publish.status, 200, "{}", text(&publish));
    assert_eq!(field(&text(&publish), "Stage"), "LIVE");
    field(&text(&publish), "FunctionARN")
}

fn associations(pairs: &[(&str, &str)]) -> String {
    let items: String = pairs
        .iter()
        .map(|(event, arn)| {
            format!("<FunctionAssociation><FunctionARN>{arn}</FunctionARN><EventType>{event}</EventType></FunctionAssociation>")
        })
        .collect();
    format!(
        "<FunctionAssociations><Quantity>{}</Quantity><Items>{items}</Items></FunctionAssociations>",
        pairs.len()
    )
}

/// A public default behavior with `default_functions`, and a signed
/// `/private/*` one with `private_functions`, over the emulator's bucket.
fn distribution(emulator: &Emulator, reference: &str, group: &str, default_functions: &str, private_functions: &str) -> String {
    format!(
        "<DistributionConfig {NS}><CallerReference>{reference}</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{}.s3.amazonaws.com</DomainName><S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL>{default_functions}</DefaultCacheBehavior>\
         <CacheBehaviors><Quantity>1</Quantity><Items><CacheBehavior><PathPattern>/private/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy>\
         <TrustedKeyGroups><Enabled>true</Enabled><Quantity>1</Quantity><Items><KeyGroup>{group}</KeyGroup></Items></TrustedKeyGroups><MinTTL>0</MinTTL>{private_functions}</CacheBehavior></Items></CacheBehaviors></DistributionConfig>",
        emulator.bucket
    )
}

fn put(emulator: &Emulator, key: &str, body: &[u8]) {
    let origin = Origin::embedded(emulator.s3, &emulator.bucket, &emulator.access_key_id, &emulator.secret_access_key);
    assert_eq!(put_object(&origin, key, &[], body).unwrap(), 200);
}

const REWRITE: &str = "function handler(event) { var r = event.request; if (r.uri.endsWith('/')) { r.uri += 'index.html'; } return r; }";
const STAMP: &str =
    "function handler(event) { var r = event.response; r.headers['x-function'] = { value: 'stamped ' + r.statusCode }; return r; }";
const OPEN: &str = "function handler(event) { return { statusCode: 200, statusDescription: 'OK', body: 'opened by a function' }; }";

#[test]
fn functions_rewrite_answer_and_stamp_what_the_edge_serves() {
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (group, signer) = key_group(&emulator);
    put(&emulator, "/docs/index.html", b"<h1>the docs</h1>");
    put(&emulator, "/video.mp4", &common::patterned(300_000));
    put(&emulator, "/private/report.pdf", b"%PDF private report");
    let rewrite = published(&emulator, "rewrite", REWRITE);
    let stamp = published(&emulator, "stamp", STAMP);
    let open = published(&emulator, "open", OPEN);
    let body = distribution(
        &emulator,
        "functions",
        &group,
        &associations(&[("viewer-request", &rewrite), ("viewer-response", &stamp)]),
        &associations(&[("viewer-request", &open)]),
    );
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    let get = |target: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Host", domain.as_str())];
        all.extend_from_slice(headers);
        request(emulator.edge, "GET", target, &all, b"")
    };

    let docs = get("/docs/", &[]);
    assert_eq!(
        (docs.status, docs.text().as_str()),
        (200, "<h1>the docs</h1>"),
        "rewritten to /docs/index.html"
    );
    assert_eq!(docs.header("x-function"), Some("stamped 200"), "on a miss");
    wait_until("the page is cached", || {
        get("/docs/", &[]).header("x-cache") == Some("Hit from keyfront")
    });
    assert_eq!(get("/docs/", &[]).header("x-function"), Some("stamped 200"), "on a hit");
    let part = get("/video.mp4", &[("Range", "bytes=100-199")]);
    assert_eq!((part.status, part.body.as_slice()), (206, &common::patterned(300_000)[100..200]));
    assert_eq!(part.header("x-function"), Some("stamped 206"), "on a 206");
    let missing = get("/nothing.txt", &[]);
    assert_eq!(
        (missing.status, missing.header("x-function")),
        (404, Some("stamped 404")),
        "on an error"
    );

    // A function answering on a signed behavior never opens it: the
    // signature is checked first, on the URL the viewer sent.
    let unsigned = get("/private/report.pdf", &[]);
    assert_eq!(unsigned.status, 403);
    assert!(!unsigned.text().contains("opened") && !unsigned.text().contains("PDF"));
    let url = signer.sign_url(
        &format!("http://{domain}/private/report.pdf"),
        &PolicySpec::Canned { expires: now() + 600 },
    );
    let signed = get(&url[url.find("/private").unwrap()..], &[]);
    assert_eq!((signed.status, signed.text().as_str()), (200, "opened by a function"));

    // The DEVELOPMENT stage changes nothing served until it is published.
    let described = emulator.call("GET", "/2020-05-31/function/stamp/describe", b"", None).unwrap();
    let etag = described.header("etag").unwrap().to_owned();
    let changed = STAMP.replace("stamped", "restamped");
    let updated = emulator
        .call(
            "PUT",
            "/2020-05-31/function/stamp",
            function_body("UpdateFunctionRequest", "stamp", "cloudfront-js-2.0", &changed).as_bytes(),
            Some(&etag),
        )
        .unwrap();
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let new_etag = updated
        .header("ettag")
        .expect("botocore reads UpdateFunction's ETag from ETtag")
        .to_owned();
    assert_eq!(get("/docs/", &[]).header("x-function"), Some("stamped 200"));
    let code = emulator
        .call("GET", "/2020-05-31/function/stamp?Stage=DEVELOPMENT", b"", None)
        .unwrap();
    assert_eq!(String::from_utf8(code.body).unwrap(), changed);
    let publish = emulator
        .call("POST", "/2020-05-31/function/stamp/publish", b"", Some(&new_etag))
        .unwrap();
    assert_eq!(publish.status, 200, "{}", text(&publish));
    assert_eq!(get("/docs/", &[]).header("x-function"), Some("restamped 200"));

    let in_use = emulator.call("DELETE", "/2020-05-31/function/stamp", b"", Some(&new_etag)).unwrap();
    assert_eq!((in_use.status, code_of(&in_use)), (409, "FunctionInUse".to_owned()));
}

#[test]
fn hostile_functions_fail_closed_and_the_api_refuses_what_cloudfront_refuses() {
    let admin = common::free_address();
    let emulator = Emulator::start(EmulatorOptions {
        admin: Some(admin),
        ..EmulatorOptions::default()
    })
    .unwrap();
    let (group, _) = key_group(&emulator);
    put(&emulator, "/secret.txt", b"bytes a failed function must not release");
    let create = |name: &str, runtime: &str, code: &str| {
        emulator
            .call(
                "POST",
                "/2020-05-31/function",
                function_body("CreateFunctionRequest", name, runtime, code).as_bytes(),
                None,
            )
            .unwrap()
    };
    let oversized = format!("function handler(e) {{ return e.request; }} // {}", "x".repeat(10 * 1024));
    for (name, runtime, code, status, expected) in [
        ("big", "cloudfront-js-2.0", oversized.as_str(), 413, "FunctionSizeLimitExceeded"),
        ("syntax", "cloudfront-js-2.0", "function handler(e) {", 400, "InvalidArgument"),
        ("nohandler", "cloudfront-js-2.0", "var x = 1;", 400, "InvalidArgument"),
        ("runtime", "nodejs18.x", REWRITE, 400, "InvalidArgument"),
        ("bad name!", "cloudfront-js-2.0", REWRITE, 400, "InvalidArgument"),
    ] {
        let refused = create(name, runtime, code);
        assert_eq!((refused.status, code_of(&refused)), (status, expected.to_owned()), "{name}");
    }
    assert_eq!(create("twice", "cloudfront-js-1.0", REWRITE).status, 201);
    assert_eq!(code_of(&create("twice", "cloudfront-js-1.0", REWRITE)), "FunctionAlreadyExists");
    let missing = emulator.call("GET", "/2020-05-31/function/nobody/describe", b"", None).unwrap();
    assert_eq!((missing.status, code_of(&missing)), (404, "NoSuchFunctionExists".to_owned()));
    let stale = emulator
        .call("POST", "/2020-05-31/function/twice/publish", b"", Some("ESTALE"))
        .unwrap();
    assert_eq!((stale.status, code_of(&stale)), (412, "PreconditionFailed".to_owned()));

    // Associations CloudFront refuses: an unpublished function, an origin event.
    let unpublished = "arn:aws:cloudfront::123456789012:function/twice";
    let looped = published(&emulator, "loop", "function handler(e) { while (true) {} }");
    for functions in [
        associations(&[("viewer-request", unpublished)]),
        associations(&[("origin-request", &looped)]),
    ] {
        let body = distribution(&emulator, "refused", &group, &functions, "");
        let refused = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
        assert_eq!(
            (refused.status, code_of(&refused)),
            (400, "InvalidFunctionAssociation".to_owned()),
            "{functions}"
        );
    }

    // At request time: a loop, a throw, `require('fs')`, a header that would
    // split the request: each a 503 with none of the object's bytes.
    let thrown = published(&emulator, "throw", "function handler(e) { throw new Error('boom'); }");
    let fs = published(&emulator, "fs", "function handler(e) { require('fs'); return e.request; }");
    let split = published(
        &emulator,
        "split",
        "function handler(e) { e.request.headers['x'] = { value: 'a\\r\\nb' }; return e.request; }",
    );
    let response_throw = published(&emulator, "response-throw", "function handler(e) { throw new Error('late'); }");
    for (reference, functions) in [
        ("loop", associations(&[("viewer-request", &looped)])),
        ("throw", associations(&[("viewer-request", &thrown)])),
        ("fs", associations(&[("viewer-request", &fs)])),
        ("split", associations(&[("viewer-request", &split)])),
        ("response-throw", associations(&[("viewer-response", &response_throw)])),
    ] {
        let body = distribution(&emulator, reference, &group, &functions, "");
        let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
        assert_eq!(created.status, 201, "{}", text(&created));
        let domain = field(&text(&created), "DomainName");
        let answer = request(emulator.edge, "GET", "/secret.txt", &[("Host", domain.as_str())], b"");
        assert_eq!(answer.status, 503, "{reference}: {}", answer.text());
        assert!(!answer.text().contains("bytes a failed function"), "{reference}: no object byte");
    }
    // Each failure is counted by function, event and reason.
    let metrics = request(admin, "GET", "/metrics", &[], b"").text();
    for series in [
        r#"keyfront_function_failures_total{event="viewer-request",function="loop",reason="budget"} 1"#,
        r#"keyfront_function_failures_total{event="viewer-request",function="throw",reason="thrown"} 1"#,
        r#"keyfront_function_failures_total{event="viewer-request",function="fs",reason="thrown"} 1"#,
        r#"keyfront_function_failures_total{event="viewer-request",function="split",reason="invalid_output"} 1"#,
        r#"keyfront_function_failures_total{event="viewer-response",function="response-throw",reason="thrown"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }

    // A query a function writes is keyed and forwarded as the viewer's
    // would be: S3's own parameters (`response-content-type`, `versionId`)
    // never reach the bucket, even under a policy that keys every parameter.
    let policy = format!(
        "<CachePolicyConfig {NS}><Comment>c</Comment><Name>all-query</Name><MinTTL>0</MinTTL><DefaultTTL>60</DefaultTTL><MaxTTL>60</MaxTTL>\
         <ParametersInCacheKeyAndForwardedToOrigin><EnableAcceptEncodingGzip>false</EnableAcceptEncodingGzip><EnableAcceptEncodingBrotli>false</EnableAcceptEncodingBrotli>\
         <HeadersConfig><HeaderBehavior>none</HeaderBehavior></HeadersConfig><CookiesConfig><CookieBehavior>none</CookieBehavior></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>all</QueryStringBehavior></QueryStringsConfig></ParametersInCacheKeyAndForwardedToOrigin></CachePolicyConfig>"
    );
    let created = emulator.call("POST", "/2020-05-31/cache-policy", policy.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let policy_id = field(&text(&created), "Id");
    let s3_query = published(
        &emulator,
        "s3-query",
        "function handler(e) { e.request.querystring = { 'response-content-type': { value: 'text/html' }, versionId: { value: 'old' }, lang: { value: 'de' } }; return e.request; }",
    );
    let functions = format!(
        "<CachePolicyId>{policy_id}</CachePolicyId>{}",
        associations(&[("viewer-request", &s3_query)])
    );
    let body = distribution(&emulator, "s3-query", &group, &functions, "");
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    put(&emulator, "/page.txt", b"plain text, never html");
    let answer = request(emulator.edge, "GET", "/page.txt", &[("Host", domain.as_str())], b"");
    assert_eq!((answer.status, answer.text().as_str()), (200, "plain text, never html"));
    assert_ne!(
        answer.header("content-type"),
        Some("text/html"),
        "S3's response-* override never reaches it"
    );

    // TestFunction answers with the function's failure, never a 5xx of its own.
    let event = base64::engine::general_purpose::STANDARD.encode(
        r#"{"version":"1.0","context":{"eventType":"viewer-request"},"viewer":{"ip":"1.2.3.4"},"request":{"method":"GET","uri":"/a/","querystring":{},"headers":{},"cookies":{}}}"#,
    );
    let etag_of = |name: &str| {
        let described = emulator
            .call("GET", &format!("/2020-05-31/function/{name}/describe"), b"", None)
            .unwrap();
        described.header("etag").unwrap().to_owned()
    };
    let test = |name: &str| {
        let body = format!("<TestFunctionRequest {NS}><Stage>DEVELOPMENT</Stage><EventObject>{event}</EventObject></TestFunctionRequest>");
        let answer = emulator
            .call(
                "POST",
                &format!("/2020-05-31/function/{name}/test"),
                body.as_bytes(),
                Some(&etag_of(name)),
            )
            .unwrap();
        assert_eq!(answer.status, 200, "{}", text(&answer));
        text(&answer)
    };
    let looping = test("loop");
    assert!(
        looping.contains("compute budget") && looping.contains("<ComputeUtilization>100</ComputeUtilization>"),
        "{looping}"
    );
    let fs = test("fs");
    assert!(
        fs.contains("Cannot find module") && fs.contains("fs") && !fs.contains("<FunctionOutput>"),
        "{fs}"
    );
    let rewritten = test("twice");
    assert!(
        rewritten.contains("/a/index.html") && rewritten.contains("<FunctionErrorMessage></FunctionErrorMessage>"),
        "{rewritten}"
    );
}
