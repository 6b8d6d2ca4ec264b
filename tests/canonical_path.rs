//! Hostile spellings of paths, over real sockets: a public behavior beside
//! signed ones, the embedded store with two buckets (and an account that
//! creates more), and the invariant that no spelling reaches an object its
//! canonical spelling would not.

mod common;

use common::{OTHER_BUCKET, Response, Stack, request, store_request};
use keyfront::auth::PolicyTerms;
use keyfront::origin::{Origin, put_object};
use keyfront::s3store::{self, BucketAccess, PortSharing};
use proptest::prelude::*;

const PRIVATE: &str = "PRIVATE-SECRET-OF-MEDIA";
const OTHER: &str = "SECRET-OF-THE-OTHER-BUCKET";

/// `/priv/*` signed, `/*` public (so the signed default is never reached).
fn two_behaviors() -> Stack {
    let stack = Stack::start(
        r#"  - path_pattern: "/priv/*"
    origin: store
    trusted_key_groups: [main]
  - path_pattern: "/*"
    origin: store"#,
    );
    stack.put("/priv/secret.txt", "text/plain", PRIVATE.as_bytes());
    stack.put("/public/hello.txt", "text/plain", b"public hello");
    stack.put("/public/a%20b%2Bc.txt", "text/plain", b"public spaced plus");
    assert_eq!(put_object(&stack.other, "/secret.txt", &[], OTHER.as_bytes()).unwrap(), 200);
    stack
}

fn assert_refused(response: &Response, status: u16, code: &str, spelling: &str) {
    let body = response.text();
    assert_eq!(response.status, status, "{spelling}: {body}");
    assert!(body.contains(&format!("<Code>{code}</Code>")), "{spelling}: {body}");
    assert!(!body.contains(PRIVATE) && !body.contains(OTHER), "{spelling}: a secret leaked");
}

/// What each spelling gets: refused as having no canonical path (400), sent
/// to the signed behavior it canonically belongs to (403), or served as the
/// public object it canonically names (200 with that body, or 404).
#[test]
fn hostile_spellings_never_reach_a_private_object() {
    let stack = two_behaviors();
    let bad_path = [
        "/public/../priv/secret.txt",
        "/public/%2e%2e/priv/secret.txt",
        "/public/%2E%2E/priv/secret.txt",
        "/public/.%2e/priv/secret.txt",
        "/public/%2e./priv/secret.txt",
        "/public/./../priv/secret.txt",
        "/public/%2e/../priv/secret.txt",
        "/public%2F..%2Fpriv/secret.txt",
        "/public/..%2Fpriv/secret.txt",
        "/public/..%2fpriv/secret.txt",
        "/public/%2e%2e%2fpriv/secret.txt",
        "/public/..%5Cpriv/secret.txt",
        "/public\\..\\priv/secret.txt",
        "//priv/secret.txt",
        "/public//../priv/secret.txt",
        "/priv%2Fsecret.txt",
        "/priv/./secret.txt",
        "/priv/secret.txt%00",
        "/priv/secret.txt%00.jpg",
        "/public/%0a/../priv/secret.txt",
        "/priv/secret.txt%",
        "/priv/secret.txt%2",
        "/priv/secret%zztxt",
        "/%ff/priv/secret.txt",
        "/%c0%ae%c0%ae/priv/secret.txt",
        "/public/../../other/secret.txt",
        "/../other/secret.txt",
    ];
    for spelling in bad_path {
        assert_refused(&stack.get(spelling), 400, "InvalidURI", spelling);
    }
    let signed_behavior = [
        "/%70riv/secret.txt",
        "/%70%72%69%76/secret.txt",
        "/pr%69v/secret.txt",
        "/pr%69%76/secret.txt",
        "/priv/secret%2etxt",
        "/priv/secret%2Etxt",
        "/priv/%73ecret.txt",
        "/priv/secret.txt?x=1",
        "/priv/secret.txt?Expires=1",
        "/priv/secret.txt/",
    ];
    for spelling in signed_behavior {
        let response = stack.get(spelling);
        assert_eq!(response.status, 403, "{spelling}: {}", response.text());
        assert!(!response.text().contains(PRIVATE), "{spelling}");
    }
    // A folder path passes the signature check (its key is in the folder a
    // policy grants, as at CloudFront), then names no object: an origin
    // that ignores a trailing slash never answers it with the object.
    for folder in [stack.signed("/priv/secret.txt/"), "/public/hello.txt/".to_owned()] {
        assert_refused(&stack.get(&folder), 400, "InvalidURI", &folder);
        assert!(!stack.get(&folder).text().contains("public hello"), "{folder}");
    }
    // Other keys, not other spellings of the private one: S3 keys are
    // case-sensitive, and an escaped escape is a literal `%`.
    for spelling in [
        "/PRIV/secret.txt",
        "/public/%252e%252e/priv/secret.txt",
        "/public/..;/priv/secret.txt",
        "/priv.txt",
    ] {
        assert_refused(&stack.get(spelling), 404, "NoSuchKey", spelling);
    }
    let public = [
        ("/public/hello.txt", "public hello"),
        ("/%70ublic/hello.txt", "public hello"),
        ("/public/hello%2etxt", "public hello"),
        ("/public/a%20b+c.txt", "public spaced plus"),
        ("/public/a%20b%2bc.txt", "public spaced plus"),
        ("/public/a%20b%2Bc.txt", "public spaced plus"),
    ];
    for (spelling, body) in public {
        let response = stack.get(spelling);
        assert_eq!((response.status, response.text().as_str()), (200, body), "{spelling}");
    }
    let too_long = format!("/public/{}", "a".repeat(9000));
    assert_refused(&stack.get(&too_long), 414, "UriTooLong", "9 KB path");
    let log = stack.access_log();
    assert!(
        log.contains("\t/public/a%20b%2Bc.txt\t"),
        "cs-uri-stem is the canonical path:\n{log}"
    );
    assert!(
        !log.contains("a%20b+c.txt") && !log.contains("%70ublic"),
        "no raw spelling is logged:\n{log}"
    );
}

/// Requests over CloudFront's 20,480-byte header limit are refused before
/// any header is read.
#[test]
fn oversize_headers_are_refused() {
    let stack = two_behaviors();
    let big = "v".repeat(7000);
    let headers = [("X-A", big.as_str()), ("X-B", big.as_str()), ("X-C", big.as_str())];
    let response = request(stack.edge, "GET", "/public/hello.txt", &headers, b"");
    assert_refused(&response, 413, "RequestHeaderTooLarge", "21 KB of headers");
    let fits = request(stack.edge, "GET", "/public/hello.txt", &headers[..2], b"");
    assert_eq!((fits.status, fits.text().as_str()), (200, "public hello"));
}

/// HEAD is refused by the same rule, with no body.
#[test]
fn head_requests_are_refused_alike() {
    let stack = two_behaviors();
    let response = request(stack.edge, "HEAD", "/public/%2e%2e/priv/secret.txt", &[], b"");
    assert_eq!(response.status, 400);
    assert!(response.body.is_empty());
}

/// A signature grants what its Resource names, judged on canonical paths.
#[test]
fn signatures_grant_canonical_objects_only() {
    let stack = two_behaviors();
    // A canned URL signed over a non-canonical spelling covers that spelling,
    // which names the private object.
    let response = stack.get(&stack.signed("/%70riv/secret.txt"));
    assert_eq!((response.status, response.text().as_str()), (200, PRIVATE));
    // A canned URL signed for the canonical spelling does not stretch to others.
    let signed = stack.signed("/priv/secret.txt");
    let query = signed.split_once('?').unwrap().1;
    let response = stack.get(&format!("/%70riv/secret.txt?{query}"));
    assert_refused(&response, 403, "AccessDenied", "canned, respelled");
    // A wildcard Resource covers every spelling of what it names, and no
    // climb out of it.
    let folder = stack.signed_custom(
        "/priv/*",
        PolicyTerms {
            date_less_than: common::now() + 3600,
            ..PolicyTerms::default()
        },
    );
    let query = folder.split_once('?').unwrap().1;
    let response = stack.get(&format!("/pr%69v/secret%2Etxt?{query}"));
    assert_eq!((response.status, response.text().as_str()), (200, PRIVATE));
    for climb in [
        "/priv/../other/secret.txt",
        "/priv/%2e%2e/%2e%2e/other/secret.txt",
        "/priv/..%2F..%2Fother/secret.txt",
    ] {
        assert_refused(&stack.get(&format!("{climb}?{query}")), 400, "InvalidURI", climb);
    }
}

/// With one signed `*` behavior on `media` and a valid wildcard signature,
/// nothing reaches the store's other bucket.
#[test]
fn a_wildcard_signature_stays_in_its_bucket() {
    let stack = Stack::start("");
    assert_eq!(put_object(&stack.other, "/secret.txt", &[], OTHER.as_bytes()).unwrap(), 200);
    let everything = stack.signed_custom(
        "/*",
        PolicyTerms {
            date_less_than: common::now() + 3600,
            ..PolicyTerms::default()
        },
    );
    let query = everything.split_once('?').unwrap().1;
    for climb in [
        "/../other/secret.txt",
        "/%2e%2e/other/secret.txt",
        "/%2E%2E/other/secret.txt",
        "/x/../../other/secret.txt",
        "/..%2Fother%2Fsecret.txt",
        "/%2e%2e%2fother%2fsecret.txt",
        "/..\\other\\secret.txt",
    ] {
        assert_refused(&stack.get(&format!("{climb}?{query}")), 400, "InvalidURI", climb);
    }
    let response = stack.get(&format!("/other/secret.txt?{query}"));
    assert_refused(&response, 404, "NoSuchKey", "/other/secret.txt is a key of media");
}

/// The store keeps every key inside its own bucket, whoever asks: here the
/// owner of `media`, with valid signatures, tries to read, overwrite, copy
/// and list the other bucket through path spellings.
#[test]
fn the_embedded_store_keeps_keys_in_their_bucket() {
    let stack = Stack::start("");
    assert_eq!(put_object(&stack.other, "/secret.txt", &[], OTHER.as_bytes()).unwrap(), 200);
    stack.put("/mine.txt", "text/plain", b"mine");
    let media = &stack.origin;
    for path in [
        "/media/../other/secret.txt",
        "/media/x/../../other/secret.txt",
        "/media/./mine.txt",
        "/media/..",
    ] {
        for method in ["GET", "HEAD"] {
            let response = store_request(media, stack.store, method, path, &[], b"");
            assert_eq!(response.status, 400, "{method} {path}: {}", response.text());
            assert!(!response.text().contains(OTHER), "{path}");
            if method == "GET" {
                assert!(
                    response.text().contains("<Code>InvalidArgument</Code>"),
                    "{path}: {}",
                    response.text()
                );
            }
        }
    }
    let overwrite = store_request(media, stack.store, "PUT", "/media/../other/secret.txt", &[], b"overwritten");
    assert_eq!(overwrite.status, 400, "{}", overwrite.text());
    // Copies: the source must be a bucket these credentials open.
    let copy = store_request(
        media,
        stack.store,
        "PUT",
        "/media/stolen.txt",
        &[("x-amz-copy-source", "/other/secret.txt")],
        b"",
    );
    assert_eq!(copy.status, 403, "{}", copy.text());
    let copy_climb = store_request(
        media,
        stack.store,
        "PUT",
        "/media/stolen.txt",
        &[("x-amz-copy-source", "/media/../other/secret.txt")],
        b"",
    );
    assert!(matches!(copy_climb.status, 400 | 403), "{}", copy_climb.text());
    let copy_own = store_request(
        media,
        stack.store,
        "PUT",
        "/media/copy.txt",
        &[("x-amz-copy-source", "/media/mine.txt")],
        b"",
    );
    assert_eq!(copy_own.status, 200, "a copy within the bucket works: {}", copy_own.text());
    // The other bucket is whole and still only its owner's.
    let list = store_request(media, stack.store, "GET", &format!("/{OTHER_BUCKET}?list-type=2"), &[], b"");
    assert_eq!(list.status, 403);
    let read = store_request(&stack.other, stack.store, "GET", "/other/secret.txt", &[], b"");
    assert_eq!((read.status, read.text().as_str()), (200, OTHER));
    let stolen = store_request(media, stack.store, "GET", "/media/stolen.txt", &[], b"");
    assert_eq!(stolen.status, 404, "nothing was copied out of the other bucket");
    let climb_back = store_request(&stack.other, stack.store, "GET", "/other/../media/mine.txt", &[], b"");
    assert_eq!(climb_back.status, 400, "{}", climb_back.text());
    let across = store_request(&stack.other, stack.store, "GET", "/media/mine.txt", &[], b"");
    assert_eq!(across.status, 403, "the other owner cannot read media either");
}

/// The property, over sockets: for random keys, every re-spelling either is
/// refused or serves exactly the object its canonical key names, and the
/// public behavior never serves an object under the signed one.
#[test]
fn every_respelling_is_refused_or_exact() {
    let stack = two_behaviors();
    let segment = "[a-zA-Z0-9 ._~+!$&'()*,;=:@é-]{1,6}".prop_filter("not a dot segment", |s| s != "." && s != "..");
    let keys = (
        proptest::sample::select(vec!["priv", "public", "x"]),
        proptest::collection::vec(segment, 1..3),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&(keys, proptest::collection::vec(any::<u8>(), 1..12)), |((top, rest), choices)| {
            // The leaf is longer than any generated segment, so no key is
            // ever a directory of another (the store keeps keys as files).
            let key = format!("{top}/{}.objct", rest.join("/"));
            let canonical = format!("/{}", encode(&key, &[1]));
            let body = format!("object {key}");
            stack.put(&canonical, "text/plain", body.as_bytes());
            let spelling = format!("/{}", encode(&key, &choices));
            let response = stack.get(&spelling);
            match response.status {
                200 => {
                    prop_assert!(top != "priv", "{spelling}: the public behavior served a private object");
                    prop_assert_eq!(response.text(), body, "{}", spelling);
                }
                403 => prop_assert_eq!(top, "priv", "{}", spelling),
                status => prop_assert!(false, "{spelling}: unexpected {status}: {}", response.text()),
            }
            // The same key with a climb added is refused, whatever it names.
            let climbing = format!("/public/%2e%2e{spelling}");
            prop_assert_eq!(stack.get(&climbing).status, 400);
            Ok(())
        })
        .unwrap();
}

/// `key` percent-encoded by an encoder of the test's own: each byte raw where
/// that is unambiguous, or escaped in upper- or lower-case hex, by `choices`.
fn encode(key: &str, choices: &[u8]) -> String {
    let mut spelled = String::new();
    for (i, &byte) in key.as_bytes().iter().enumerate() {
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        let may_stay_raw = byte.is_ascii_graphic() && !b"%?#\\".contains(&byte);
        match choices[i % choices.len()] % 3 {
            _ if byte == b'/' => spelled.push('/'),
            0 if may_stay_raw => spelled.push(byte as char),
            1 if unreserved && choices.len() == 1 => spelled.push(byte as char),
            1 => spelled.push_str(&format!("%{byte:02X}")),
            _ => spelled.push_str(&format!("%{byte:02x}")),
        }
    }
    spelled
}

/// An account's key (the emulator's) creates, fills and deletes buckets of
/// its own, as a test suite does against S3; it never opens, creates over,
/// deletes or lists a bucket another access names, and a bucket's key that
/// is no account creates nothing.
#[test]
fn an_account_creates_buckets_of_its_own_and_no_more() {
    let root = tempfile::tempdir().unwrap();
    let access = |bucket: &str, key: &str, creates_buckets| BucketAccess {
        bucket: bucket.into(),
        access_key_id: key.into(),
        secret_access_key: format!("{key}-secret"),
        public_read: false,
        creates_buckets,
    };
    let buckets = vec![access("home", "AKIAACCOUNT", true), access("other", "AKIAOTHER", false)];
    let store = s3store::spawn(
        root.path().to_owned(),
        "127.0.0.1:0".parse().unwrap(),
        PortSharing::Exclusive,
        buckets,
    )
    .unwrap();
    let account = Origin::embedded(store, "home", "AKIAACCOUNT", "AKIAACCOUNT-secret");
    let other = Origin::embedded(store, "other", "AKIAOTHER", "AKIAOTHER-secret");
    let call = |origin: &Origin, method: &str, path: &str, body: &[u8]| store_request(origin, store, method, path, &[], body);
    let code = |response: &Response| {
        let text = response.text();
        let code = text
            .split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .map(str::to_owned);
        (response.status, code.unwrap_or_default())
    };
    assert_eq!(call(&other, "PUT", "/other/secret.txt", OTHER.as_bytes()).status, 200);

    assert_eq!(
        call(&account, "PUT", "/suite-bucket", b"").status,
        200,
        "an account creates a bucket"
    );
    assert_eq!(
        code(&call(&account, "PUT", "/suite-bucket", b"")),
        (409, "BucketAlreadyOwnedByYou".into())
    );
    assert_eq!(call(&account, "PUT", "/suite-bucket/a.txt", b"created by the suite").status, 200);
    let read = call(&account, "GET", "/suite-bucket/a.txt", b"");
    assert_eq!((read.status, read.text().as_str()), (200, "created by the suite"));
    assert_eq!(code(&call(&account, "PUT", "/Not_A_Bucket", b"")).0, 400, "S3's bucket names only");

    // Another access's bucket stays its own, whatever the account asks.
    for (method, path) in [
        ("GET", "/other/secret.txt"),
        ("PUT", "/other"),
        ("DELETE", "/other"),
        ("GET", "/other?list-type=2"),
        ("PUT", "/other/planted.txt"),
    ] {
        let answer = call(&account, method, path, b"");
        assert_eq!(code(&answer), (403, "AccessDenied".into()), "{method} {path}");
        assert!(!answer.text().contains(OTHER), "{method} {path}");
    }
    assert_eq!(
        code(&call(&account, "GET", "/", b"")),
        (403, "AccessDenied".into()),
        "the list would name the other bucket"
    );
    // A bucket's own key is no account.
    assert_eq!(code(&call(&other, "PUT", "/others-new-bucket", b"")), (403, "AccessDenied".into()));
    assert_eq!(code(&call(&other, "GET", "/suite-bucket/a.txt", b"")), (403, "AccessDenied".into()));
    assert!(!root.path().join("others-new-bucket").exists());

    // S3 deletes empty buckets only, and the config's bucket stays.
    assert_eq!(
        code(&call(&account, "DELETE", "/suite-bucket", b"")),
        (409, "BucketNotEmpty".into())
    );
    let kept = call(&account, "GET", "/suite-bucket/a.txt", b"");
    assert_eq!(
        (kept.status, kept.text().as_str()),
        (200, "created by the suite"),
        "a refused delete deletes nothing"
    );
    assert_eq!(call(&account, "DELETE", "/suite-bucket/a.txt", b"").status, 204);
    assert_eq!(call(&account, "DELETE", "/suite-bucket", b"").status, 204);
    assert_eq!(
        code(&call(&account, "GET", "/suite-bucket?list-type=2", b"")),
        (404, "NoSuchBucket".into())
    );
    assert_eq!(code(&call(&account, "DELETE", "/home", b"")), (403, "AccessDenied".into()));
    let still = call(&other, "GET", "/other/secret.txt", b"");
    assert_eq!((still.status, still.text().as_str()), (200, OTHER));
}
