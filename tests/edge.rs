//! The edge over real sockets: pingora in front of the embedded S3 origin,
//! which checks keyfront's SigV4 signatures independently of aws-sigv4.

mod common;

use std::sync::OnceLock;

use common::{Stack, now, patterned, request};
use keyfront::auth::PolicyTerms;

const BEHAVIORS: &str = r#"
  - path_pattern: /public/*
    origin: store
  - path_pattern: /upload/*
    origin: store
    trusted_key_groups: [main]
    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
  - path_pattern: /down/*
    origin: down
    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
  - path_pattern: /refused/*
    origin: wrong_credentials
    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
  - path_pattern: /silent/*
    origin: silent
    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
  - path_pattern: /cors/*
    origin: store
    trusted_key_groups: [main]
    cors:
      allowed_origins: [https://app.example.com]
      max_age: 5m
"#;

const VIDEO_BYTES: usize = 300_000;

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let stack = Stack::start(BEHAVIORS);
        stack.put("/videos/clip.mp4", "video/mp4", &patterned(VIDEO_BYTES));
        stack.put("/public/readme.txt", "text/plain", b"public text\n");
        stack.put("/docs/a b+c.pdf", "application/pdf", b"%PDF-1.4 odd name\n");
        stack.put("/cors/clip.mp4", "video/mp4", &patterned(5_000));
        stack
    })
}

fn assert_cloudfront_error(response: &common::Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/xml"));
    assert!(response.text().contains(&format!("<Code>{code}</Code>")), "{}", response.text());
}

#[test]
fn signed_get_returns_the_origin_bytes_exactly() {
    let response = stack().get(&stack().signed("/videos/clip.mp4"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, patterned(VIDEO_BYTES));
    assert_eq!(response.header("content-type"), Some("video/mp4"));
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert!(response.header("etag").is_some());
    assert!(
        response
            .headers
            .iter()
            .all(|(name, _)| !name.to_ascii_lowercase().starts_with("x-amz-")),
        "{:?}",
        response.headers
    );
}

#[test]
fn head_with_the_same_url_gives_the_get_headers_and_no_body() {
    let target = stack().signed("/videos/clip.mp4");
    let get = stack().get(&target);
    let head = request(stack().edge, "HEAD", &target, &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in ["content-length", "content-type", "etag", "last-modified", "accept-ranges"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(head.header("content-length"), Some(VIDEO_BYTES.to_string().as_str()));
}

#[test]
fn range_requests_get_206_with_the_right_bytes() {
    let target = stack().signed("/videos/clip.mp4");
    let response = request(stack().edge, "GET", &target, &[("Range", "bytes=1000-1999")], b"");
    assert_eq!(response.status, 206);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes 1000-1999/{VIDEO_BYTES}").as_str())
    );
    assert_eq!(response.body, patterned(VIDEO_BYTES)[1000..2000]);
    let tail = request(stack().edge, "GET", &target, &[("Range", "bytes=-10")], b"");
    assert_eq!(tail.body, patterned(VIDEO_BYTES)[VIDEO_BYTES - 10..]);
}

#[test]
fn signatures_are_checked_before_anything_else() {
    assert_cloudfront_error(&stack().get("/videos/clip.mp4"), 403, "MissingKey");
    assert_cloudfront_error(&stack().get("/videos/nothing-here.mp4"), 403, "MissingKey");
    let expired = stack().signed_until("/videos/clip.mp4", now() - 1);
    assert_cloudfront_error(&stack().get(&expired), 403, "AccessDenied");
    let tampered = stack().signed("/videos/clip.mp4").replace("clip", "clap");
    assert_cloudfront_error(&stack().get(&tampered), 403, "AccessDenied");
    let unknown_key = stack()
        .signed("/videos/clip.mp4")
        .replace("Key-Pair-Id=KTESTKEY", "Key-Pair-Id=KOTHER");
    assert_cloudfront_error(&stack().get(&unknown_key), 403, "InvalidKey");
}

#[test]
fn ip_conditions_use_the_viewer_address() {
    let elsewhere = PolicyTerms {
        date_less_than: now() + 600,
        ip_address: Some("10.0.0.0/8".into()),
        ..PolicyTerms::default()
    };
    assert_cloudfront_error(
        &stack().get(&stack().signed_custom("/videos/clip.mp4", elsewhere.clone())),
        403,
        "AccessDenied",
    );
    let loopback = PolicyTerms {
        ip_address: Some("127.0.0.0/8".into()),
        ..elsewhere
    };
    assert_eq!(stack().get(&stack().signed_custom("/videos/clip.mp4", loopback)).status, 200);
}

#[test]
fn signed_cookies_open_a_folder() {
    let base = stack().base();
    let terms = PolicyTerms {
        resource: Some(format!("{base}/videos/*")),
        date_less_than: now() + 600,
        ..PolicyTerms::default()
    };
    let url = format!("{base}/videos/clip.mp4");
    let policy = keyfront::auth::PolicySpec::for_url(&url, &terms);
    let cookie = stack()
        .signer
        .sign_cookies(&url, &policy)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ok = request(stack().edge, "GET", "/videos/clip.mp4?t=5", &[("Cookie", &cookie)], b"");
    assert_eq!(ok.status, 200);
    let outside = request(stack().edge, "GET", "/docs/a%20b+c.pdf", &[("Cookie", &cookie)], b"");
    assert_cloudfront_error(&outside, 403, "AccessDenied");
}

#[test]
fn public_behaviors_need_no_signature_and_signing_parameters_never_reach_the_origin() {
    let response = stack().get("/public/readme.txt");
    assert_eq!((response.status, response.text().as_str()), (200, "public text\n"));
    // Stray signing parameters and the viewer's own query are not sent to S3.
    let stray = stack().get("/public/readme.txt?Signature=x&Key-Pair-Id=y&lang=en");
    assert_eq!(stray.status, 200);
}

#[test]
fn keys_with_spaces_and_plus_signs_reach_the_right_object() {
    let response = stack().get(&stack().signed("/docs/a%20b+c.pdf"));
    assert_eq!((response.status, response.text().as_str()), (200, "%PDF-1.4 odd name\n"));
}

#[test]
fn put_passes_only_where_the_behavior_allows_it() {
    let refused = request(stack().edge, "PUT", &stack().signed("/videos/new.bin"), &[], b"data");
    assert_cloudfront_error(&refused, 403, "MethodNotAllowed");
    let unsigned = request(stack().edge, "PUT", "/upload/new.bin", &[], b"data");
    assert_cloudfront_error(&unsigned, 403, "MissingKey");
    let body = patterned(70_000);
    let stored = request(
        stack().edge,
        "PUT",
        &stack().signed("/upload/new.bin"),
        &[("Content-Type", "application/x-test")],
        &body,
    );
    assert_eq!(stored.status, 200, "{}", stored.text());
    let back = stack().get(&stack().signed("/upload/new.bin"));
    assert_eq!(back.body, body);
    assert_eq!(back.header("content-type"), Some("application/x-test"));
}

/// S3 calls that live in the query string (`?uploads`, `?partNumber=`,
/// `?uploadId=`) reach the origin with it: a multipart upload through the edge.
#[test]
fn proxied_methods_keep_the_viewer_query() {
    let edge = stack().edge;
    let created = request(edge, "POST", &stack().signed("/upload/multi.bin?uploads"), &[], b"");
    assert_eq!(created.status, 200, "{}", created.text());
    let text = created.text();
    let upload_id = text
        .split_once("<UploadId>")
        .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no UploadId in {text}"));
    let body = patterned(123_457);
    let part = request(
        edge,
        "PUT",
        &stack().signed(&format!("/upload/multi.bin?partNumber=1&uploadId={upload_id}")),
        &[],
        &body,
    );
    assert_eq!(part.status, 200, "{}", part.text());
    let etag = part.header("etag").expect("a part's ETag").to_owned();
    let complete = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>");
    let done = request(
        edge,
        "POST",
        &stack().signed(&format!("/upload/multi.bin?uploadId={upload_id}")),
        &[],
        complete.as_bytes(),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let back = stack().get(&stack().signed("/upload/multi.bin"));
    assert!(
        back.status == 200 && back.body == body,
        "{}: the uploaded object differs",
        back.status
    );
}

#[test]
fn origin_errors() {
    let missing = stack().get(&stack().signed("/videos/missing.mp4"));
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_cloudfront_error(&stack().get("/down/anything"), 502, "BadGateway");
    assert_cloudfront_error(&stack().get("/refused/anything"), 502, "BadGateway");
    let started = std::time::Instant::now();
    assert_cloudfront_error(&stack().get("/silent/anything"), 504, "GatewayTimeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the first-byte timeout is 500 ms"
    );
    assert_cloudfront_error(&stack().get(&stack().signed("/")), 404, "NoSuchKey");
}

#[test]
fn cors_preflights_need_no_signature_and_allowed_origins_can_read_ranges() {
    let app = ("Origin", "https://app.example.com");
    let preflight = request(
        stack().edge,
        "OPTIONS",
        "/cors/clip.mp4",
        &[
            app,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, HEAD"));
    assert_eq!(preflight.header("access-control-max-age"), Some("300"));
    let foreign = request(
        stack().edge,
        "OPTIONS",
        "/cors/clip.mp4",
        &[("Origin", "https://evil.example.com"), ("Access-Control-Request-Method", "GET")],
        b"",
    );
    assert_cloudfront_error(&foreign, 403, "CORSRequestRefused");

    let ranged = request(
        stack().edge,
        "GET",
        &stack().signed("/cors/clip.mp4"),
        &[app, ("Range", "bytes=0-99")],
        b"",
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(ranged.header("access-control-expose-headers").unwrap().contains("Content-Range"));
    assert_eq!(ranged.header("vary"), Some("Origin"));
    let refused = request(stack().edge, "GET", "/cors/clip.mp4", &[app], b"");
    assert_cloudfront_error(&refused, 403, "MissingKey");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example.com"),
        "players can read why"
    );
    let other = request(
        stack().edge,
        "GET",
        &stack().signed("/cors/clip.mp4"),
        &[("Origin", "https://evil.example.com")],
        b"",
    );
    assert_eq!((other.status, other.header("access-control-allow-origin")), (200, None));
    let elsewhere = request(
        stack().edge,
        "OPTIONS",
        &stack().signed("/videos/clip.mp4"),
        &[app, ("Access-Control-Request-Method", "GET")],
        b"",
    );
    assert_cloudfront_error(&elsewhere, 403, "MethodNotAllowed");
}

/// A behavior naming a key group that holds no key is still a signed
/// behavior: nothing verifies, nothing is served unsigned (an empty group,
/// in a file or adopted from the fleet, used to make it public).
#[test]
fn a_behavior_whose_key_groups_are_empty_serves_nothing() {
    let stack = Stack::start("");
    stack.put("/empty/secret.txt", "text/plain", b"nobody");
    stack.rewrite_config(|config| {
        config.replacen("key_groups:\n", "key_groups:\n  nobody: []\n", 1).replacen(
            "behaviors:\n",
            "behaviors:\n  - path_pattern: /empty/*\n    origin: store\n    trusted_key_groups: [nobody]\n",
            1,
        )
    });
    let unsigned = stack.get("/empty/secret.txt");
    assert_cloudfront_error(&unsigned, 403, "MissingKey");
    let signed = stack.get(&stack.signed("/empty/secret.txt"));
    assert_cloudfront_error(&signed, 403, "InvalidKey");
    assert!(!signed.text().contains("nobody") && !unsigned.text().contains("nobody"));
}

/// Reads from `stream` until `done` holds for what arrived, or 5 s pass.
fn read_until(stream: &mut std::net::TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use std::io::Read;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 8192];
    while !done(&seen) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
        }
    }
    seen
}

/// A kept-alive connection serves request after request; a viewer that
/// asks to close (`Connection: close`, or HTTP/1.0 without keep-alive) has
/// its connection closed after the answer, not held for the idle timeout.
#[test]
fn connections_are_kept_or_closed_as_the_viewer_asks() {
    use std::io::Write;
    let edge = stack().edge;
    let ends_with_body = |seen: &[u8]| seen.ends_with(b"public text\n");
    let mut kept = std::net::TcpStream::connect(edge).unwrap();
    for round in 0..3 {
        write!(kept, "GET /public/readme.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let answer = read_until(&mut kept, ends_with_body);
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "round {round}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(ends_with_body(&answer), "round {round}");
    }
    for request in [
        "GET /public/readme.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /public/readme.txt HTTP/1.0\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(edge).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let started = std::time::Instant::now();
        let answer = read_until(&mut stream, |_| false);
        assert!(ends_with_body(&answer), "{request:?}: {}", String::from_utf8_lossy(&answer));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{request:?}: closed at once, not held"
        );
    }
}

/// A signed upload that expects `100 Continue` gets it as soon as it is
/// authenticated (no client-side wait before the body), then its answer;
/// an unsigned one gets its 403 and never a 100.
#[test]
fn uploads_that_expect_100_continue_get_it_once_authenticated() {
    use std::io::Write;
    let edge = stack().edge;
    let body = patterned(5_000);
    let target = stack().signed("/upload/continued.bin");
    let mut stream = std::net::TcpStream::connect(edge).unwrap();
    write!(
        stream,
        "PUT {target} HTTP/1.1\r\nHost: {edge}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let interim = read_until(&mut stream, |seen| seen.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    stream.write_all(&body).unwrap();
    let answer = read_until(&mut stream, |seen| seen.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(stack().get(&stack().signed("/upload/continued.bin")).body, body);

    let mut refused = std::net::TcpStream::connect(edge).unwrap();
    write!(
        refused,
        "PUT /upload/unsigned.bin HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
    )
    .unwrap();
    let answer = read_until(&mut refused, |seen| seen.ends_with(b"</Error>"));
    assert!(answer.starts_with(b"HTTP/1.1 403"), "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("<Code>MissingKey</Code>"));
    refused.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    let mut more = [0u8; 64];
    assert_eq!(
        std::io::Read::read(&mut refused, &mut more).ok(),
        Some(0),
        "the connection is closed, not drained into the next request"
    );
}

/// Passthrough answers as misses do when the origin fails: 502 when it is
/// down or refuses keyfront's credentials (never the origin's own body),
/// 504 at the first-byte timeout. A 16 MiB upload streams through whole, and
/// a DELETE removes what it names.
#[test]
fn passthrough_streams_uploads_and_answers_origin_failures() {
    for (method, path) in [
        ("PUT", "/down/new.bin"),
        ("POST", "/down/new.bin?uploads"),
        ("DELETE", "/refused/x"),
        ("PUT", "/refused/x"),
    ] {
        let answer = request(stack().edge, method, path, &[], b"payload");
        assert_cloudfront_error(&answer, 502, "BadGateway");
        assert!(
            !answer.text().contains("SignatureDoesNotMatch"),
            "{method} {path}: {}",
            answer.text()
        );
    }
    let started = std::time::Instant::now();
    assert_cloudfront_error(&request(stack().edge, "PUT", "/silent/x", &[], b"payload"), 504, "GatewayTimeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the first-byte timeout is 500 ms"
    );

    let big = patterned(16 << 20);
    let target = stack().signed("/upload/big.bin");
    let stored = request(stack().edge, "PUT", &target, &[("Content-Type", "application/octet-stream")], &big);
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert!(stack().get(&target).body == big, "the upload arrived whole");
    let origin_path = format!("/{}/upload/big.bin", common::BUCKET);
    let at_origin = || common::store_request(&stack().origin, stack().store, "HEAD", &origin_path, &[], b"").status;
    assert_eq!(at_origin(), 200, "the upload is at the origin");
    let deleted = request(stack().edge, "DELETE", &target, &[], b"");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(at_origin(), 404, "the DELETE reached the origin");
}

/// Hostile uploads: S3 headers a viewer adds to make keyfront's credentials
/// act for it (copy another object, set an ACL, sign as itself) never
/// reach the origin, and a path that spells its way out of the upload
/// behavior lands under the behavior its canonical path names (which
/// takes no PUT). The objects served afterwards prove it, byte for byte.
#[test]
fn uploads_cannot_borrow_keyfronts_credentials_or_leave_their_behavior() {
    let target = stack().signed("/upload/copied.bin");
    let hostile = [
        ("x-amz-copy-source", "/media/public/readme.txt"),
        ("x-amz-acl", "public-read-write"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=viewer/20260101/us-east-1/s3/aws4_request",
        ),
    ];
    let stored = request(stack().edge, "PUT", &target, &hostile, b"mine");
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(
        stack().get(&target).body,
        b"mine",
        "the viewer's own bytes, not a copy of another object"
    );

    // Signed as sent, so the signature is no obstacle: only the canonical
    // path's behavior (public, GET and HEAD only) or a refusal stands.
    for escape in [
        "/upload/%2e%2e/public/readme.txt",
        "/upload/../public/readme.txt",
        "/upload/..%2Fpublic/readme.txt",
    ] {
        for target in [escape.to_owned(), stack().signed(escape)] {
            let answer = request(stack().edge, "PUT", &target, &[], b"overwritten");
            assert!(matches!(answer.status, 400 | 403), "{target}: {} {}", answer.status, answer.text());
        }
    }
    assert_eq!(
        stack().get("/public/readme.txt").body,
        b"public text\n",
        "the public object is untouched"
    );
}

/// Reads one response from a kept-alive connection: its header block
/// (lower-cased) and its `Content-Length` body.
fn read_kept_alive(reader: &mut std::io::BufReader<std::net::TcpStream>) -> (String, Vec<u8>) {
    use std::io::{BufRead, Read};
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the connection closed before a response: {head}"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

#[test]
fn one_connection_serves_pipelined_requests_in_order_and_closes_after_its_thousandth() {
    use std::io::{Read, Write};
    let stack = stack();
    let mut connection = std::net::TcpStream::connect(stack.edge).unwrap();
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(connection.try_clone().unwrap());
    let ask = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", stack.edge);
    // Three requests in one write: answered in order, none lost or mixed.
    let pipelined = [
        ask(&stack.signed("/videos/clip.mp4")),
        ask("/public/readme.txt"),
        ask("/public/missing.txt"),
    ]
    .concat();
    connection.write_all(pipelined.as_bytes()).unwrap();
    let (head, body) = read_kept_alive(&mut reader);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, patterned(VIDEO_BYTES));
    let (head, body) = read_kept_alive(&mut reader);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"public text\n");
    let (head, _) = read_kept_alive(&mut reader);
    assert!(head.starts_with("http/1.1 404"), "{head}");
    // A request hidden in another's body is body, never a request of its own.
    let hidden = ask(&stack.signed("/videos/clip.mp4"));
    let carrier = format!(
        "GET /public/readme.txt HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{hidden}",
        stack.edge,
        hidden.len()
    );
    connection
        .write_all([carrier, ask("/public/missing.txt")].concat().as_bytes())
        .unwrap();
    let (head, body) = read_kept_alive(&mut reader);
    assert!(head.starts_with("http/1.1 200") && body == b"public text\n", "{head}");
    // The body is not read for a GET, so the connection is not reused.
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the hidden request is not answered: {}",
        String::from_utf8_lossy(&rest)
    );

    // Nor in a chunked body that also claims a length (a smuggler's spelling).
    let mut connection = std::net::TcpStream::connect(stack.edge).unwrap();
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let smuggled = format!(
        "GET /public/readme.txt HTTP/1.1\r\nHost: {}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
        stack.edge,
        hidden.len()
    );
    connection.write_all(smuggled.as_bytes()).unwrap();
    let mut answers = Vec::new();
    let _ = connection.read_to_end(&mut answers);
    let answers = String::from_utf8_lossy(&answers);
    assert!(answers.matches("HTTP/1.1 ").count() <= 1, "one answer at most: {answers}");
    assert!(!answers.contains("video/mp4"), "the hidden request is not answered: {answers}");

    let mut connection = std::net::TcpStream::connect(stack.edge).unwrap();
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(connection.try_clone().unwrap());
    // nginx's `keepalive_requests`: the 1,000th answer is the connection's last.
    for served in 1..=1000 {
        connection.write_all(ask("/public/readme.txt").as_bytes()).unwrap();
        let (head, body) = read_kept_alive(&mut reader);
        assert!(
            head.starts_with("http/1.1 200") && body == b"public text\n",
            "request {served}: {head}"
        );
        assert_eq!(head.contains("connection: close"), served == 1000, "request {served}: {head}");
    }
    let _ = connection.write_all(ask("/public/readme.txt").as_bytes());
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the last answer: {}", String::from_utf8_lossy(&rest));
}

/// One request on a kept-alive `connection`; the status and body.
fn exchange(connection: &mut std::net::TcpStream, target: &str) -> (u16, Vec<u8>) {
    use std::io::Write;
    write!(connection, "GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", stack().edge).unwrap();
    let head = read_until(connection, |seen| seen.windows(4).any(|w| w == b"\r\n\r\n"));
    let split = head.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole header") + 4;
    let header = String::from_utf8_lossy(&head[..split]).to_ascii_lowercase();
    let length: usize = header
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = head[split..].to_vec();
    if body.len() < length {
        body.extend(read_until(connection, |seen| body.len() + seen.len() >= length));
    }
    (header[9..12].parse().unwrap(), body)
}

/// What a serving thread keeps of the signatures it proved opens nothing
/// else: on one kept-alive connection (one thread), after a signed URL was
/// proven twice, the same URL with one signature byte changed, its
/// signature on another path, under an unknown key id, or past its expiry
/// each get CloudFront's refusal and no byte of the object, and the signed
/// URL still gets its bytes.
#[test]
fn a_threads_kept_proofs_open_nothing_but_their_own_url() {
    let video = patterned(VIDEO_BYTES);
    let signed = stack().signed("/videos/clip.mp4");
    let mut connection = std::net::TcpStream::connect(stack().edge).unwrap();
    for _ in 0..2 {
        assert!(exchange(&mut connection, &signed) == (200, video.clone()), "the signed URL");
    }
    let at = signed.find("Signature=").unwrap() + "Signature=".len() + 7;
    let mut flipped = signed.clone().into_bytes();
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let hostile = [
        (String::from_utf8(flipped).unwrap(), "AccessDenied"),
        (signed.replace("/videos/clip.mp4", "/videos/clap.mp4"), "AccessDenied"),
        (signed.replace("Key-Pair-Id=KTESTKEY", "Key-Pair-Id=KOTHER"), "InvalidKey"),
        (stack().signed_until("/videos/clip.mp4", now() - 1), "AccessDenied"),
    ];
    for (target, code) in hostile {
        let (status, body) = exchange(&mut connection, &target);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{target}: {text}");
        assert!(text.contains(&format!("<Code>{code}</Code>")), "{target}: {text}");
        assert!(
            !body.windows(64).any(|w| w == &video[1000..1064]),
            "{target}: object bytes in a refusal"
        );
    }
    assert!(
        exchange(&mut connection, &signed) == (200, video),
        "the signed URL, after the refusals"
    );
}

/// What a serving thread keeps of a hot object never outlives an
/// invalidation: on one kept-alive connection, the object is served from
/// the cache after the origin's copy changed, and the new bytes right after
/// `POST /invalidations`.
#[test]
fn an_invalidation_reaches_what_a_thread_keeps() {
    let (old, new) = (b"the first version".to_vec(), b"the second version, longer".to_vec());
    stack().put("/videos/kept-by-thread.txt", "text/plain", &old);
    let signed = stack().signed("/videos/kept-by-thread.txt");
    let mut connection = std::net::TcpStream::connect(stack().edge).unwrap();
    for _ in 0..2 {
        assert_eq!(exchange(&mut connection, &signed), (200, old.clone()));
    }
    stack().put("/videos/kept-by-thread.txt", "text/plain", &new);
    assert_eq!(exchange(&mut connection, &signed), (200, old), "cached, and fresh");
    let invalidated = request(
        stack().admin,
        "POST",
        "/invalidations",
        &[("Authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
        br#"{"paths": ["/videos/kept-by-thread.txt"]}"#,
    );
    assert_eq!(invalidated.status, 200, "{}", invalidated.text());
    assert_eq!(exchange(&mut connection, &signed), (200, new));
}
