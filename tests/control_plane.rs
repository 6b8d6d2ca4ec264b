//! CloudFront's control-plane API against a real emulator (`keyfront::
//! emulator`, in this process): every request SigV4-signed as the SDKs
//! sign, hostile requests first, and what the API creates served by the
//! edge over real sockets.

mod common;

use std::net::SocketAddr;

use common::api::{NS, field, text};
use common::{now, request};
use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PrivateKey, Signer};
use keyfront::emulator::{Emulator, EmulatorOptions};
use keyfront::origin::{Origin, put_object};
use keyfront::plain_http::Answer;

struct Setup {
    emulator: Emulator,
    signer: Signer,
    public_pem: String,
    key_id: String,
    group_id: String,
}

fn put(emulator: &Emulator, key: &str, body: &[u8]) {
    let origin = Origin::embedded(emulator.s3, &emulator.bucket, &emulator.access_key_id, &emulator.secret_access_key);
    assert_eq!(put_object(&origin, key, &[], body).unwrap(), 200);
}

fn public_key_body(reference: &str, name: &str, pem: &str) -> String {
    format!(
        "<PublicKeyConfig {NS}><CallerReference>{reference}</CallerReference><Name>{name}</Name><EncodedKey>{pem}</EncodedKey><Comment>c</Comment></PublicKeyConfig>"
    )
}

/// A new EC public key through the API, as `reference` and `name`.
fn create_public_key(emulator: &Emulator, reference: &str, name: &str) -> Answer {
    let pem = PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem();
    emulator
        .call(
            "POST",
            "/2020-05-31/public-key",
            public_key_body(reference, name, &pem).as_bytes(),
            None,
        )
        .unwrap()
}

fn start(options: EmulatorOptions) -> Setup {
    let emulator = Emulator::start(options).unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::Rsa);
    let created = emulator
        .call(
            "POST",
            "/2020-05-31/public-key",
            public_key_body("r1", "k1", &key.public_key().to_pem()).as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let key_id = field(&text(&created), "Id");
    let group = format!("<KeyGroupConfig {NS}><Name>g1</Name><Items><PublicKey>{key_id}</PublicKey></Items></KeyGroupConfig>");
    let created = emulator.call("POST", "/2020-05-31/key-group", group.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let group_id = field(&text(&created), "Id");
    Setup {
        emulator,
        public_pem: key.public_key().to_pem(),
        signer: Signer::new(key_id.clone(), key, HashAlgorithm::Sha1),
        key_id,
        group_id,
    }
}

/// A DistributionConfig with a signed default behavior (trusting `group`)
/// and a public `/public/*` one, over the emulator's bucket under `/prefix`.
fn distribution_config(reference: &str, bucket: &str, group: &str, extra: &str) -> String {
    format!(
        "<DistributionConfig {NS}><CallerReference>{reference}</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{bucket}.s3.amazonaws.com</DomainName><OriginPath>/prefix</OriginPath><S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig></Origin></Items></Origins>\
         <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><TrustedKeyGroups><Enabled>true</Enabled><Quantity>1</Quantity><Items><KeyGroup>{group}</KeyGroup></Items></TrustedKeyGroups><MinTTL>0</MinTTL></DefaultCacheBehavior>\
         <CacheBehaviors><Quantity>1</Quantity><Items><CacheBehavior><PathPattern>public/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL></CacheBehavior></Items></CacheBehaviors>{extra}</DistributionConfig>"
    )
}

/// Creates a distribution; its id, DomainName and ETag.
fn create_distribution(setup: &Setup, reference: &str, extra: &str) -> (String, String, String) {
    let body = distribution_config(reference, &setup.emulator.bucket, &setup.group_id, extra);
    let created = setup
        .emulator
        .call("POST", "/2020-05-31/distribution", body.as_bytes(), None)
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let xml = text(&created);
    assert_eq!(field(&xml, "Status"), "InProgress");
    (
        field(&xml, "Id"),
        field(&xml, "DomainName"),
        created.header("etag").unwrap().to_owned(),
    )
}

fn signed(setup: &Setup, url: &str) -> String {
    setup.signer.sign_url(url, &PolicySpec::Canned { expires: now() + 600 })
}

/// The path and query of `url` (`http://host/path?query`).
fn target(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap();
    &rest[rest.find('/').unwrap()..]
}

/// GET `url` at the edge listener `edge`, with the URL's host as `Host`.
fn get(edge: SocketAddr, url: &str) -> common::Response {
    let host = url.strip_prefix("http://").unwrap().split('/').next().unwrap();
    request(edge, "GET", target(url), &[("Host", host)], b"")
}

#[test]
fn hostile_and_malformed_requests_get_cloudfront_errors_and_change_nothing() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let control = emulator.control;
    let unsigned = request(control, "GET", "/2020-05-31/distribution", &[], b"");
    assert_eq!(unsigned.status, 403);
    assert!(
        unsigned.text().contains("<Code>MissingAuthenticationToken</Code>"),
        "{}",
        unsigned.text()
    );
    assert!(
        unsigned
            .text()
            .contains("<ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">")
    );

    let mut impostor = Emulator::start(EmulatorOptions {
        access_key_id: Some(emulator.access_key_id.clone()),
        ..EmulatorOptions::default()
    })
    .unwrap();
    // Its own secret, the same key id, aimed at the first emulator.
    impostor.control = emulator.control;
    let forged = impostor.call("GET", "/2020-05-31/distribution", b"", None).unwrap();
    assert_eq!(forged.status, 403);
    assert!(text(&forged).contains("<Code>SignatureDoesNotMatch</Code>"), "{}", text(&forged));

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/2020-05-31/public-key",
            b"<PublicKeyConfig><Name>".to_vec(),
            400,
            "MalformedInput",
        ),
        (
            "POST",
            "/2020-05-31/public-key",
            ("<A>".repeat(100) + &"</A>".repeat(100)).into_bytes(),
            400,
            "MalformedInput",
        ),
        (
            "POST",
            "/2020-05-31/public-key",
            b"<!DOCTYPE x [<!ENTITY a \"b\">]><PublicKeyConfig>&a;</PublicKeyConfig>".to_vec(),
            400,
            "MalformedInput",
        ),
        (
            "POST",
            "/2020-05-31/public-key",
            public_key_body("r9", "bad", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----").into_bytes(),
            400,
            "InvalidArgument",
        ),
        ("POST", "/2020-05-31/public-key", vec![b'x'; 2 << 20], 413, "RequestEntityTooLarge"),
        ("GET", "/2020-05-31/public-key/KNOSUCHKEY0000", Vec::new(), 404, "NoSuchPublicKey"),
        ("GET", "/2020-05-31/distribution/ENOSUCH", Vec::new(), 404, "NoSuchDistribution"),
        ("GET", "/2020-05-31/streaming-distribution", Vec::new(), 400, "InvalidArgument"),
        ("GET", "/2019-03-26/distribution", Vec::new(), 400, "InvalidArgument"),
        ("GET", "/2020-05-31/public-key?MaxItems=-1", Vec::new(), 400, "InvalidArgument"),
        (
            "POST",
            "/2020-05-31/key-group",
            format!(
                "<KeyGroupConfig><Name>g2</Name><Items><PublicKey>{}</PublicKey></Items><Quantity>2</Quantity></KeyGroupConfig>",
                setup.key_id
            )
            .into_bytes(),
            400,
            "InconsistentQuantities",
        ),
        (
            "POST",
            "/2020-05-31/key-group",
            b"<KeyGroupConfig><Name>g3</Name><Items><PublicKey>KNOSUCHKEY0000</PublicKey></Items></KeyGroupConfig>".to_vec(),
            404,
            "NoSuchPublicKey",
        ),
        (
            "POST",
            "/2020-05-31/distribution",
            distribution_config("x", "media", &setup.group_id, "")
                .replace("media.s3.amazonaws.com", "origin.example.com")
                .into_bytes(),
            400,
            "InvalidArgument",
        ),
        (
            "POST",
            "/2020-05-31/distribution",
            distribution_config("y", "media", "no-such-group", "").into_bytes(),
            400,
            "TrustedKeyGroupDoesNotExist",
        ),
        (
            "POST",
            "/2020-05-31/distribution",
            distribution_config("z", "media", &setup.group_id, "")
                .replace("<Quantity>1</Quantity><Items><Origin>", "<Quantity>2</Quantity><Items><Origin>")
                .into_bytes(),
            400,
            "InconsistentQuantities",
        ),
    ];
    let config = || distribution_config("b", "media", &setup.group_id, "");
    let signed_groups = "<TrustedKeyGroups><Enabled>true</Enabled>";
    let four_methods = "<AllowedMethods><Quantity>4</Quantity><Items><Method>GET</Method><Method>HEAD</Method><Method>PUT</Method><Method>POST</Method></Items></AllowedMethods>";
    let one_behavior = config();
    let start = one_behavior.find("<CacheBehaviors>").unwrap();
    let end = one_behavior.find("</CacheBehaviors>").unwrap() + "</CacheBehaviors>".len();
    let behavior = "<CacheBehavior><PathPattern>p{i}/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL></CacheBehavior>";
    let many: String = (0..26).map(|i| behavior.replace("{i}", &i.to_string())).collect();
    let too_many_behaviors = format!(
        "{}<CacheBehaviors><Quantity>26</Quantity><Items>{many}</Items></CacheBehaviors>{}",
        &one_behavior[..start],
        &one_behavior[end..]
    );
    let mut cases = cases;
    for (body, status, code) in [
        // A malformed boolean is refused, never read as a default: as
        // `false`, ` true ` would have made the signed behavior public.
        (
            config().replace(signed_groups, "<TrustedKeyGroups><Enabled> true </Enabled>"),
            400,
            "MalformedInput",
        ),
        (
            config().replace(signed_groups, "<TrustedKeyGroups><Enabled>True</Enabled>"),
            400,
            "MalformedInput",
        ),
        (
            config().replace(signed_groups, "<TrustedKeyGroups><Enabled>1</Enabled>"),
            400,
            "MalformedInput",
        ),
        (
            config().replace("<Enabled>true</Enabled><Origins>", "<Enabled>yes</Enabled><Origins>"),
            400,
            "MalformedInput",
        ),
        (
            config().replace(
                "<DefaultCacheBehavior><TargetOriginId>o</TargetOriginId>",
                &format!("<DefaultCacheBehavior><TargetOriginId>o</TargetOriginId>{four_methods}"),
            ),
            400,
            "InvalidArgument",
        ),
        (too_many_behaviors, 400, "TooManyCacheBehaviors"),
        (
            config().replace(
                "<Comment>c</Comment>",
                "<Comment>c</Comment><Aliases><Quantity>1</Quantity><Items><CNAME>bad name.example</CNAME></Items></Aliases>",
            ),
            400,
            "InvalidArgument",
        ),
    ] {
        assert_ne!(body, config(), "{code}: the case changes the config");
        cases.push(("POST", "/2020-05-31/distribution", body.into_bytes(), status, code));
    }
    for origin_path in ["/../x", "/prefix/", "prefix", "/a//b"] {
        let body = config().replace(
            "<OriginPath>/prefix</OriginPath>",
            &format!("<OriginPath>{origin_path}</OriginPath>"),
        );
        cases.push(("POST", "/2020-05-31/distribution", body.into_bytes(), 400, "InvalidArgument"));
    }
    for (method, path, body, status, code) in cases {
        let answer = emulator.call(method, path, &body, None).unwrap();
        assert_eq!(answer.status, status, "{method} {path}: {}", text(&answer));
        assert!(
            text(&answer).contains(&format!("<Code>{code}</Code>")),
            "{method} {path}: {}",
            text(&answer)
        );
    }
    let listed = text(&emulator.call("GET", "/2020-05-31/distribution", b"", None).unwrap());
    assert!(listed.contains("<Quantity>0</Quantity>"), "nothing was created: {listed}");
    let keys = text(&emulator.call("GET", "/2020-05-31/public-key", b"", None).unwrap());
    assert_eq!(keys.matches("<PublicKeySummary>").count(), 1, "{keys}");
}

#[test]
fn etags_guard_every_change_and_configs_come_back_as_sent() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let unknown = "<FutureField><Nested>kept &amp; echoed</Nested></FutureField>";
    let (id, _, etag) = create_distribution(&setup, "etags", unknown);
    let path = format!("/2020-05-31/distribution/{id}/config");
    let read = emulator.call("GET", &path, b"", None).unwrap();
    assert_eq!(read.header("etag"), Some(etag.as_str()), "the same ETag on every read");
    let config = text(&read);
    assert!(config.contains(unknown), "unknown elements echoed: {config}");
    for container in [
        "<OriginGroups><Quantity>0</Quantity></OriginGroups>",
        "<FunctionAssociations><Quantity>0</Quantity>",
        "<TrustedSigners><Enabled>false</Enabled>",
    ] {
        assert!(config.contains(container), "{container} always returned: {config}");
    }
    let got = text(&emulator.call("GET", &format!("/2020-05-31/distribution/{id}"), b"", None).unwrap());
    assert_eq!(field(&got, "Status"), "Deployed");
    assert!(got.contains(&format!("<KeyGroupId>{}</KeyGroupId>", setup.group_id)), "{got}");
    assert!(got.contains(&format!("<KeyPairId>{}</KeyPairId>", setup.key_id)));

    let body =
        distribution_config("etags", &emulator.bucket, &setup.group_id, unknown).replace("<Comment>c</Comment>", "<Comment>d</Comment>");
    let missing = emulator.call("PUT", &path, body.as_bytes(), None).unwrap();
    assert_eq!(
        (missing.status, field(&text(&missing), "Code")),
        (400, "InvalidIfMatchVersion".into())
    );
    let stale = emulator.call("PUT", &path, body.as_bytes(), Some("ESTALE")).unwrap();
    assert_eq!((stale.status, field(&text(&stale), "Code")), (412, "PreconditionFailed".into()));
    let updated = emulator.call("PUT", &path, body.as_bytes(), Some(&etag)).unwrap();
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let new_etag = updated.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag, "a new ETag on every change");
    assert_eq!(field(&text(&updated), "Status"), "InProgress");
    let again = emulator.call("PUT", &path, body.as_bytes(), Some(&etag)).unwrap();
    assert_eq!(again.status, 412, "the old ETag is stale now");
    let moved = body.replace("<CallerReference>etags", "<CallerReference>other");
    let illegal = emulator.call("PUT", &path, moved.as_bytes(), Some(&new_etag)).unwrap();
    assert_eq!(field(&text(&illegal), "Code"), "IllegalUpdate");

    let enabled = emulator
        .call("DELETE", &format!("/2020-05-31/distribution/{id}"), b"", Some(&new_etag))
        .unwrap();
    assert_eq!(
        (enabled.status, field(&text(&enabled), "Code")),
        (409, "DistributionNotDisabled".into())
    );
    let group_etag = emulator
        .call("GET", &format!("/2020-05-31/key-group/{}", setup.group_id), b"", None)
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let in_use = emulator
        .call(
            "DELETE",
            &format!("/2020-05-31/key-group/{}", setup.group_id),
            b"",
            Some(&group_etag),
        )
        .unwrap();
    assert_eq!((in_use.status, field(&text(&in_use), "Code")), (409, "ResourceInUse".into()));
    let same_reference = emulator
        .call(
            "POST",
            "/2020-05-31/distribution",
            distribution_config("etags", &emulator.bucket, &setup.group_id, "").as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(field(&text(&same_reference), "Code"), "DistributionAlreadyExists");
}

#[test]
fn lists_page_with_markers_and_show_each_item_once() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    for i in 2..=6 {
        let answer = create_public_key(emulator, &format!("r{i}"), &format!("k{i}"));
        assert_eq!(answer.status, 201, "{}", text(&answer));
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let page = text(
            &emulator
                .call("GET", &format!("/2020-05-31/public-key?MaxItems=2&Marker={marker}"), b"", None)
                .unwrap(),
        );
        let mut rest = page.as_str();
        while let Some(at) = rest.find("<PublicKeySummary><Id>") {
            rest = &rest[at + 22..];
            seen.push(rest[..rest.find('<').unwrap()].to_owned());
        }
        match page.contains("<NextMarker>") {
            true => marker = field(&page, "NextMarker"),
            false => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (6, 6), "{seen:?}");
    let taken = emulator
        .call(
            "POST",
            "/2020-05-31/public-key",
            public_key_body("r7", "k2", &setup.public_pem).as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!((taken.status, field(&text(&taken), "Code")), (409, "PublicKeyAlreadyExists".into()));
}

#[test]
fn what_the_api_creates_is_served_by_host_and_changes_at_once() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    put(emulator, "/prefix/film.mp4", b"version one");
    put(emulator, "/prefix/public/a.txt", b"public");
    let alias = "<Aliases><Quantity>1</Quantity><Items><CNAME>Media.Example.com</CNAME></Items></Aliases><DefaultRootObject>film.mp4</DefaultRootObject>";
    let (id, domain, etag) = create_distribution(&setup, "served", alias);
    assert!(
        domain.starts_with("127.0.0.") && domain.ends_with(&format!(":{}", emulator.edge.port())),
        "{domain}"
    );
    let url = format!("http://{domain}/film.mp4");

    let whole = get(emulator.edge, &signed(&setup, &url));
    assert_eq!(
        (whole.status, whole.body.as_slice()),
        (200, &b"version one"[..]),
        "{}",
        whole.text()
    );
    let by_own_address = request(domain.parse().unwrap(), "GET", target(&signed(&setup, &url)), &[], b"");
    assert_eq!(by_own_address.body, b"version one", "the DomainName is reachable as it is");
    let unsigned = get(emulator.edge, &url);
    assert_eq!(unsigned.status, 403);
    assert!(
        unsigned.text().contains("MissingKey") && !unsigned.text().contains("version one"),
        "{}",
        unsigned.text()
    );
    let by_alias = request(
        emulator.edge,
        "GET",
        target(&signed(&setup, "http://media.example.com/film.mp4")),
        &[("Host", "media.example.com")],
        b"",
    );
    assert_eq!(by_alias.body, b"version one", "an alias, matched without case or port");
    let root = get(emulator.edge, &signed(&setup, &format!("http://{domain}/")));
    assert_eq!(root.body, b"version one", "the default root object");
    assert_eq!(get(emulator.edge, &format!("http://{domain}/public/a.txt")).body, b"public");
    let nowhere = request(emulator.edge, "GET", "/prefix/film.mp4", &[("Host", "unknown.example")], b"");
    assert_eq!(nowhere.status, 403, "no distribution: the config file's behaviors, which refuse");
    assert!(
        nowhere.text().contains("MissingKey") && !nowhere.text().contains("version one"),
        "{}",
        nowhere.text()
    );
    let respelled = get(emulator.edge, &signed(&setup, &format!("http://{domain}/public/../film.mp4")));
    assert!(
        respelled.status >= 400 && !respelled.text().contains("version one"),
        "a dot segment never reaches a signed object"
    );
    let foreign = "<Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>other.s3.amazonaws.com</DomainName><OriginPath>/prefix</OriginPath></Origin></Items></Origins>";
    let body = distribution_config("foreign", &emulator.bucket, &setup.group_id, "");
    let (start, end) = (
        body.find("<Origins>").unwrap(),
        body.find("</Origins>").unwrap() + "</Origins>".len(),
    );
    let body = format!("{}{foreign}{}", &body[..start], &body[end..]);
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    let foreign_domain = field(&text(&created), "DomainName");
    // The emulator's key is an account's: a bucket it has not created is
    // not there (a 404); a configured store's bucket another key opens is a
    // 502 (`tests/serve.rs`).
    let other_bucket = get(emulator.edge, &format!("http://{foreign_domain}/public/a.txt"));
    assert_eq!(other_bucket.status, 404, "a bucket no one created: {}", other_bucket.text());
    assert!(!other_bucket.text().contains("public"), "and nothing of another bucket's objects");

    let (_, other_domain, _) = create_distribution(&setup, "second", "");
    let taken = emulator
        .call(
            "POST",
            "/2020-05-31/distribution",
            distribution_config("third", &emulator.bucket, &setup.group_id, alias).as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!((taken.status, field(&text(&taken), "Code")), (409, "CNAMEAlreadyExists".into()));

    put(emulator, "/prefix/film.mp4", b"version two");
    let other_url = format!("http://{other_domain}/film.mp4");
    assert_eq!(
        get(emulator.edge, &signed(&setup, &other_url)).body,
        b"version two",
        "distributions cache apart"
    );
    assert_eq!(get(emulator.edge, &signed(&setup, &url)).body, b"version one", "still cached");
    let batch = format!(
        "<InvalidationBatch {NS}><Paths><Quantity>1</Quantity><Items><Path>/film.mp4</Path></Items></Paths><CallerReference>i1</CallerReference></InvalidationBatch>"
    );
    let created = emulator
        .call(
            "POST",
            &format!("/2020-05-31/distribution/{id}/invalidation"),
            batch.as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let invalidation = field(&text(&created), "Id");
    let read = text(
        &emulator
            .call(
                "GET",
                &format!("/2020-05-31/distribution/{id}/invalidation/{invalidation}"),
                b"",
                None,
            )
            .unwrap(),
    );
    assert_eq!(field(&read, "Status"), "Completed");
    assert_eq!(get(emulator.edge, &signed(&setup, &url)).body, b"version two", "purged");

    let disabled = distribution_config("served", &emulator.bucket, &setup.group_id, alias).replace("<Enabled>true", "<Enabled>false");
    let updated = emulator
        .call(
            "PUT",
            &format!("/2020-05-31/distribution/{id}/config"),
            disabled.as_bytes(),
            Some(&etag),
        )
        .unwrap();
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let refused = get(emulator.edge, &signed(&setup, &url));
    assert_eq!(refused.status, 403, "disabled at once");
    assert!(!refused.text().contains("version t"));
    let etag = updated.header("etag").unwrap().to_owned();
    let deleted = emulator
        .call("DELETE", &format!("/2020-05-31/distribution/{id}"), b"", Some(&etag))
        .unwrap();
    assert_eq!(deleted.status, 204, "{}", text(&deleted));
    assert_eq!(get(emulator.edge, &signed(&setup, &url)).status, 403, "deleted: no longer served");
}

#[test]
fn a_rotated_key_group_changes_who_may_sign_at_once() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    put(emulator, "/prefix/doc.pdf", b"pdf");
    let (_, domain, _) = create_distribution(&setup, "rotation", "");
    let url = format!("http://{domain}/doc.pdf");
    assert_eq!(get(emulator.edge, &signed(&setup, &url)).status, 200);
    let new_key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let created = emulator
        .call(
            "POST",
            "/2020-05-31/public-key",
            public_key_body("r2", "k2", &new_key.public_key().to_pem()).as_bytes(),
            None,
        )
        .unwrap();
    let new_id = field(&text(&created), "Id");
    let group_path = format!("/2020-05-31/key-group/{}", setup.group_id);
    let etag = emulator
        .call("GET", &group_path, b"", None)
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let rotated = format!("<KeyGroupConfig {NS}><Name>g1</Name><Items><PublicKey>{new_id}</PublicKey></Items></KeyGroupConfig>");
    let updated = emulator.call("PUT", &group_path, rotated.as_bytes(), Some(&etag)).unwrap();
    assert_eq!(updated.status, 200, "{}", text(&updated));
    let old = get(emulator.edge, &signed(&setup, &url));
    assert_eq!(old.status, 403, "the removed key no longer signs");
    assert!(old.text().contains("<Code>") && !old.text().contains("pdf"), "{}", old.text());
    let new_signer = Signer::new(new_id.clone(), new_key, HashAlgorithm::Sha1);
    let fresh = get(
        emulator.edge,
        &new_signer.sign_url(&url, &PolicySpec::Canned { expires: now() + 600 }),
    );
    assert_eq!((fresh.status, fresh.body.as_slice()), (200, &b"pdf"[..]));
    let old_etag = emulator
        .call("GET", &format!("/2020-05-31/public-key/{}", setup.key_id), b"", None)
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let freed = emulator
        .call("DELETE", &format!("/2020-05-31/public-key/{}", setup.key_id), b"", Some(&old_etag))
        .unwrap();
    assert_eq!(freed.status, 204, "a key no group holds can go: {}", text(&freed));
    let new_etag = emulator
        .call("GET", &format!("/2020-05-31/public-key/{new_id}"), b"", None)
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let held = emulator
        .call("DELETE", &format!("/2020-05-31/public-key/{new_id}"), b"", Some(&new_etag))
        .unwrap();
    assert_eq!(field(&text(&held), "Code"), "PublicKeyInUse");
}

#[test]
fn state_kept_in_a_directory_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmulatorOptions {
        dir: Some(dir.path().to_owned()),
        access_key_id: Some("AKIAPERSIST".into()),
        secret_access_key: Some("persist-secret-0123".into()),
        ..EmulatorOptions::default()
    };
    let setup = start(options.clone());
    put(&setup.emulator, "/prefix/kept.txt", b"kept");
    let (id, domain, etag) = create_distribution(&setup, "persist", "");
    let edge = setup.emulator.edge;
    let url = signed(&setup, &format!("http://{domain}/kept.txt"));
    drop(setup);
    // The stopped emulator's listeners close as its threads end, which may
    // be just after the drop: its address is taken again once free.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let emulator = loop {
        match Emulator::start(EmulatorOptions { edge, ..options.clone() }) {
            Ok(emulator) => break emulator,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("restarting on {edge}: {error}; again");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(error) => panic!("the emulator did not restart on {edge}: {error}"),
        }
    };
    let read = emulator.call("GET", &format!("/2020-05-31/distribution/{id}"), b"", None).unwrap();
    assert_eq!((read.status, read.header("etag")), (200, Some(etag.as_str())), "{}", text(&read));
    assert_eq!(field(&text(&read), "DomainName"), domain);
    let served = get(emulator.edge, &url);
    assert_eq!(
        (served.status, served.body.as_slice()),
        (200, &b"kept"[..]),
        "served after the restart"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700, "the emulator's directory is its owner's");
    for file in ["keyfront.yaml", "control/control-state.json"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file} holds secrets: its owner's alone");
    }
    let shown = format!("{options:?}");
    assert!(shown.contains("AKIAPERSIST") && !shown.contains("persist-secret-0123"), "{shown}");
}

#[test]
fn custom_error_responses_replace_the_origins_errors() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    put(emulator, "/prefix/public/missing.html", b"<h1>not here</h1>");
    put(emulator, "/prefix/app/index.html", b"<div id=app></div>");
    let pages = "<CustomErrorResponses><Quantity>2</Quantity><Items>\
        <CustomErrorResponse><ErrorCode>404</ErrorCode><ResponsePagePath>/public/missing.html</ResponsePagePath><ResponseCode>404</ResponseCode><ErrorCachingMinTTL>10</ErrorCachingMinTTL></CustomErrorResponse>\
        <CustomErrorResponse><ErrorCode>502</ErrorCode><ResponsePagePath>/app/index.html</ResponsePagePath><ResponseCode>200</ResponseCode></CustomErrorResponse>\
        </Items></CustomErrorResponses>";
    let (_, domain, _) = create_distribution(&setup, "pages", pages);
    let missing = get(emulator.edge, &signed(&setup, &format!("http://{domain}/nothing.pdf")));
    assert_eq!((missing.status, missing.body.as_slice()), (404, &b"<h1>not here</h1>"[..]));
    let ranged = request(
        emulator.edge,
        "GET",
        target(&signed(&setup, &format!("http://{domain}/nothing.pdf"))),
        &[("Host", domain.as_str()), ("Range", "bytes=0-3")],
        b"",
    );
    assert_eq!((ranged.status, ranged.body.len()), (404, 17), "a page is answered whole");
    let unsigned = get(emulator.edge, &format!("http://{domain}/nothing.pdf"));
    assert!(
        unsigned.status == 403 && !unsigned.text().contains("not here"),
        "a page never stands in for a signature"
    );
    let found = get(emulator.edge, &signed(&setup, &format!("http://{domain}/app/index.html")));
    assert_eq!(found.status, 200, "no error, no page");

    for (bad, code) in [
        (
            "<CustomErrorResponses><Quantity>1</Quantity><Items><CustomErrorResponse><ErrorCode>200</ErrorCode></CustomErrorResponse></Items></CustomErrorResponses>",
            "InvalidErrorCode",
        ),
        (
            "<CustomErrorResponses><Quantity>1</Quantity><Items><CustomErrorResponse><ErrorCode>404</ErrorCode><ResponsePagePath>/x</ResponsePagePath></CustomErrorResponse></Items></CustomErrorResponses>",
            "InvalidResponseCode",
        ),
    ] {
        let body = distribution_config("bad-pages", &emulator.bucket, &setup.group_id, bad);
        let refused = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
        assert_eq!((refused.status, field(&text(&refused), "Code")), (400, code.to_owned()));
    }
}

#[test]
fn a_deploy_delay_holds_reads_in_progress_and_deletes_back() {
    let setup = start(EmulatorOptions {
        deploy_delay: std::time::Duration::from_secs(1),
        ..EmulatorOptions::default()
    });
    let emulator = &setup.emulator;
    let disabled = "<Logging><Enabled>false</Enabled></Logging>";
    let body = distribution_config("delayed", &emulator.bucket, &setup.group_id, disabled)
        .replace("<Enabled>true</Enabled><Origins>", "<Enabled>false</Enabled><Origins>");
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let (id, etag) = (field(&text(&created), "Id"), created.header("etag").unwrap().to_owned());
    let path = format!("/2020-05-31/distribution/{id}");
    assert_eq!(
        field(&text(&emulator.call("GET", &path, b"", None).unwrap()), "Status"),
        "InProgress"
    );
    let early = emulator.call("DELETE", &path, b"", Some(&etag)).unwrap();
    assert_eq!(field(&text(&early), "Code"), "DistributionNotDisabled", "not deployed yet");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(field(&text(&emulator.call("GET", &path, b"", None).unwrap()), "Status"), "Deployed");
    assert_eq!(emulator.call("DELETE", &path, b"", Some(&etag)).unwrap().status, 204);
}

/// The operations the other tests do not reach: public key config and
/// update, key group config and list, origin access controls from create
/// to delete, tags, and the list of invalidations.
#[test]
fn the_remaining_operations_answer_as_cloudfront_does() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let call =
        |method: &str, path: &str, body: &str, if_match: Option<&str>| emulator.call(method, path, body.as_bytes(), if_match).unwrap();

    let key_path = format!("/2020-05-31/public-key/{}", setup.key_id);
    let config = call("GET", &format!("{key_path}/config"), "", None);
    let etag = config.header("etag").unwrap().to_owned();
    assert!(text(&config).starts_with("<?xml") && text(&config).contains("<PublicKeyConfig xmlns="));
    assert_eq!(call("GET", &key_path, "", None).header("etag"), Some(etag.as_str()));
    let commented = public_key_body("r1", "k1", &setup.public_pem).replace("<Comment>c</Comment>", "<Comment>rotating soon</Comment>");
    let updated = call("PUT", &format!("{key_path}/config"), &commented, Some(&etag));
    assert_eq!(updated.status, 200, "{}", text(&updated));
    assert!(text(&updated).contains("<Comment>rotating soon</Comment>"));
    let other_key = PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem();
    let swapped = call(
        "PUT",
        &format!("{key_path}/config"),
        &public_key_body("r1", "k1", &other_key),
        updated.header("etag"),
    );
    assert_eq!(field(&text(&swapped), "Code"), "CannotChangeImmutablePublicKeyFields");

    let group_config = call("GET", &format!("/2020-05-31/key-group/{}/config", setup.group_id), "", None);
    assert!(text(&group_config).contains(&format!("<PublicKey>{}</PublicKey>", setup.key_id)));
    let groups = text(&call("GET", "/2020-05-31/key-group", "", None));
    assert!(
        groups.contains(&format!("<KeyGroupSummary><KeyGroup><Id>{}</Id>", setup.group_id)),
        "{groups}"
    );

    let oac = format!(
        "<OriginAccessControlConfig {NS}><Name>bucket</Name><Description>d</Description><SigningProtocol>sigv4</SigningProtocol><SigningBehavior>always</SigningBehavior><OriginAccessControlOriginType>s3</OriginAccessControlOriginType></OriginAccessControlConfig>"
    );
    let created = call("POST", "/2020-05-31/origin-access-control", &oac, None);
    assert_eq!(created.status, 201, "{}", text(&created));
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with(&format!("/2020-05-31/origin-access-control/{}", field(&text(&created), "Id")))
    );
    let oac_id = field(&text(&created), "Id");
    let oac_path = format!("/2020-05-31/origin-access-control/{oac_id}");
    let bad = call(
        "POST",
        "/2020-05-31/origin-access-control",
        &oac.replace("sigv4", "sigv2").replace(">bucket<", ">other<"),
        None,
    );
    assert_eq!(field(&text(&bad), "Code"), "InvalidArgument");
    let twin = call("POST", "/2020-05-31/origin-access-control", &oac, None);
    assert_eq!(field(&text(&twin), "Code"), "OriginAccessControlAlreadyExists");
    let listed = text(&call("GET", "/2020-05-31/origin-access-control", "", None));
    assert!(
        listed.contains("<IsTruncated>false</IsTruncated>") && listed.contains(&format!("<Id>{oac_id}</Id>")),
        "{listed}"
    );
    let etag = call("GET", &format!("{oac_path}/config"), "", None)
        .header("etag")
        .unwrap()
        .to_owned();
    let renamed = call(
        "PUT",
        &format!("{oac_path}/config"),
        &oac.replace("<Description>d<", "<Description>e<"),
        Some(&etag),
    );
    assert_eq!(renamed.status, 200, "{}", text(&renamed));
    let etag = renamed.header("etag").unwrap().to_owned();
    let with_oac = format!(
        "<Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{}.s3.amazonaws.com</DomainName><OriginAccessControlId>{oac_id}</OriginAccessControlId></Origin></Items></Origins>",
        emulator.bucket
    );
    let body = distribution_config("oac", &emulator.bucket, &setup.group_id, "");
    let start = body.find("<Origins>").unwrap();
    let end = body.find("</Origins>").unwrap() + "</Origins>".len();
    let body = format!("{}{with_oac}{}", &body[..start], &body[end..]);
    let distribution = call("POST", "/2020-05-31/distribution", &body, None);
    assert_eq!(distribution.status, 201, "{}", text(&distribution));
    let held = call("DELETE", &oac_path, "", Some(&etag));
    assert_eq!(field(&text(&held), "Code"), "OriginAccessControlInUse");

    let id = field(&text(&distribution), "Id");
    let arn = field(&text(&distribution), "ARN");
    assert_eq!(arn, format!("arn:aws:cloudfront::123456789012:distribution/{id}"));
    let encoded: String = arn
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let tags = "<Tags xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Items><Tag><Key>team</Key><Value>video</Value></Tag><Tag><Key>tier</Key><Value>gold</Value></Tag></Items></Tags>";
    assert_eq!(
        call("POST", &format!("/2020-05-31/tagging?Operation=Tag&Resource={encoded}"), tags, None).status,
        204
    );
    let untag = "<TagKeys><Items><Key>tier</Key></Items></TagKeys>";
    assert_eq!(
        call(
            "POST",
            &format!("/2020-05-31/tagging?Operation=Untag&Resource={encoded}"),
            untag,
            None
        )
        .status,
        204
    );
    let listed = text(&call("GET", &format!("/2020-05-31/tagging?Resource={encoded}"), "", None));
    assert!(
        listed.contains("<Key>team</Key><Value>video</Value>") && !listed.contains("tier"),
        "{listed}"
    );
    let nowhere = call(
        "GET",
        "/2020-05-31/tagging?Resource=arn%3Aaws%3Acloudfront%3A%3A1%3Adistribution%2FENONE",
        "",
        None,
    );
    assert_eq!((nowhere.status, field(&text(&nowhere), "Code")), (404, "NoSuchResource".into()));

    for reference in ["a", "b", "c"] {
        let batch = format!(
            "<InvalidationBatch><Paths><Quantity>1</Quantity><Items><Path>/{reference}</Path></Items></Paths><CallerReference>{reference}</CallerReference></InvalidationBatch>"
        );
        assert_eq!(
            call("POST", &format!("/2020-05-31/distribution/{id}/invalidation"), &batch, None).status,
            201
        );
    }
    let again = "<InvalidationBatch><Paths><Quantity>1</Quantity><Items><Path>/other</Path></Items></Paths><CallerReference>a</CallerReference></InvalidationBatch>";
    let reused = call("POST", &format!("/2020-05-31/distribution/{id}/invalidation"), again, None);
    assert_eq!(field(&text(&reused), "Code"), "InvalidationBatchAlreadyExists");
    let page = text(&call(
        "GET",
        &format!("/2020-05-31/distribution/{id}/invalidation?MaxItems=2"),
        "",
        None,
    ));
    assert!(
        page.contains("<IsTruncated>true</IsTruncated>") && page.matches("<InvalidationSummary>").count() == 2,
        "{page}"
    );
    assert!(page.contains("<Status>Completed</Status>"));
}

/// A `keyfront serve` config with the control plane on (every request
/// accepted, as `accept_any_credentials` says): the file's behaviors keep
/// serving every Host that names no distribution, the API's distribution
/// serves its own.
#[test]
fn a_config_file_keeps_its_behaviors_beside_the_distributions_of_its_api() {
    let control = common::free_address();
    let settings = format!("control_listen: \"{control}\"\ncontrol_api: {{s3_origin: store, accept_any_credentials: true}}");
    let stack = common::Stack::start_configured("", "", &settings);
    common::wait_for(control);
    stack.put("/both/a.txt", "text/plain", b"from the bucket");
    let body = format!(
        "<DistributionConfig><CallerReference>both</CallerReference><Comment/><Enabled>true</Enabled><Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{}.s3.amazonaws.com</DomainName><OriginPath>/both</OriginPath></Origin></Items></Origins><DefaultCacheBehavior><TargetOriginId>o</TargetOriginId></DefaultCacheBehavior></DistributionConfig>",
        common::BUCKET
    );
    let created = request(control, "POST", "/2020-05-31/distribution", &[], body.as_bytes());
    assert_eq!(created.status, 201, "unsigned, accepted: {}", created.text());
    let domain = field(&created.text(), "DomainName");
    assert!(domain.ends_with(".cloudfront.localhost"), "no address pool: a name ({domain})");
    let by_distribution = request(stack.edge, "GET", "/a.txt", &[("Host", &domain)], b"");
    assert_eq!(
        (by_distribution.status, by_distribution.body.as_slice()),
        (200, &b"from the bucket"[..])
    );
    let by_file = stack.get(&stack.signed("/both/a.txt"));
    assert_eq!(
        (by_file.status, by_file.body.as_slice()),
        (200, &b"from the bucket"[..]),
        "the file's signed behavior"
    );
    let unsigned = stack.get("/both/a.txt");
    assert_eq!(unsigned.status, 403, "and its signature rule");
    assert_eq!(
        request(stack.edge, "GET", "/both/a.txt", &[("Host", &domain)], b"").status,
        404,
        "the distribution's own paths"
    );
}

/// CloudFront's names and quotas: an alternate domain name that another
/// distribution answers to (its DomainName included) is taken, and an
/// account holds at most 10 public keys.
#[test]
fn names_and_quotas_are_cloudfronts() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let (_, domain, _) = create_distribution(&setup, "first", "");
    let aliased = distribution_config("second", "media", &setup.group_id, "").replace(
        "<Comment>c</Comment>",
        &format!(
            "<Comment>c</Comment><Aliases><Quantity>1</Quantity><Items><CNAME>{}</CNAME></Items></Aliases>",
            domain.to_ascii_uppercase()
        ),
    );
    let answer = emulator.call("POST", "/2020-05-31/distribution", aliased.as_bytes(), None).unwrap();
    assert_eq!(answer.status, 409, "{}", text(&answer));
    assert!(text(&answer).contains("<Code>CNAMEAlreadyExists</Code>"), "{}", text(&answer));

    for i in 1..10 {
        let created = create_public_key(emulator, &format!("q{i}"), &format!("q{i}"));
        assert_eq!(created.status, 201, "key {} of 10: {}", i + 1, text(&created));
    }
    let refused = create_public_key(emulator, "q11", "q11");
    assert_eq!(refused.status, 400, "{}", text(&refused));
    assert!(text(&refused).contains("<Code>TooManyPublicKeys</Code>"), "{}", text(&refused));
}

/// An API call's status, body and ETag.
fn api(emulator: &Emulator, method: &str, path: &str, body: &str, if_match: Option<&str>) -> (u16, String, Option<String>) {
    let answer = emulator
        .call(method, &format!("/2020-05-31/{path}"), body.as_bytes(), if_match)
        .unwrap();
    (answer.status, text(&answer), answer.header("etag").map(str::to_owned))
}

fn cache_policy_body(name: &str, (min, default, max): (u64, u64, u64)) -> String {
    format!(
        "<CachePolicyConfig {NS}><Comment>c</Comment><Name>{name}</Name><MinTTL>{min}</MinTTL><DefaultTTL>{default}</DefaultTTL><MaxTTL>{max}</MaxTTL>\
         <ParametersInCacheKeyAndForwardedToOrigin><EnableAcceptEncodingGzip>false</EnableAcceptEncodingGzip><EnableAcceptEncodingBrotli>false</EnableAcceptEncodingBrotli>\
         <HeadersConfig><HeaderBehavior>none</HeaderBehavior></HeadersConfig><CookiesConfig><CookieBehavior>none</CookieBehavior></CookiesConfig>\
         <QueryStringsConfig><QueryStringBehavior>none</QueryStringBehavior></QueryStringsConfig></ParametersInCacheKeyAndForwardedToOrigin></CachePolicyConfig>"
    )
}

/// The managed cache policies are there from the start with their real ids
/// and names and cannot change; an account's own are made, changed under
/// `If-Match` and deleted as CloudFront's are; and a behavior's policy sets
/// how long its objects are kept: a changed object is seen at once through
/// a policy of TTL 0, not through CachingOptimized.
#[test]
fn cache_policies_are_cloudfronts_and_set_how_long_objects_are_kept() {
    const OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let call = |method: &str, path: &str, body: &str, if_match: Option<&str>| api(emulator, method, path, body, if_match);

    let (status, all, _) = call("GET", "cache-policy", "", None);
    assert_eq!(status, 200, "{all}");
    assert_eq!(field(&all, "Quantity"), "7");
    for (id, name) in [
        (OPTIMIZED, "Managed-CachingOptimized"),
        ("4135ea2d-6df8-44a3-9df3-4b5a84be39ad", "Managed-CachingDisabled"),
        (
            "b2884449-e4de-46a7-ac36-70bc7f1ddd6d",
            "Managed-CachingOptimizedForUncompressedObjects",
        ),
        ("08627262-05a9-4f76-9ded-b50ca2e3a84f", "Managed-Elemental-MediaPackage"),
        ("2e54312d-136d-493c-8eb9-b001f22f67d2", "Managed-Amplify"),
    ] {
        assert!(
            all.contains(&format!("<Id>{id}</Id>")) && all.contains(&format!("<Name>{name}</Name>")),
            "{name}"
        );
    }
    assert!(all.contains("<Type>managed</Type>") && !all.contains("<Type>custom</Type>"));
    let (_, custom, _) = call("GET", "cache-policy?Type=custom", "", None);
    assert_eq!(field(&custom, "Quantity"), "0");
    let (status, refused, _) = call("GET", "cache-policy?Type=everything", "", None);
    assert!(status == 400 && refused.contains("<Code>InvalidArgument</Code>"), "{refused}");

    let (status, optimized, etag) = call("GET", &format!("cache-policy/{OPTIMIZED}"), "", None);
    assert_eq!(status, 200);
    assert_eq!(
        (
            field(&optimized, "MinTTL"),
            field(&optimized, "DefaultTTL"),
            field(&optimized, "MaxTTL")
        ),
        ("1".into(), "86400".into(), "31536000".into())
    );
    let etag = etag.expect("an ETag");
    let (_, config, _) = call("GET", &format!("cache-policy/{OPTIMIZED}/config"), "", None);
    assert!(config.contains("<CachePolicyConfig") && !config.contains("<Id>"), "{config}");
    let changed = cache_policy_body("Managed-CachingOptimized", (0, 0, 0));
    let (status, refused, _) = call("PUT", &format!("cache-policy/{OPTIMIZED}"), &changed, Some(&etag));
    assert!(status == 400 && refused.contains("<Code>IllegalUpdate</Code>"), "{refused}");
    let (status, refused, _) = call("DELETE", &format!("cache-policy/{OPTIMIZED}"), "", Some(&etag));
    assert!(status == 400 && refused.contains("<Code>IllegalDelete</Code>"), "{refused}");

    let (status, created, etag) = call("POST", "cache-policy", &cache_policy_body("fresh", (0, 5, 10)), None);
    assert_eq!(status, 201, "{created}");
    let fresh = field(&created, "Id");
    for name in ["fresh", "Managed-CachingDisabled"] {
        let (status, refused, _) = call("POST", "cache-policy", &cache_policy_body(name, (0, 0, 0)), None);
        assert!(
            status == 409 && refused.contains("<Code>CachePolicyAlreadyExists</Code>"),
            "{name}: {refused}"
        );
    }
    let no_store = cache_policy_body("fresh", (0, 0, 0));
    let path = format!("cache-policy/{fresh}");
    let (status, refused, _) = call("PUT", &path, &no_store, None);
    assert!(status == 400 && refused.contains("<Code>InvalidIfMatchVersion</Code>"), "{refused}");
    let (status, _, _) = call("PUT", &path, &no_store, Some("EWRONG"));
    assert_eq!(status, 412);
    let (status, updated, etag) = call("PUT", &path, &no_store, etag.as_deref());
    assert_eq!(status, 200, "{updated}");
    assert_eq!(field(&updated, "DefaultTTL"), "0");
    let (_, custom, _) = call("GET", "cache-policy?Type=custom", "", None);
    assert!(
        field(&custom, "Quantity") == "1" && custom.contains("<Type>custom</Type>"),
        "{custom}"
    );

    let behaviors = |policy: &str| {
        format!(
            "<CacheBehaviors><Quantity>2</Quantity><Items>\
             <CacheBehavior><PathPattern>fresh/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><CachePolicyId>{policy}</CachePolicyId></CacheBehavior>\
             <CacheBehavior><PathPattern>public/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><CachePolicyId>{OPTIMIZED}</CachePolicyId></CacheBehavior>\
             </Items></CacheBehaviors>"
        )
    };
    let config = |reference: &str, policy: &str| {
        let plain = distribution_config(reference, &emulator.bucket, &setup.group_id, "");
        let start = plain.find("<CacheBehaviors>").unwrap();
        let end = plain.find("</CacheBehaviors>").unwrap() + "</CacheBehaviors>".len();
        format!("{}{}{}", &plain[..start], behaviors(policy), &plain[end..])
    };
    let (status, refused, _) = call("POST", "distribution", &config("unknown", "no-such-policy"), None);
    assert!(status == 404 && refused.contains("<Code>NoSuchCachePolicy</Code>"), "{refused}");
    let (status, created, _) = call("POST", "distribution", &config("policies", &fresh), None);
    assert_eq!(status, 201, "{created}");
    let domain = field(&created, "DomainName");

    for folder in ["fresh", "public"] {
        put(emulator, &format!("/prefix/{folder}/a.txt"), b"first");
        let answer = get(emulator.edge, &format!("http://{domain}/{folder}/a.txt"));
        assert_eq!((answer.status, answer.text()), (200, "first".into()), "{folder}");
        put(emulator, &format!("/prefix/{folder}/a.txt"), b"second");
    }
    let answer = get(emulator.edge, &format!("http://{domain}/fresh/a.txt"));
    assert_eq!(answer.text(), "second", "a policy of TTL 0 asks the origin each time");
    let answer = get(emulator.edge, &format!("http://{domain}/public/a.txt"));
    assert_eq!(answer.text(), "first", "CachingOptimized keeps an object a day");

    let (status, refused, _) = call("DELETE", &path, "", etag.as_deref());
    assert!(status == 409 && refused.contains("<Code>CachePolicyInUse</Code>"), "{refused}");
}

/// Response headers policies lay their headers over every answer of their
/// behavior (misses, hits, 206s and errors alike) and answer CORS
/// preflights at the edge; origin request policies are there with their
/// managed ids; a behavior naming a policy that is not there is refused.
#[test]
fn response_headers_policies_reach_every_answer_of_their_behavior() {
    const SECURITY: &str = "67f7725c-6f97-4210-82d7-5512b31e9d03";
    const CORS_S3: &str = "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf";
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let call = |method: &str, path: &str, body: &str, if_match: Option<&str>| api(emulator, method, path, body, if_match);
    let (status, managed, _) = call("GET", "response-headers-policy?Type=managed", "", None);
    assert_eq!(status, 200, "{managed}");
    assert_eq!(field(&managed, "Quantity"), "5");
    assert!(managed.contains(&format!("<Id>{SECURITY}</Id>")) && managed.contains("<Name>Managed-SecurityHeadersPolicy</Name>"));
    let (_, managed, _) = call("GET", "origin-request-policy", "", None);
    assert!(
        managed.contains(&format!("<Id>{CORS_S3}</Id>")) && managed.contains("<Name>Managed-CORS-S3Origin</Name>"),
        "{managed}"
    );

    let served = format!(
        "<ResponseHeadersPolicyConfig {NS}><Comment>c</Comment><Name>served</Name>\
         <CorsConfig><AccessControlAllowCredentials>false</AccessControlAllowCredentials>\
         <AccessControlAllowHeaders><Quantity>1</Quantity><Items><Header>Range</Header></Items></AccessControlAllowHeaders>\
         <AccessControlAllowMethods><Quantity>2</Quantity><Items><Method>GET</Method><Method>HEAD</Method></Items></AccessControlAllowMethods>\
         <AccessControlAllowOrigins><Quantity>1</Quantity><Items><Origin>https://app.example</Origin></Items></AccessControlAllowOrigins>\
         <AccessControlMaxAgeSec>300</AccessControlMaxAgeSec><OriginOverride>true</OriginOverride></CorsConfig>\
         <CustomHeadersConfig><Quantity>1</Quantity><Items><ResponseHeadersPolicyCustomHeader><Header>X-Served-By</Header><Value>keyfront</Value><Override>true</Override></ResponseHeadersPolicyCustomHeader></Items></CustomHeadersConfig>\
         <RemoveHeadersConfig><Quantity>1</Quantity><Items><ResponseHeadersPolicyRemoveHeader><Header>Last-Modified</Header></ResponseHeadersPolicyRemoveHeader></Items></RemoveHeadersConfig>\
         <SecurityHeadersConfig><FrameOptions><FrameOption>DENY</FrameOption><Override>true</Override></FrameOptions></SecurityHeadersConfig>\
         </ResponseHeadersPolicyConfig>"
    );
    let (status, created, etag) = call("POST", "response-headers-policy", &served, None);
    assert_eq!(status, 201, "{created}");
    let served_id = field(&created, "Id");
    let (status, refused, _) = call("POST", "response-headers-policy", &served, None);
    assert!(
        status == 409 && refused.contains("<Code>ResponseHeadersPolicyAlreadyExists</Code>"),
        "{refused}"
    );

    let config = |reference: &str, default_policy: &str, public_policy: &str, request_policy: &str| {
        distribution_config(reference, &emulator.bucket, &setup.group_id, "")
            .replace(
                "<MinTTL>0</MinTTL></DefaultCacheBehavior>",
                &format!("<MinTTL>0</MinTTL><ResponseHeadersPolicyId>{default_policy}</ResponseHeadersPolicyId></DefaultCacheBehavior>"),
            )
            .replace(
                "<MinTTL>0</MinTTL></CacheBehavior>",
                &format!(
                    "<MinTTL>0</MinTTL><ResponseHeadersPolicyId>{public_policy}</ResponseHeadersPolicyId><OriginRequestPolicyId>{request_policy}</OriginRequestPolicyId></CacheBehavior>"
                ),
            )
    };
    for (reference, body, code) in [
        ("a", config("a", "nothing", &served_id, CORS_S3), "NoSuchResponseHeadersPolicy"),
        ("b", config("b", SECURITY, &served_id, "nothing"), "NoSuchOriginRequestPolicy"),
    ] {
        let (status, refused, _) = call("POST", "distribution", &body, None);
        assert!(
            status == 404 && refused.contains(&format!("<Code>{code}</Code>")),
            "{reference}: {refused}"
        );
    }
    let (status, created, _) = call("POST", "distribution", &config("c", SECURITY, &served_id, CORS_S3), None);
    assert_eq!(status, 201, "{created}");
    let domain = field(&created, "DomainName");
    put(emulator, "/prefix/public/a.txt", b"0123456789");

    let fetch = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Host", domain.as_str())];
        all.extend_from_slice(headers);
        request(emulator.edge, method, path, &all, b"")
    };
    let app = ("Origin", "https://app.example");
    for (what, answer, status) in [
        ("a miss", fetch("GET", "/public/a.txt", &[app]), 200),
        ("a hit", fetch("GET", "/public/a.txt", &[app]), 200),
        ("a range", fetch("GET", "/public/a.txt", &[app, ("Range", "bytes=2-4")]), 206),
        ("an error", fetch("GET", "/public/missing.txt", &[app]), 404),
    ] {
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert_eq!(answer.header("x-served-by"), Some("keyfront"), "{what}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(answer.header("last-modified"), None, "{what}");
        assert_eq!(answer.header("access-control-allow-origin"), Some("https://app.example"), "{what}");
        assert_eq!(
            answer.header("strict-transport-security"),
            None,
            "{what}: the other behavior's policy"
        );
    }
    assert_eq!(fetch("GET", "/public/a.txt", &[("Range", "bytes=2-4")]).text(), "234");
    let preflight = fetch(
        "OPTIONS",
        "/public/a.txt",
        &[
            app,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, HEAD"));
    assert_eq!(preflight.header("access-control-max-age"), Some("300"));
    assert_eq!(preflight.header("x-served-by"), Some("keyfront"));
    let foreign = fetch(
        "OPTIONS",
        "/public/a.txt",
        &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    let unsigned = fetch("GET", "/a.txt", &[]);
    assert_eq!(unsigned.status, 403);
    assert_eq!(unsigned.header("strict-transport-security"), Some("max-age=31536000"));
    assert_eq!(unsigned.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(unsigned.header("x-served-by"), None);
    put(emulator, "/prefix/b.txt", b"b");
    let kept = get(emulator.edge, &signed(&setup, &format!("http://{domain}/b.txt")));
    assert_eq!((kept.status, kept.text()), (200, "b".into()));
    assert!(kept.header("last-modified").is_some(), "removed only where a policy says so");
    assert_eq!(kept.header("x-frame-options"), Some("SAMEORIGIN"));

    let (status, refused, _) = call("DELETE", &format!("response-headers-policy/{served_id}"), "", etag.as_deref());
    assert!(
        status == 409 && refused.contains("<Code>ResponseHeadersPolicyInUse</Code>"),
        "{refused}"
    );
}

/// The refusals SDK users match on are worded as CloudFront words them.
#[test]
fn refusals_are_worded_as_cloudfront_words_them() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let message = |(status, body, _): (u16, String, Option<String>), code: &str| {
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{status} {body}");
        field(&body, "Message").replace("&apos;", "'")
    };
    let (id, _, etag) = create_distribution(&setup, "worded", "");
    assert_eq!(
        message(api(emulator, "GET", "distribution/ENOSUCHDIST", "", None), "NoSuchDistribution"),
        "The specified distribution does not exist."
    );
    let config = distribution_config("worded", &emulator.bucket, &setup.group_id, "");
    let path = format!("distribution/{id}/config");
    assert_eq!(
        message(api(emulator, "PUT", &path, &config, None), "InvalidIfMatchVersion"),
        "The If-Match version is missing or not valid for the resource."
    );
    assert_eq!(
        message(api(emulator, "PUT", &path, &config, Some("EWRONG")), "PreconditionFailed"),
        "The request failed because it didn't meet the preconditions in one or more request-header fields."
    );
    let aliases = config.replace(
        "<Comment>c</Comment>",
        "<Comment>c</Comment><Aliases><Quantity>2</Quantity><Items><CNAME>a.example.com</CNAME></Items></Aliases>",
    );
    assert_eq!(
        message(api(emulator, "PUT", &path, &aliases, Some(&etag)), "InconsistentQuantities"),
        "The specified quantity of Aliases (2) does not match the actual quantity supplied (1)."
    );
    let nowhere = config.replace("<TargetOriginId>o</TargetOriginId>", "<TargetOriginId>elsewhere</TargetOriginId>");
    assert_eq!(
        message(api(emulator, "PUT", &path, &nowhere, Some(&etag)), "NoSuchOrigin"),
        "One or more of your origins or origin groups do not exist."
    );
    let not_a_bucket = config.replace(".s3.amazonaws.com", ".example.com");
    assert_eq!(
        message(api(emulator, "PUT", &path, &not_a_bucket, Some(&etag)), "InvalidArgument"),
        "The parameter Origin DomainName does not refer to a valid S3 bucket."
    );
    let reused = config.replace("<Comment>c</Comment>", "<Comment>another</Comment>");
    assert_eq!(
        message(api(emulator, "POST", "distribution", &reused, None), "DistributionAlreadyExists"),
        format!(
            "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: {id}"
        )
    );
}

/// Legacy origin access identities are made, read, listed, changed and
/// deleted as CloudFront's are; an S3 origin naming one is served like one
/// with an origin access control, and one naming none is refused.
#[test]
fn origin_access_identities_are_cloudfronts_and_serve_their_origins() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let body = |reference: &str, comment: &str| {
        format!(
            "<CloudFrontOriginAccessIdentityConfig {NS}><CallerReference>{reference}</CallerReference><Comment>{comment}</Comment></CloudFrontOriginAccessIdentityConfig>"
        )
    };
    let create = |comment: &str| api(emulator, "POST", "origin-access-identity/cloudfront", &body("oai-1", comment), None);
    let (status, created, etag) = create("legacy");
    assert_eq!(status, 201, "{created}");
    let id = field(&created, "Id");
    let canonical = field(&created, "S3CanonicalUserId");
    assert!(id.starts_with('E') && id.len() == 14, "{id}");
    assert!(
        canonical.len() == 96 && canonical.chars().all(|c| c.is_ascii_hexdigit()),
        "{canonical}"
    );
    let (status, again, _) = create("legacy");
    assert!(
        status == 201 && field(&again, "Id") == id,
        "the same request again answers what it made"
    );
    let (status, refused, _) = create("other");
    assert!(
        status == 409 && refused.contains("CloudFrontOriginAccessIdentityAlreadyExists"),
        "{refused}"
    );
    let (_, listed, _) = api(emulator, "GET", "origin-access-identity/cloudfront", "", None);
    assert!(
        listed.contains("<CloudFrontOriginAccessIdentityList") && listed.contains(&canonical),
        "{listed}"
    );
    assert_eq!(field(&listed, "IsTruncated"), "false");
    let path = format!("origin-access-identity/cloudfront/{id}");
    let (status, changed, etag) = api(
        emulator,
        "PUT",
        &format!("{path}/config"),
        &body("oai-1", "renamed"),
        etag.as_deref(),
    );
    assert!(status == 200 && field(&changed, "Comment") == "renamed", "{changed}");
    let (_, config, _) = api(emulator, "GET", &format!("{path}/config"), "", None);
    assert_eq!(field(&config, "Comment"), "renamed");

    let origin = |named: &str| {
        distribution_config("oai-dist", &emulator.bucket, &setup.group_id, "").replace(
            "<S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig>",
            &format!("<S3OriginConfig><OriginAccessIdentity>{named}</OriginAccessIdentity></S3OriginConfig>"),
        )
    };
    for named in ["origin-access-identity/cloudfront/ENOSUCHIDENTITY", "not-an-identity"] {
        let (status, refused, _) = api(emulator, "POST", "distribution", &origin(named), None);
        assert!(
            status == 400 && refused.contains("<Code>InvalidOriginAccessIdentity</Code>"),
            "{named}: {refused}"
        );
    }
    let (status, created, _) = api(
        emulator,
        "POST",
        "distribution",
        &origin(&format!("origin-access-identity/cloudfront/{id}")),
        None,
    );
    assert_eq!(status, 201, "{created}");
    put(emulator, "/prefix/public/oai.txt", b"through an identity");
    let answer = get(emulator.edge, &format!("http://{}/public/oai.txt", field(&created, "DomainName")));
    assert_eq!((answer.status, answer.text()), (200, "through an identity".into()));
    let (status, refused, _) = api(emulator, "DELETE", &path, "", etag.as_deref());
    assert!(
        status == 409 && refused.contains("CloudFrontOriginAccessIdentityInUse"),
        "{refused}"
    );
}

/// Fields a client leaves out read back with CloudFront's defaults, as
/// SDK code that reads a distribution back expects them.
#[test]
fn omitted_fields_read_back_with_cloudfronts_defaults() {
    let setup = start(EmulatorOptions::default());
    let (id, _, _) = create_distribution(&setup, "defaults", "");
    let (status, config, _) = api(&setup.emulator, "GET", &format!("distribution/{id}/config"), "", None);
    assert_eq!(status, 200);
    for (name, default) in [
        ("PriceClass", "PriceClass_All"),
        ("HttpVersion", "http2"),
        ("IsIPV6Enabled", "true"),
        ("ConnectionAttempts", "3"),
        ("ConnectionTimeout", "10"),
        ("Compress", "false"),
        ("SmoothStreaming", "false"),
    ] {
        assert_eq!(field(&config, name), default, "{name}");
    }
    for empty in ["WebACLId", "FieldLevelEncryptionId", "DefaultRootObject"] {
        assert!(config.contains(&format!("<{empty}></{empty}>")), "{empty} in {config}");
    }
    assert!(config.contains("<Logging><Enabled>false</Enabled>"), "{config}");
    assert!(config.contains("<OriginShield><Enabled>false</Enabled></OriginShield>"), "{config}");
    assert!(config.contains("<CustomHeaders><Quantity>0</Quantity></CustomHeaders>"), "{config}");
}

/// A distribution's monitoring subscription is accepted, stored, read back
/// and deleted as CloudFront's; a malformed one is refused.
#[test]
fn monitoring_subscriptions_are_stored_and_answered() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let (id, _, _) = create_distribution(&setup, "monitored", "");
    let path = format!("distributions/{id}/monitoring-subscription");
    let body = |status: &str| {
        format!(
            "<MonitoringSubscription {NS}><RealtimeMetricsSubscriptionConfig><RealtimeMetricsSubscriptionStatus>{status}</RealtimeMetricsSubscriptionStatus></RealtimeMetricsSubscriptionConfig></MonitoringSubscription>"
        )
    };
    let (status, missing, _) = api(emulator, "GET", &path, "", None);
    assert!(status == 404 && missing.contains("NoSuchMonitoringSubscription"), "{missing}");
    let (status, refused, _) = api(emulator, "POST", &path, &body("Sometimes"), None);
    assert!(status == 400 && refused.contains("InvalidArgument"), "{refused}");
    let (status, created, _) = api(emulator, "POST", &path, &body("Enabled"), None);
    assert_eq!(status, 200, "{created}");
    let (status, again, _) = api(emulator, "POST", &path, &body("Disabled"), None);
    assert!(status == 409 && again.contains("MonitoringSubscriptionAlreadyExists"), "{again}");
    let (status, read, _) = api(emulator, "GET", &path, "", None);
    assert!(
        status == 200 && field(&read, "RealtimeMetricsSubscriptionStatus") == "Enabled",
        "{read}"
    );
    let (status, _, _) = api(emulator, "GET", "distributions/ENOSUCHDIST/monitoring-subscription", "", None);
    assert_eq!(status, 404);
    let (status, _, _) = api(emulator, "DELETE", &path, "", None);
    assert_eq!(status, 200);
    let (status, _, _) = api(emulator, "GET", &path, "", None);
    assert_eq!(status, 404);
}

/// `Restrictions` by the viewer's country, which the emulator reads from
/// `CloudFront-Viewer-Country`: a whitelist serves its countries only (an
/// unknown or malformed country is refused, and an object cached for one
/// country is never served to a refused one), a blacklist serves all but
/// its own, a signature is still needed inside a served country, and a
/// restriction CloudFront would refuse is refused.
#[test]
fn geo_restrictions_serve_only_the_countries_they_name() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    put(emulator, "/prefix/public/hello.txt", b"hello from the bucket");
    put(emulator, "/prefix/film.mp4", b"signed film bytes");
    let restriction = |kind: &str, codes: &[&str]| {
        let items: String = codes.iter().map(|code| format!("<Location>{code}</Location>")).collect();
        format!(
            "<Restrictions><GeoRestriction><RestrictionType>{kind}</RestrictionType><Quantity>{}</Quantity><Items>{items}</Items></GeoRestriction></Restrictions>",
            codes.len()
        )
    };
    let from = |url: &str, country: Option<&str>| {
        let host = url.strip_prefix("http://").unwrap().split('/').next().unwrap();
        let mut headers = vec![("Host", host)];
        headers.extend(country.map(|country| ("CloudFront-Viewer-Country", country)));
        request(emulator.edge, "GET", target(url), &headers, b"")
    };
    let blocked = |answer: &common::Response, what: &str| {
        assert_eq!(answer.status, 403, "{what}");
        assert!(
            answer.text().contains("configured to block access from your country"),
            "{what}: {}",
            answer.text()
        );
        assert!(
            !answer.text().contains("hello") && !answer.text().contains("film"),
            "{what}: no object byte"
        );
    };

    let (_, only, _) = create_distribution(&setup, "only-de-fr", &restriction("whitelist", &["DE", "FR"]));
    let hello = format!("http://{only}/public/hello.txt");
    for country in ["DE", "FR", "de"] {
        let served = from(&hello, Some(country));
        assert_eq!((served.status, served.text().as_str()), (200, "hello from the bucket"), "{country}");
    }
    // Cached now; refused countries still get nothing of it.
    for country in [Some("US"), None, Some("DEU"), Some("D1"), Some("")] {
        blocked(&from(&hello, country), &format!("{country:?} on a whitelist"));
    }
    let unsigned = from(&format!("http://{only}/film.mp4"), Some("DE"));
    assert!(
        unsigned.status == 403 && !unsigned.text().contains("film"),
        "a served country still needs a signature"
    );
    let film = signed(&setup, &format!("http://{only}/film.mp4"));
    assert_eq!(from(&film, Some("FR")).text(), "signed film bytes");
    blocked(&from(&film, Some("US")), "a signature does not open a refused country");

    let (_, except, _) = create_distribution(&setup, "except-us", &restriction("blacklist", &["US"]));
    let hello = format!("http://{except}/public/hello.txt");
    blocked(&from(&hello, Some("US")), "US on a blacklist");
    for country in [Some("DE"), None] {
        let served = from(&hello, country);
        assert_eq!(
            (served.status, served.text().as_str()),
            (200, "hello from the bucket"),
            "{country:?}"
        );
    }

    for (kind, codes) in [
        ("sometimes", &["DE"][..]),
        ("whitelist", &[][..]),
        ("blacklist", &[][..]),
        ("none", &["DE"][..]),
        ("whitelist", &["de"][..]),
        ("whitelist", &["DEU"][..]),
        ("blacklist", &["D1"][..]),
    ] {
        let body = distribution_config("bad-geo", &emulator.bucket, &setup.group_id, &restriction(kind, codes));
        let refused = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
        assert_eq!(
            (refused.status, field(&text(&refused), "Code")),
            (400, "InvalidArgument".to_owned()),
            "{kind} {codes:?}"
        );
    }
}

/// A cache policy's `QueryStringsConfig` makes the cache key: the
/// parameters it names, in any order and spelling, are one object and go
/// to the origin; others are neither keyed nor forwarded; a signed URL's
/// own parameters never enter the key (another signature of the same URL is
/// a hit), while the signature still covers the query; and S3's own
/// parameters (`response-*`, `versionId`, ...) never reach the bucket, even
/// under `all`.
#[test]
fn a_cache_policys_query_strings_are_the_cache_key() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let call = |method: &str, path: &str, body: &str| api(emulator, method, path, body, None);
    let policy = |name: &str, query: &str| {
        let body = cache_policy_body(name, (0, 3600, 3600)).replace("<QueryStringBehavior>none</QueryStringBehavior>", query);
        let (status, created, _) = call("POST", "cache-policy", &body);
        assert_eq!(status, 201, "{created}");
        field(&created, "Id")
    };
    let widths = policy(
        "widths",
        "<QueryStringBehavior>whitelist</QueryStringBehavior><QueryStrings><Quantity>1</Quantity><Items><Name>w</Name></Items></QueryStrings>",
    );
    let everything = policy("everything", "<QueryStringBehavior>all</QueryStringBehavior>");
    let group = &setup.group_id;
    let behaviors = format!(
        "<CacheBehaviors><Quantity>3</Quantity><Items>\
         <CacheBehavior><PathPattern>img/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><CachePolicyId>{widths}</CachePolicyId></CacheBehavior>\
         <CacheBehavior><PathPattern>all/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><CachePolicyId>{everything}</CachePolicyId></CacheBehavior>\
         <CacheBehavior><PathPattern>signed/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><TrustedKeyGroups><Enabled>true</Enabled><Quantity>1</Quantity><Items><KeyGroup>{group}</KeyGroup></Items></TrustedKeyGroups><CachePolicyId>{everything}</CachePolicyId></CacheBehavior>\
         </Items></CacheBehaviors>"
    );
    let plain = distribution_config("queries", &emulator.bucket, group, "");
    let (start, end) = (
        plain.find("<CacheBehaviors>").unwrap(),
        plain.find("</CacheBehaviors>").unwrap() + 17,
    );
    let (status, created, _) = call("POST", "distribution", &format!("{}{behaviors}{}", &plain[..start], &plain[end..]));
    assert_eq!(status, 201, "{created}");
    let base = format!("http://{}", field(&created, "DomainName"));
    let fetch = |target: &str| {
        let answer = get(emulator.edge, &format!("{base}{target}"));
        assert_eq!(answer.status, 200, "{target}: {}", answer.text());
        answer
    };

    put(emulator, "/prefix/img/a.png", b"first");
    assert_eq!(fetch("/img/a.png?w=100").text(), "first");
    // A slice is stored as its fill ends, which may be just after the answer.
    let hit = |target: &str| get(emulator.edge, target).header("x-cache") == Some("Hit from keyfront");
    common::wait_until("the variant kept", || hit(&format!("{base}/img/a.png?w=100")));
    put(emulator, "/prefix/img/a.png", b"second");
    for kept in ["/img/a.png?w=100", "/img/a.png?x=9&w=100", "/img/a.png?w=%31%30%30&y"] {
        let answer = fetch(kept);
        assert_eq!(answer.text(), "first", "{kept}: the same key");
        assert_eq!(answer.header("x-cache"), Some("Hit from keyfront"), "{kept}");
    }
    for other in ["/img/a.png?w=200", "/img/a.png", "/img/a.png?W=100"] {
        assert_eq!(fetch(other).text(), "second", "{other}: another key");
    }

    put(emulator, "/prefix/all/doc.txt", b"one");
    assert_eq!(fetch("/all/doc.txt?b=2&a=1").text(), "one");
    put(emulator, "/prefix/all/doc.txt", b"two");
    for same in [
        "/all/doc.txt?a=1&b=2",
        "/all/doc.txt?a=1&b=2&response-content-type=text/html",
        "/all/doc.txt?versionId=null&a=1&x-id=GetObjectAcl&b=2&acl",
    ] {
        let answer = fetch(same);
        assert_eq!(answer.text(), "one", "{same}: S3's own parameters are not keyed");
        assert_ne!(answer.header("content-type"), Some("text/html"), "{same}: nor sent to the bucket");
    }
    assert_eq!(fetch("/all/doc.txt?a=1").text(), "two");

    put(emulator, "/prefix/signed/page.txt", b"page one");
    let url = format!("{base}/signed/page.txt?page=1");
    assert_eq!(get(emulator.edge, &signed(&setup, &url)).text(), "page one");
    common::wait_until("the signed page kept", || hit(&signed(&setup, &url)));
    put(emulator, "/prefix/signed/page.txt", b"page two");
    let resigned = setup.signer.sign_url(&url, &PolicySpec::Canned { expires: now() + 900 });
    let again = get(emulator.edge, &resigned);
    assert_eq!(
        (again.text(), again.header("x-cache")),
        ("page one".into(), Some("Hit from keyfront")),
        "signing parameters are not keyed"
    );
    let tampered = get(emulator.edge, &signed(&setup, &url).replace("page=1", "page=2"));
    assert!(
        tampered.status == 403 && !tampered.text().contains("page"),
        "the signature covers the query: {}",
        tampered.text()
    );
    assert_eq!(
        get(emulator.edge, &signed(&setup, &format!("{base}/signed/page.txt?page=2"))).text(),
        "page two"
    );
}

/// With an HTTPS edge (`tls`), a behavior's `ViewerProtocolPolicy` applies
/// to plain-HTTP viewers as CloudFront's: `redirect-to-https` answers 301 to
/// the same URL on the HTTPS edge (query kept, no byte of the object),
/// `https-only` 403, `allow-all` serves; over HTTPS each serves, with the
/// certificate the emulator made for the distributions' addresses. A policy
/// CloudFront does not know is refused.
#[test]
fn viewer_protocol_policies_apply_on_an_https_edge() {
    let setup = start(EmulatorOptions {
        tls: Some("127.0.0.1:0".parse().unwrap()),
        ..EmulatorOptions::default()
    });
    let emulator = &setup.emulator;
    let (https, certificate) = emulator.tls.clone().expect("an HTTPS edge");
    put(emulator, "/prefix/public/a.txt", b"public bytes");
    put(emulator, "/prefix/secure/b.txt", b"secure bytes");
    put(emulator, "/prefix/open/c.txt", b"open bytes");
    let behavior = |pattern: &str, policy: &str| {
        format!(
            "<CacheBehavior><PathPattern>{pattern}</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>{policy}</ViewerProtocolPolicy><MinTTL>0</MinTTL></CacheBehavior>"
        )
    };
    let with_behaviors = |reference: &str, policy: &str| {
        let plain = distribution_config(reference, &emulator.bucket, &setup.group_id, "");
        let (start, end) = (
            plain.find("<CacheBehaviors>").unwrap(),
            plain.find("</CacheBehaviors>").unwrap() + 17,
        );
        let behaviors = format!(
            "<CacheBehaviors><Quantity>3</Quantity><Items>{}{}{}</Items></CacheBehaviors>",
            behavior("public/*", policy),
            behavior("secure/*", "https-only"),
            behavior("open/*", "allow-all")
        );
        format!("{}{behaviors}{}", &plain[..start], &plain[end..])
    };
    let refused = emulator
        .call(
            "POST",
            "/2020-05-31/distribution",
            with_behaviors("bad", "sometimes").as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(
        (refused.status, field(&text(&refused), "Code")),
        (400, "InvalidArgument".to_owned())
    );
    let created = emulator
        .call(
            "POST",
            "/2020-05-31/distribution",
            with_behaviors("tls", "redirect-to-https").as_bytes(),
            None,
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    let host = domain.split(':').next().unwrap().to_owned();
    let over_https = |path: &str| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--cacert", certificate.to_str().unwrap(), "-w", "\n%{http_code}"])
            .arg(format!("https://{host}:{}{path}", https.port()))
            .output()
            .expect("curl (scripts/ensure-deps test installs it)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "curl {path}: {}", String::from_utf8_lossy(&output.stderr));
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };

    for method in ["GET", "HEAD"] {
        let redirected = request(emulator.edge, method, "/public/a.txt?lang=fr", &[("Host", domain.as_str())], b"");
        assert_eq!(redirected.status, 301, "{method}");
        assert_eq!(
            redirected.header("location"),
            Some(format!("https://{host}:{}/public/a.txt?lang=fr", https.port()).as_str()),
            "{method}"
        );
        assert!(redirected.body.is_empty(), "{method}: no byte of the object");
    }
    assert_eq!(over_https("/public/a.txt?lang=fr"), ("200".into(), "public bytes".into()));
    let refused = get(emulator.edge, &format!("http://{domain}/secure/b.txt"));
    assert!(
        refused.status == 403 && !refused.text().contains("secure bytes"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("HTTPS only"), "{}", refused.text());
    assert_eq!(over_https("/secure/b.txt"), ("200".into(), "secure bytes".into()));
    assert_eq!(get(emulator.edge, &format!("http://{domain}/open/c.txt")).text(), "open bytes");
    assert_eq!(over_https("/open/c.txt"), ("200".into(), "open bytes".into()));
}

/// A response headers policy's `ServerTimingHeadersConfig` adds the edge's
/// `Server-Timing` metrics (the cache's result, the time to the first
/// byte) to the sampled share of its behavior's answers: all at 100, none
/// at 0; a rate that is no percentage is refused.
#[test]
fn server_timing_reaches_the_sampled_share_of_answers() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    let policy = |name: &str, timing: &str| {
        format!(
            "<ResponseHeadersPolicyConfig {NS}><Comment>c</Comment><Name>{name}</Name><ServerTimingHeadersConfig>{timing}</ServerTimingHeadersConfig></ResponseHeadersPolicyConfig>"
        )
    };
    for bad in [
        "<Enabled>true</Enabled><SamplingRate>101</SamplingRate>",
        "<Enabled>true</Enabled><SamplingRate>1.23456</SamplingRate>",
        "<Enabled>true</Enabled><SamplingRate>-1</SamplingRate>",
        "<Enabled>true</Enabled><SamplingRate>all</SamplingRate>",
        "<Enabled>true</Enabled>",
    ] {
        let (status, refused, _) = api(emulator, "POST", "response-headers-policy", &policy("bad", bad), None);
        assert!(
            status == 400 && refused.contains("<Code>InvalidArgument</Code>"),
            "{bad}: {refused}"
        );
    }
    let create = |name: &str, rate: &str| {
        let body = policy(name, &format!("<Enabled>true</Enabled><SamplingRate>{rate}</SamplingRate>"));
        let (status, created, _) = api(emulator, "POST", "response-headers-policy", &body, None);
        assert_eq!(status, 201, "{created}");
        field(&created, "Id")
    };
    let (every, none) = (create("every", "100"), create("none", "0.0"));
    let body = distribution_config("timed", &emulator.bucket, &setup.group_id, "")
        .replace(
            "<MinTTL>0</MinTTL></DefaultCacheBehavior>",
            &format!("<MinTTL>0</MinTTL><ResponseHeadersPolicyId>{none}</ResponseHeadersPolicyId></DefaultCacheBehavior>"),
        )
        .replace(
            "<MinTTL>0</MinTTL></CacheBehavior>",
            &format!("<MinTTL>0</MinTTL><ResponseHeadersPolicyId>{every}</ResponseHeadersPolicyId></CacheBehavior>"),
        );
    let (status, created, _) = api(emulator, "POST", "distribution", &body, None);
    assert_eq!(status, 201, "{created}");
    let domain = field(&created, "DomainName");
    put(emulator, "/prefix/public/a.txt", b"timed bytes");
    put(emulator, "/prefix/film.mp4", b"signed bytes");

    let timing = |answer: &common::Response| answer.header("server-timing").map(str::to_owned);
    let miss = get(emulator.edge, &format!("http://{domain}/public/a.txt"));
    let miss_timing = timing(&miss).expect("Server-Timing on a miss");
    assert!(miss_timing.starts_with("cdn-cache-miss,cdn-downstream-fbl;dur="), "{miss_timing}");
    // The miss's slice is stored as its fill ends, which may be just after
    // the answer: ask until the edge answers from its cache.
    let mut hit = get(emulator.edge, &format!("http://{domain}/public/a.txt"));
    common::wait_until("a hit", || {
        hit = get(emulator.edge, &format!("http://{domain}/public/a.txt"));
        hit.header("x-cache") == Some("Hit from keyfront")
    });
    assert_eq!(hit.text(), "timed bytes");
    assert!(
        timing(&hit).is_some_and(|t| t.starts_with("cdn-cache-hit,cdn-downstream-fbl;dur=")),
        "{:?}",
        timing(&hit)
    );
    let ranged = request(
        emulator.edge,
        "GET",
        "/public/a.txt",
        &[("Host", domain.as_str()), ("Range", "bytes=0-4")],
        b"",
    );
    assert_eq!((ranged.status, ranged.text().as_str()), (206, "timed"));
    assert!(
        timing(&ranged).is_some_and(|t| t.starts_with("cdn-cache-hit,")),
        "{:?}",
        timing(&ranged)
    );
    let missing = get(emulator.edge, &format!("http://{domain}/public/none.txt"));
    assert!(
        missing.status == 404 && timing(&missing).is_some(),
        "errors too: {:?}",
        timing(&missing)
    );
    let unsampled = get(emulator.edge, &signed(&setup, &format!("http://{domain}/film.mp4")));
    assert_eq!(unsampled.text(), "signed bytes");
    assert_eq!(timing(&unsampled), None, "a rate of 0 samples nothing");
}

/// moto's server mode resets the server between tests: the emulator
/// answers its `POST /moto-api/reset` by deleting every resource, but only
/// for a caller the API authenticates (unsigned only with
/// `--accept-any-credentials`, as moto sends it); nothing else is reset.
#[test]
fn a_reset_deletes_every_resource_for_an_authenticated_caller_only() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    put(emulator, "/prefix/public/kept.txt", b"the bucket is not the API's");
    let (_, domain, _) = create_distribution(&setup, "before-reset", "");
    let count = |resource: &str| {
        let listed = emulator.call("GET", &format!("/2020-05-31/{resource}"), b"", None).unwrap();
        field(&text(&listed), "Quantity")
    };
    assert_eq!((count("distribution"), count("key-group")), ("1".to_owned(), "1".to_owned()));
    let unsigned = request(emulator.control, "POST", "/moto-api/reset", &[], b"");
    assert_eq!(unsigned.status, 403, "{}", unsigned.text());
    assert_eq!(count("distribution"), "1", "an unsigned reset changes nothing");

    let reset = emulator.call("POST", "/moto-api/reset", b"", None).unwrap();
    assert_eq!(reset.status, 200, "{}", text(&reset));
    for resource in ["distribution", "key-group", "public-key", "function"] {
        assert_eq!(count(resource), "0", "{resource}");
    }
    let gone = get(emulator.edge, &format!("http://{domain}/public/kept.txt"));
    assert_eq!(gone.status, 403, "a deleted distribution serves nothing");
    let key_id = field(&text(&create_public_key(emulator, "after", "after")), "Id");
    let group = format!("<KeyGroupConfig {NS}><Name>g2</Name><Items><PublicKey>{key_id}</PublicKey></Items></KeyGroupConfig>");
    let group_id = field(
        &text(&emulator.call("POST", "/2020-05-31/key-group", group.as_bytes(), None).unwrap()),
        "Id",
    );
    let body = distribution_config("before-reset", &emulator.bucket, &group_id, "");
    let created = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None).unwrap();
    assert_eq!(created.status, 201, "{}", text(&created));
    let domain = field(&text(&created), "DomainName");
    assert_eq!(
        get(emulator.edge, &format!("http://{domain}/public/kept.txt")).text(),
        "the bucket is not the API's",
        "the same CallerReference makes a new distribution over the bucket, untouched"
    );
}

/// Every viewer header an origin request policy can send (Managed-AllViewer)
/// on a public behavior over an S3 origin, hostile ones included: a forged
/// SigV4 `Authorization` with its date and token, the signing cookies,
/// `Expect`, a `Range`. The bucket still gets keyfront's own signature and
/// none of the viewer's: the bytes served are the object's, whole or the
/// range asked, and nothing of the viewer's credentials is echoed.
#[test]
fn an_s3_origin_behind_all_viewer_gets_none_of_the_viewers_credentials() {
    let setup = start(EmulatorOptions::default());
    let emulator = &setup.emulator;
    const ALL_VIEWER: &str = "216adef6-5c7f-47e4-b989-5492eafa07d3";
    const CACHING_DISABLED: &str = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad";
    let plain = distribution_config("all-viewer", &emulator.bucket, &setup.group_id, "");
    let config = plain.replacen(
        "<PathPattern>public/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL>",
        &format!(
            "<PathPattern>public/*</PathPattern><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy>\
             <CachePolicyId>{CACHING_DISABLED}</CachePolicyId><OriginRequestPolicyId>{ALL_VIEWER}</OriginRequestPolicyId>"
        ),
        1,
    );
    let (status, created, _) = api(emulator, "POST", "distribution", &config, None);
    assert_eq!(status, 201, "{created}");
    let domain = field(&created, "DomainName");
    let body = common::patterned(4096);
    put(emulator, "/prefix/public/data.bin", &body);
    let hostile = [
        ("Host", domain.as_str()),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEVIL/20000101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("X-Amz-Date", "20000101T000000Z"),
        ("X-Amz-Security-Token", "forged-token"),
        ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ("Cookie", "CloudFront-Signature=forged; CloudFront-Key-Pair-Id=KEVIL; session=s1"),
        ("Accept-Encoding", "gzip"),
        ("X-Tenant", "t1"),
    ];
    for _ in 0..2 {
        let whole = request(emulator.edge, "GET", "/public/data.bin", &hostile, b"");
        assert_eq!(whole.status, 200, "{}", whole.text());
        assert!(whole.body == body, "the object's bytes, whole");
        assert!(whole.header("content-encoding").is_none(), "identity bytes");
        let mut ranged = hostile.to_vec();
        ranged.push(("Range", "bytes=100-199"));
        let part = request(emulator.edge, "GET", "/public/data.bin", &ranged, b"");
        assert_eq!(part.status, 206, "{}", part.text());
        assert!(part.body == body[100..200], "the range asked");
    }
    // The same on a HEAD, and nothing of the viewer's credentials comes back.
    let head = request(emulator.edge, "HEAD", "/public/data.bin", &hostile, b"");
    assert_eq!((head.status, head.header("content-length")), (200, Some("4096")));
    let all = format!("{}{}", head.text(), String::from_utf8_lossy(&head.body));
    assert!(!all.contains("forged") && !all.contains("AKIAEVIL"));
}
