//! The access decision, hostile cases first: what a viewer or another node
//! presents, against public and signed behaviors, with and without a fleet.

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::*;
use crate::auth::{DenyReason, HashAlgorithm, KeyAlgorithm, PolicySpec, PrivateKey, Signer, TrustedKeys, split_target};
use crate::cache::ParentTier;
use crate::config::{Config, Tiers};
use crate::fleet::FleetSecret;
use crate::routing::FileTable;

const NOW: u64 = 1_900_000_000;
const HOST: &str = "cdn.example.com";

/// The one behavior of a config file: public, S3 origin.
fn public_behavior() -> Behavior {
    let dir = tempfile::tempdir().unwrap();
    let text = "listen: 127.0.0.1:8080\norigins:\n  store: {type: s3, endpoint: \"http://127.0.0.1:9\", bucket: media, access_key_id: edge, secret_access_key: edge-secret}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n";
    let config = Config::parse(text, &dir.path().join("keyfront.yaml")).unwrap();
    FileTable::compile(&config).unwrap().behaviors.remove(0)
}

/// The behavior signed by `groups`' keys, `K1` holding `key` when given.
fn signed_behavior(key: Option<&PrivateKey>) -> Behavior {
    let mut behavior = public_behavior();
    behavior.trusted_key_groups = vec!["main".to_owned()];
    behavior.trusted_keys = TrustedKeys::new(key.map(|key| ("K1".to_owned(), key.public_key())));
    behavior
}

fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut header = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
    header.insert_header("host", HOST).unwrap();
    for (name, value) in headers {
        header.append_header(name.to_string(), *value).unwrap();
    }
    header
}

/// The context `route` leaves for `target` on `behavior`.
fn routed(target: &SignedTarget<'_>, behavior: &Behavior) -> RequestContext {
    let path = target.path().to_owned();
    RequestContext {
        origin_path: behavior.origin.object_path(&path),
        key_query: behavior.values.key_query.select_query(target.query()),
        path,
        ..RequestContext::default()
    }
}

/// Decides a GET of `raw_target` presenting `headers`, from a viewer at
/// 192.0.2.7 or (`from_node`) another node, over plain HTTP, on a node of
/// `fleet` if any.
fn decide_get(fleet: Option<&Fleet>, from_node: bool, behavior: &Behavior, raw_target: &str, headers: &[(&str, &str)]) -> Access {
    let header = request(raw_target, headers);
    let target = split_target(raw_target).unwrap();
    let presented = Presented {
        header: &header,
        from_node,
        over_tls: false,
        client_ip: Some("192.0.2.7".parse().unwrap()),
        now: NOW,
    };
    decide(
        fleet,
        &Verifier::default(),
        &presented,
        &routed(&target, behavior),
        None,
        behavior,
        &target,
    )
}

fn viewer_access(behavior: &Behavior, raw_target: &str, headers: &[(&str, &str)]) -> Access {
    decide_get(None, false, behavior, raw_target, headers)
}

fn node_access(fleet: Option<&Fleet>, behavior: &Behavior, raw_target: &str, headers: &[(&str, &str)]) -> Access {
    decide_get(fleet, true, behavior, raw_target, headers)
}

fn refused_for(access: Access) -> DenyReason {
    match access {
        Access::Refused(rejection) => rejection.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn is_bad_signature(access: Access) -> bool {
    matches!(refused_for(access), DenyReason::BadSignature { .. })
}

fn signer(key: &PrivateKey) -> Signer {
    Signer::new("K1", PrivateKey::from_pem(&key.to_pem()).unwrap(), HashAlgorithm::Sha1)
}

#[test]
fn a_signed_behavior_refuses_what_no_key_of_it_signed() {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let behavior = signed_behavior(Some(&key));
    assert_eq!(refused_for(viewer_access(&behavior, "/a.mp4", &[])), DenyReason::MissingKeyPairId);

    // Signed by a key the behavior does not trust, under its id.
    let stranger = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let url = signer(&stranger).sign_url(&format!("http://{HOST}/a.mp4"), &PolicySpec::Canned { expires: NOW + 60 });
    let target = url.strip_prefix(&format!("http://{HOST}")).unwrap();
    assert!(is_bad_signature(viewer_access(&behavior, target, &[])));

    // Signed for another object, presented for this one.
    let other = signer(&key).sign_url(&format!("http://{HOST}/b.mp4"), &PolicySpec::Canned { expires: NOW + 60 });
    let moved = other
        .strip_prefix(&format!("http://{HOST}"))
        .unwrap()
        .replacen("/b.mp4", "/a.mp4", 1);
    assert!(is_bad_signature(viewer_access(&behavior, &moved, &[])));

    // Signed for another host (the viewer's Host is what a URL is checked against).
    let elsewhere = signer(&key).sign_url("http://other.example.com/a.mp4", &PolicySpec::Canned { expires: NOW + 60 });
    let target = elsewhere.strip_prefix("http://other.example.com").unwrap();
    assert!(is_bad_signature(viewer_access(&behavior, target, &[])));

    // Expired.
    let old = signer(&key).sign_url(&format!("http://{HOST}/a.mp4"), &PolicySpec::Canned { expires: NOW - 1 });
    let target = old.strip_prefix(&format!("http://{HOST}")).unwrap();
    assert_eq!(viewer_access(&behavior, target, &[]).label(), "expired");
}

#[test]
fn a_behavior_whose_groups_hold_no_key_is_never_public() {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let behavior = signed_behavior(None);
    let url = signer(&key).sign_url(&format!("http://{HOST}/a.mp4"), &PolicySpec::Canned { expires: NOW + 60 });
    let target = url.strip_prefix(&format!("http://{HOST}")).unwrap();
    assert!(matches!(
        refused_for(viewer_access(&behavior, target, &[])),
        DenyReason::UnknownKey { .. }
    ));
    assert_eq!(refused_for(viewer_access(&behavior, "/a.mp4", &[])), DenyReason::MissingKeyPairId);
}

#[test]
fn a_signed_url_or_signed_cookies_of_a_trusted_key_grant_and_say_which() {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let behavior = signed_behavior(Some(&key));
    let url = signer(&key).sign_url(&format!("http://{HOST}/a.mp4"), &PolicySpec::Canned { expires: NOW + 60 });
    let access = viewer_access(&behavior, url.strip_prefix(&format!("http://{HOST}")).unwrap(), &[]);
    assert!(matches!(access, Access::Signed(CredentialSource::SignedUrl)), "{access:?}");
    assert_eq!(access.label(), "signed_url");

    let cookies = signer(&key).sign_cookies(&format!("http://{HOST}/a.mp4"), &PolicySpec::Canned { expires: NOW + 60 });
    let cookie = cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ");
    let access = viewer_access(&behavior, "/a.mp4", &[("cookie", &cookie)]);
    assert!(matches!(access, Access::Signed(CredentialSource::SignedCookies)), "{access:?}");
    assert_eq!(access.label(), "signed_cookies");
}

#[test]
fn a_public_behavior_grants_anyone_and_a_signature_changes_nothing() {
    let behavior = public_behavior();
    assert!(matches!(viewer_access(&behavior, "/a.mp4", &[]), Access::Public));
    let garbage = "/a.mp4?Expires=1&Signature=AAAA&Key-Pair-Id=K1";
    assert!(matches!(viewer_access(&behavior, garbage, &[]), Access::Public));
}

fn fleet(secret: u8) -> Arc<Fleet> {
    Fleet::new(
        "node-a".to_owned(),
        FleetSecret::new(&[secret; 32]).unwrap(),
        &Tiers::default(),
        true,
        None,
    )
}

/// The headers the asking node sends for `path` on `behavior`.
fn node_headers(fleet: &Fleet, behavior: &Behavior, path: &str, site_hop: bool) -> Vec<(&'static str, String)> {
    let origin_path = behavior.origin.object_path(path).unwrap();
    let object = crate::edge::cached::object_ref(&"default".into(), behavior, (path.to_owned(), origin_path, ""), site_hop, None);
    fleet.authenticate("GET", &object, "", 0, site_hop)
}

#[test]
fn a_node_request_is_refused_without_a_fleet_or_with_another_fleets_mac_or_for_another_object() {
    let behavior = signed_behavior(None);
    let ours = fleet(7);
    let signed = node_headers(&ours, &behavior, "/a.mp4", false);
    let borrowed: Vec<(&str, &str)> = signed.iter().map(|(name, value)| (*name, value.as_str())).collect();

    // On a node outside any fleet, a node's request is malformed.
    assert!(matches!(
        node_access(None, &behavior, "/a.mp4", &borrowed),
        Access::NodeRefused(FleetAuthError::Malformed)
    ));
    // Another fleet's secret.
    assert!(matches!(
        node_access(Some(&fleet(8)), &behavior, "/a.mp4", &borrowed),
        Access::NodeRefused(FleetAuthError::BadSignature)
    ));
    // The MAC of one object presented for another.
    assert!(matches!(
        node_access(Some(&ours), &behavior, "/b.mp4", &borrowed),
        Access::NodeRefused(FleetAuthError::BadSignature)
    ));
    // A query the MAC did not cover (a keyed query is part of the object).
    let mut keyed = behavior.clone();
    keyed.values.key_query = crate::request::NameChoice::All;
    assert!(matches!(
        node_access(Some(&ours), &keyed, "/a.mp4?v=2", &borrowed),
        Access::NodeRefused(_)
    ));
    // No headers at all.
    assert!(matches!(node_access(Some(&ours), &behavior, "/a.mp4", &[]), Access::NodeRefused(_)));
}

#[test]
fn a_node_request_with_the_fleets_mac_passes_a_signed_behavior_and_carries_its_hop() {
    let behavior = signed_behavior(None);
    let ours = fleet(7);
    for site_hop in [false, true] {
        let signed = node_headers(&ours, &behavior, "/a.mp4", site_hop);
        let borrowed: Vec<(&str, &str)> = signed.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let access = node_access(Some(&ours), &behavior, "/a.mp4", &borrowed);
        assert!(
            matches!(access, Access::Node { not_before: 0, site_hop: hop } if hop == site_hop),
            "{access:?}"
        );
        assert_eq!(access.label(), "fleet");
    }
}
