use http::HeaderMap;

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().unwrap());
    }
    map
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

/// A cache policy keying `accept-language` and the cookie `session`.
fn keyed() -> RequestValues {
    RequestValues {
        key_headers: names(&["accept-language"]),
        key_cookies: NameChoice::Only(names(&["session"])),
        sent_headers: NameChoice::Nothing,
        sent_cookies: NameChoice::Only(names(&["session"])),
        ..RequestValues::default()
    }
}

#[test]
fn the_variant_holds_the_keyed_values_in_one_spelling() {
    let values = keyed();
    let fr = values.variant(&headers(&[("accept-language", "fr"), ("cookie", "a=1; session=s1")]));
    assert_eq!(fr, "accept-language:fr\nsession=s1");
    // Other cookies, their order, other headers: the same object.
    let same = values.variant(&headers(&[
        ("cookie", "session=s1"),
        ("accept-language", "fr"),
        ("user-agent", "x"),
    ]));
    assert_eq!(same, fr);
    // Absent and empty are two objects; so are two values.
    let absent = values.variant(&headers(&[("cookie", "session=s1")]));
    let empty = values.variant(&headers(&[("accept-language", ""), ("cookie", "session=s1")]));
    assert_ne!(absent, empty);
    assert_ne!(absent, fr);
    assert_ne!(values.variant(&headers(&[("accept-language", "en"), ("cookie", "session=s1")])), fr);
    assert!(RequestValues::default().variant(&headers(&[("accept-language", "fr")])).is_empty());
}

#[test]
fn a_hostile_value_cannot_spell_another_variant() {
    let values = keyed();
    // A value carrying the separators of a second part.
    let forged = values.variant(&headers(&[("accept-language", "fr\u{0009}x"), ("cookie", "session=s1=x")]));
    let honest = values.variant(&headers(&[("accept-language", "fr"), ("cookie", "session=s1")]));
    assert_ne!(forged, honest);
    let split = values.variant(&headers(&[("accept-language", "fr;session=s1")]));
    assert!(!split.contains("\nsession="), "{split:?}");
    assert_eq!(split.lines().count(), 1, "one keyed header, no cookie: one part");
}

#[test]
fn signing_cookies_are_never_keyed_or_sent() {
    let all = RequestValues {
        key_cookies: NameChoice::All,
        sent_cookies: NameChoice::All,
        ..RequestValues::default()
    };
    let request = headers(&[(
        "cookie",
        "CloudFront-Policy=p; CloudFront-Signature=s; CloudFront-Key-Pair-Id=K; CloudFront-Expires=1; theme=dark",
    )]);
    assert_eq!(all.variant(&request), "theme=dark");
    assert_eq!(all.sent(&request, None), vec![("cookie".to_owned(), "theme=dark".to_owned())]);
}

#[test]
fn what_is_sent_is_the_policies_headers_and_never_the_caches_own() {
    let all_viewer = RequestValues {
        sent_headers: NameChoice::All,
        sent_cookies: NameChoice::Nothing,
        ..RequestValues::default()
    };
    let request = headers(&[
        ("accept", "application/json"),
        ("host", "viewer.example"),
        ("range", "bytes=0-1"),
        ("if-none-match", "\"v\""),
        ("accept-encoding", "gzip"),
        ("x-amz-security-token", "t"),
        ("x-keyfront-fleet-signature", "f"),
        ("connection", "close"),
        ("cookie", "a=1"),
        ("authorization", "Bearer t"),
    ]);
    assert_eq!(
        all_viewer.sent(&request, Some("viewer.example")),
        vec![
            ("host".to_owned(), "viewer.example".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), "Bearer t".to_owned())
        ],
        "the origin decides on authorization and host (an S3 origin takes neither)"
    );
    // HTTP/2's `:authority` is the host when no `Host` came; a policy that
    // sends all but `Host` (`Managed-AllViewerExceptHostHeader`) sends neither.
    assert_eq!(
        all_viewer.sent(&HeaderMap::new(), Some("h2.example")),
        vec![("host".to_owned(), "h2.example".to_owned())]
    );
    let all_but_host = RequestValues {
        sent_headers: NameChoice::AllExcept(names(&["host"])),
        ..RequestValues::default()
    };
    let sent = all_but_host.sent(&request, Some("viewer.example"));
    assert!(!sent.iter().any(|(name, _)| name == "host"), "{sent:?}");
    let only = RequestValues {
        key_headers: names(&["x-tenant"]),
        sent_headers: NameChoice::Only(names(&["accept"])),
        ..RequestValues::default()
    };
    let sent = only.sent(
        &headers(&[("x-tenant", "t1"), ("accept", "a"), ("user-agent", "u")]),
        Some("viewer.example"),
    );
    assert_eq!(
        sent,
        vec![("x-tenant".to_owned(), "t1".to_owned()), ("accept".to_owned(), "a".to_owned())]
    );
    assert!(only.varies() && keyed().varies() && !RequestValues::default().varies());
}
