//! Key value stores through the emulator: the CloudFront API's store
//! operations, the data plane's key operations (their ETags, limits and
//! refusals), and a function reading its store at request time, the keys
//! it reads changing what the edge serves.

mod common;

use base64::Engine as _;
use common::api::{NS, field, text};
use common::{Response, request, wait_until};
use keyfront::emulator::{Emulator, EmulatorOptions};
use keyfront::origin::{Origin, put_object};
use serde_json::Value;

/// An emulator that takes the data plane's requests unsigned (any
/// credentials): the tests here are of the operations, signatures are
/// `the_data_plane_refuses_what_is_not_signed_for_it`'s and boto3's.
fn unsigned_emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        accept_any_credentials: true,
        ..EmulatorOptions::default()
    })
    .unwrap()
}

/// A store named `name` through the CloudFront API; its ARN and id.
fn create_store(emulator: &Emulator, name: &str) -> (String, String) {
    let body = format!("<CreateKeyValueStoreRequest {NS}><Name>{name}</Name><Comment>routes</Comment></CreateKeyValueStoreRequest>");
    let created = emulator.call("POST", "/2020-05-31/key-value-store", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let xml = text(&created);
    assert_eq!(field(&xml, "Status"), "READY");
    assert!(created.header("etag").is_some());
    (field(&xml, "ARN"), field(&xml, "Id"))
}

/// A data-plane request (the emulator takes it unsigned: it accepts any credentials).
fn data(emulator: &Emulator, method: &str, kvs_arn: &str, rest: &str, if_match: Option<&str>, body: &str) -> Response {
    let encoded: String = url_encode(kvs_arn);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(etag) = if_match {
        headers.push(("If-Match", etag));
    }
    request(
        emulator.control,
        method,
        &format!("/key-value-stores/{encoded}{rest}"),
        &headers,
        body.as_bytes(),
    )
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn json(answer: &Response) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| panic!("not JSON: {}", answer.text()))
}

fn etag(emulator: &Emulator, kvs_arn: &str) -> String {
    let described = data(emulator, "GET", kvs_arn, "", None, "");
    assert_eq!(described.status, 200, "{}", described.text());
    described.header("etag").unwrap().to_owned()
}

fn refused(answer: &Response, status: u16, code: &str) {
    assert_eq!(
        (answer.status, answer.header("x-amzn-errortype")),
        (status, Some(code)),
        "{}",
        answer.text()
    );
}

#[test]
fn the_data_plane_changes_keys_under_the_stores_etag_within_cloudfronts_limits() {
    let emulator = unsigned_emulator();
    let (kvs_arn, _) = create_store(&emulator, "routes");
    let again = format!("<CreateKeyValueStoreRequest {NS}><Name>routes</Name></CreateKeyValueStoreRequest>");
    let duplicate = emulator
        .call("POST", "/2020-05-31/key-value-store", again.as_bytes(), None)
        .unwrap();
    assert_eq!(
        (duplicate.status, field(&text(&duplicate), "Code")),
        (409, "EntityAlreadyExists".into())
    );
    for hostile in [
        format!("<CreateKeyValueStoreRequest {NS}><Name>no spaces</Name></CreateKeyValueStoreRequest>"),
        format!(
            "<CreateKeyValueStoreRequest {NS}><Name>imported</Name><ImportSource><SourceType>S3</SourceType><SourceARN>arn:aws:s3:::b/k</SourceARN></ImportSource></CreateKeyValueStoreRequest>"
        ),
    ] {
        let answer = emulator
            .call("POST", "/2020-05-31/key-value-store", hostile.as_bytes(), None)
            .unwrap();
        assert_eq!(answer.status, 400, "{}", text(&answer));
    }

    let first = etag(&emulator, &kvs_arn);
    let put = data(&emulator, "PUT", &kvs_arn, "/keys/%2Fold", Some(&first), r#"{"Value":"/new.txt"}"#);
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(json(&put)["ItemCount"], 1);
    let second = put.header("etag").unwrap().to_owned();
    assert_ne!(second, first);
    // A change under an old ETag, or none, changes nothing.
    for stale in [Some(first.as_str()), None] {
        let lost = data(&emulator, "PUT", &kvs_arn, "/keys/%2Fold", stale, r#"{"Value":"/lost.txt"}"#);
        refused(&lost, 409, "ConflictException");
    }
    let got = data(&emulator, "GET", &kvs_arn, "/keys/%2Fold", None, "");
    assert_eq!(
        (json(&got)["Key"].clone(), json(&got)["Value"].clone()),
        ("/old".into(), "/new.txt".into())
    );
    refused(
        &data(&emulator, "GET", &kvs_arn, "/keys/absent", None, ""),
        404,
        "ResourceNotFoundException",
    );

    // Limits: a value over 1 KB, a key over 512 bytes, a malformed body.
    let big = format!(r#"{{"Value":"{}"}}"#, "v".repeat(1025));
    refused(
        &data(&emulator, "PUT", &kvs_arn, "/keys/big", Some(&second), &big),
        400,
        "ValidationException",
    );
    let long_key = format!("/keys/{}", "k".repeat(513));
    refused(
        &data(&emulator, "PUT", &kvs_arn, &long_key, Some(&second), r#"{"Value":"v"}"#),
        400,
        "ValidationException",
    );
    for malformed in ["", "{", r#"{"Value":1}"#, r#"{"Value":"v","Other":1}"#] {
        refused(
            &data(&emulator, "PUT", &kvs_arn, "/keys/k", Some(&second), malformed),
            400,
            "ValidationException",
        );
    }

    // Several at once, all or nothing: one delete of a missing key undoes the puts.
    let batch = r#"{"Puts":[{"Key":"a","Value":"1"},{"Key":"b","Value":"2"}],"Deletes":[{"Key":"missing"}]}"#;
    refused(
        &data(&emulator, "POST", &kvs_arn, "/keys", Some(&second), batch),
        404,
        "ResourceNotFoundException",
    );
    assert_eq!(etag(&emulator, &kvs_arn), second, "nothing changed");
    let batch = r#"{"Puts":[{"Key":"a","Value":"1"},{"Key":"b","Value":"2"},{"Key":"c","Value":"3"}]}"#;
    let updated = data(&emulator, "POST", &kvs_arn, "/keys", Some(&second), batch);
    assert_eq!(
        (updated.status, json(&updated)["ItemCount"].clone()),
        (200, 4.into()),
        "{}",
        updated.text()
    );

    // Listed in order, a page at a time.
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let query = if token.is_empty() {
            "?MaxResults=3".to_owned()
        } else {
            format!("?MaxResults=3&NextToken={token}")
        };
        let page = json(&data(&emulator, "GET", &kvs_arn, &format!("/keys{query}"), None, ""));
        keys.extend(
            page["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["Key"].as_str().unwrap().to_owned()),
        );
        match page["NextToken"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(keys, ["/old", "a", "b", "c"]);
    refused(
        &data(&emulator, "GET", &kvs_arn, "/keys?NextToken=zz", None, ""),
        400,
        "ValidationException",
    );
    refused(
        &data(&emulator, "GET", &kvs_arn, "/keys?MaxResults=51", None, ""),
        400,
        "ValidationException",
    );
    let unknown = kvs_arn.replace("key-value-store/", "key-value-store/0");
    refused(&data(&emulator, "GET", &unknown, "", None, ""), 404, "ResourceNotFoundException");
    // The same store id under another account, or another service's ARN, is no store here.
    for foreign in [
        kvs_arn.replace("123456789012", "999999999999"),
        kvs_arn.replace(":cloudfront:", ":s3:"),
        kvs_arn.replace("key-value-store/", "function/"),
    ] {
        let answer = data(&emulator, "GET", &foreign, "/keys/%2Fold", None, "");
        refused(&answer, 404, "ResourceNotFoundException");
        assert!(!answer.text().contains("/new.txt"), "{foreign}: no value of the store");
    }
}

fn put(emulator: &Emulator, key: &str, body: &[u8]) {
    let origin = Origin::embedded(emulator.s3, &emulator.bucket, &emulator.access_key_id, &emulator.secret_access_key);
    assert_eq!(put_object(&origin, key, &[], body).unwrap(), 200);
}

/// A 2.0 function associated with the store `kvs_arn` that sends a viewer
/// to the path its store maps the viewer's path to; created and published.
fn router(emulator: &Emulator, kvs_arn: &str) -> String {
    let code = "import cf from 'cloudfront';\nconst kvs = cf.kvs();\n\
                async function handler(event) {\n  const r = event.request;\n  if (await kvs.exists(r.uri)) { r.uri = await kvs.get(r.uri); }\n  return r;\n}";
    let encoded = base64::engine::general_purpose::STANDARD.encode(code);
    let body = format!(
        "<CreateFunctionRequest {NS}><Name>router</Name><FunctionConfig><Comment>c</Comment><Runtime>cloudfront-js-2.0</Runtime>\
         <KeyValueStoreAssociations><Quantity>1</Quantity><Items><KeyValueStoreAssociation><KeyValueStoreARN>{kvs_arn}</KeyValueStoreARN></KeyValueStoreAssociation></Items></KeyValueStoreAssociations>\
         </FunctionConfig><FunctionCode>{encoded}</FunctionCode></CreateFunctionRequest>"
    );
    let created = emulator.call("POST", "/2020-05-31/function", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let etag = created.header("etag").unwrap().to_owned();
    let published = emulator
        .call("POST", "/2020-05-31/function/router/publish", b"", Some(&etag))
        .unwrap();
    assert_eq!(published.status, 200, "{}", text(&published));
    field(&text(&published), "FunctionARN")
}

#[test]
fn a_function_reads_its_store_at_request_time() {
    let emulator = unsigned_emulator();
    let (kvs_arn, _) = create_store(&emulator, "routes");
    // A function naming a store that does not exist is refused.
    let missing = kvs_arn.replace("key-value-store/", "key-value-store/0");
    let body = format!(
        "<CreateFunctionRequest {NS}><Name>orphan</Name><FunctionConfig><Comment>c</Comment><Runtime>cloudfront-js-2.0</Runtime>\
         <KeyValueStoreAssociations><Quantity>1</Quantity><Items><KeyValueStoreAssociation><KeyValueStoreARN>{missing}</KeyValueStoreARN></KeyValueStoreAssociation></Items></KeyValueStoreAssociations>\
         </FunctionConfig><FunctionCode>{}</FunctionCode></CreateFunctionRequest>",
        base64::engine::general_purpose::STANDARD.encode("function handler(e) { return e.request; }")
    );
    let orphan = emulator.call("POST", "/2020-05-31/function", body.as_bytes(), None).unwrap();
    assert_eq!((orphan.status, field(&text(&orphan), "Code")), (404, "EntityNotFound".into()));

    let function_arn = router(&emulator, &kvs_arn);
    put(&emulator, "/new.txt", b"the new page");
    put(&emulator, "/other.txt", b"the other page");
    put(&emulator, "/old", b"the old page");
    let first = etag(&emulator, &kvs_arn);
    assert_eq!(
        data(&emulator, "PUT", &kvs_arn, "/keys/%2Fold", Some(&first), r#"{"Value":"/new.txt"}"#).status,
        200
    );
    let associations = format!(
        "<FunctionAssociations><Quantity>1</Quantity><Items><FunctionAssociation><FunctionARN>{function_arn}</FunctionARN><EventType>viewer-request</EventType></FunctionAssociation></Items></FunctionAssociations>"
    );
    let config = format!(
        "<DistributionConfig {NS}><CallerReference>kvs</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{}.s3.amazonaws.com</DomainName><S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL><DefaultTTL>0</DefaultTTL><MaxTTL>0</MaxTTL>{associations}</DefaultCacheBehavior></DistributionConfig>",
        emulator.bucket
    );
    let created = emulator.call("POST", "/2020-05-31/distribution", config.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    let get = |path: &str| request(emulator.edge, "GET", path, &[("Host", domain.as_str())], b"").text();
    assert_eq!(get("/old"), "the new page");
    assert_eq!(get("/other.txt"), "the other page", "a path the store does not name is left alone");

    // A key changed through the data plane changes what the edge serves.
    let second = etag(&emulator, &kvs_arn);
    assert_eq!(
        data(
            &emulator,
            "PUT",
            &kvs_arn,
            "/keys/%2Fold",
            Some(&second),
            r#"{"Value":"/other.txt"}"#
        )
        .status,
        200
    );
    wait_until("the function reads the new key", || get("/old") == "the other page");
    let third = etag(&emulator, &kvs_arn);
    assert_eq!(data(&emulator, "DELETE", &kvs_arn, "/keys/%2Fold", Some(&third), "").status, 200);
    wait_until("the function reads the key gone", || get("/old") == "the old page");

    // A store a function reads cannot be deleted.
    let described = emulator.call("GET", "/2020-05-31/key-value-store/routes", b"", None).unwrap();
    let store_etag = described.header("etag").unwrap().to_owned();
    let deleted = emulator
        .call("DELETE", "/2020-05-31/key-value-store/routes", b"", Some(&store_etag))
        .unwrap();
    assert_eq!(
        (deleted.status, field(&text(&deleted), "Code")),
        (409, "CannotDeleteEntityWhileInUse".into())
    );
}

#[test]
fn the_data_plane_refuses_what_is_not_signed_for_it() {
    let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
    let (kvs_arn, _) = create_store(&emulator, "guarded");
    let unsigned = data(&emulator, "GET", &kvs_arn, "", None, "");
    refused(&unsigned, 403, "MissingAuthenticationToken");
    // Signed with SigV4 for the CloudFront API, not for the data plane.
    let path = format!("/key-value-stores/{}", url_encode(&kvs_arn));
    let other_service = emulator.call("GET", &path, b"", None).unwrap();
    assert_eq!(
        (other_service.status, other_service.header("x-amzn-errortype")),
        (403, Some("IncompleteSignature"))
    );
    assert!(!String::from_utf8_lossy(&other_service.body).contains("ItemCount"));
}
