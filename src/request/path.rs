//! The canonical path: one spelling per object key.
//!
//! A viewer may spell one object key many ways (`%70riv` for `priv`, `+` or
//! `%2B`, lower- or upper-case hex). The origin decodes every spelling to the
//! same key, so matching behaviors or Resources on the raw spelling lets a
//! public behavior reach a signed one's objects. keyfront therefore decodes
//! the path once and re-encodes the key the one way S3 does (every byte but
//! `A-Z a-z 0-9 - . _ ~` as `%XX`, upper-case hex, `/` between segments):
//! two spellings of one key give one canonical path, and two keys never
//! share one. Whatever cannot be made canonical without guessing (dot
//! segments, encoded slashes, backslashes, control bytes, broken escapes,
//! empty segments but a trailing `/`, bytes that are not UTF-8) is refused.

use std::borrow::Cow;

/// Why a path has no canonical form. Every case is a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("the path does not start with /")]
    NotAbsolute,
    #[error("the path holds a . or .. segment")]
    DotSegment,
    #[error("the path holds an empty segment (//)")]
    EmptySegment,
    #[error("the path holds an encoded slash (%2F)")]
    EncodedSlash,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds a control byte")]
    ControlByte,
    #[error("the path holds a % that does not start an escape")]
    InvalidEscape,
    #[error("the decoded path is not UTF-8")]
    NotUtf8,
}

/// The bytes S3 leaves unescaped in a key (RFC 3986's unreserved set).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 15)] as char);
}

/// Appends `key_bytes` (decoded) in canonical spelling; `/` stays a separator.
fn push_canonical(out: &mut String, key_bytes: &[u8]) {
    for &byte in key_bytes {
        if is_unreserved(byte) || byte == b'/' {
            out.push(byte as char);
        } else {
            push_escaped(out, byte);
        }
    }
}

/// The canonical form of a request path (the part of the target before `?`).
///
/// Borrowed when the path is already canonical, which is most paths: no
/// allocation on the hit path.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if raw.bytes().all(|b| is_unreserved(b) || b == b'/') {
        check_segments(raw)?;
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode(raw.as_bytes())?;
    check_segments(std::str::from_utf8(&decoded).map_err(|_| PathRefusal::NotUtf8)?)?;
    let mut canonical = String::with_capacity(decoded.len() + decoded.len() / 2);
    push_canonical(&mut canonical, &decoded);
    Ok(Cow::Owned(canonical))
}

/// Percent-decodes `raw`, refusing what would make the key ambiguous.
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathRefusal> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(byte) = bytes.next() {
        let (byte, escaped) = if byte == b'%' {
            let high = bytes.next().and_then(hex_value);
            let low = bytes.next().and_then(hex_value);
            match (high, low) {
                (Some(high), Some(low)) => (high << 4 | low, true),
                _ => return Err(PathRefusal::InvalidEscape),
            }
        } else {
            (byte, false)
        };
        match byte {
            b'/' if escaped => return Err(PathRefusal::EncodedSlash),
            b'\\' => return Err(PathRefusal::Backslash),
            0..=0x1f | 0x7f => return Err(PathRefusal::ControlByte),
            _ => decoded.push(byte),
        }
    }
    Ok(decoded)
}

/// Refuses `.`, `..` and empty segments but a last one: a path may end in
/// `/` (`/docs/`, the key `docs/`, which S3 tells apart from `docs`, and
/// which viewer-request functions rewrite to an index page).
fn check_segments(path: &str) -> Result<(), PathRefusal> {
    if path == "/" {
        return Ok(());
    }
    let segments = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    for segment in segments.split('/') {
        match segment {
            "" => return Err(PathRefusal::EmptySegment),
            "." | ".." => return Err(PathRefusal::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// The canonical form of a path pattern (a behavior's `path_pattern`, an
/// invalidation path, the path of a policy's Resource): escapes and literal
/// characters are spelled as in [`canonical_path`], so that a pattern is
/// compared with canonical paths in their own terms. Raw `*` and `?` stay
/// wildcards; an escaped `%2A` or `%3F` stays a literal character, so
/// canonicalising never widens a pattern. A `%` that starts no escape is the
/// literal `%`. Never fails: a pattern that can match no canonical path
/// (one with `%2F`, say) simply matches nothing.
pub fn canonical_pattern(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escape = (byte == b'%')
            .then(|| Some(hex_value(*bytes.get(i + 1)?)? << 4 | hex_value(*bytes.get(i + 2)?)?))
            .flatten();
        match escape {
            Some(decoded) => {
                if is_unreserved(decoded) {
                    out.push(decoded as char);
                } else {
                    push_escaped(&mut out, decoded);
                }
                i += 3;
            }
            None => {
                if matches!(byte, b'*' | b'?') {
                    out.push(byte as char);
                } else {
                    push_canonical(&mut out, &[byte]);
                }
                i += 1;
            }
        }
    }
    out
}

/// The canonical form of a policy Resource (`scheme://host/path?query`, or a
/// pattern such as `*` or `https://host/videos/*`): the path, up to the first
/// `?`, as [`canonical_pattern`]; the scheme, host and query as written.
/// Resources are compared with `scheme://host` + canonical path + the
/// viewer's own query string as sent.
pub fn canonical_resource(resource: &str) -> String {
    let Some(scheme_end) = resource.find("://") else {
        return resource.to_owned();
    };
    let after_scheme = scheme_end + 3;
    let Some(path_start) = resource[after_scheme..].find('/').map(|i| i + after_scheme) else {
        return resource.to_owned();
    };
    let path_end = resource[path_start..].find('?').map_or(resource.len(), |i| i + path_start);
    let mut canonical = String::with_capacity(resource.len() + 8);
    canonical.push_str(&resource[..path_start]);
    canonical.push_str(&canonical_pattern(&resource[path_start..path_end]));
    canonical.push_str(&resource[path_end..]);
    canonical
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        canonical_path(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).into_owned()
    }

    #[test]
    fn canonical_paths_borrow() {
        assert!(matches!(canonical_path("/videos/a-b_c~d.mp4"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn every_spelling_of_a_key_is_one_path() {
        assert_eq!(ok("/%70riv/x.txt"), "/priv/x.txt");
        assert_eq!(ok("/%70%72%69%76/x.txt"), "/priv/x.txt");
        assert_eq!(ok("/a+b.pdf"), "/a%2Bb.pdf");
        assert_eq!(ok("/a%2bb.pdf"), "/a%2Bb.pdf");
        assert_eq!(ok("/a%2Bb.pdf"), "/a%2Bb.pdf");
        assert_eq!(ok("/my%20file.pdf"), "/my%20file.pdf");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/café"), "/caf%C3%A9");
        assert_eq!(ok("/%7Euser/%7e"), "/~user/~");
        assert_eq!(ok("/a*b?"), "/a%2Ab%3F");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("relative", PathRefusal::NotAbsolute),
            ("http://h/x", PathRefusal::NotAbsolute),
            ("/public/../videos/a.mp4", PathRefusal::DotSegment),
            ("/a/./b", PathRefusal::DotSegment),
            ("/a/..", PathRefusal::DotSegment),
            ("/%2e%2e/b", PathRefusal::DotSegment),
            ("/%2E./b", PathRefusal::DotSegment),
            ("/.%2e/b", PathRefusal::DotSegment),
            ("/a/%2e", PathRefusal::DotSegment),
            ("//priv/x", PathRefusal::EmptySegment),
            ("/priv//x", PathRefusal::EmptySegment),
            ("/priv//", PathRefusal::EmptySegment),
            ("//", PathRefusal::EmptySegment),
            ("/priv%2Fx", PathRefusal::EncodedSlash),
            ("/priv%2fx", PathRefusal::EncodedSlash),
            ("/priv\\x", PathRefusal::Backslash),
            ("/priv%5Cx", PathRefusal::Backslash),
            ("/a%00b", PathRefusal::ControlByte),
            ("/a%0Ab", PathRefusal::ControlByte),
            ("/a%7fb", PathRefusal::ControlByte),
            ("/a\tb", PathRefusal::ControlByte),
            ("/a%", PathRefusal::InvalidEscape),
            ("/a%4", PathRefusal::InvalidEscape),
            ("/a%zz", PathRefusal::InvalidEscape),
            ("/a%%41", PathRefusal::InvalidEscape),
            ("/%ff%fe", PathRefusal::NotUtf8),
            ("/%c0%af", PathRefusal::NotUtf8),
        ];
        for (raw, refusal) in cases {
            assert_eq!(canonical_path(raw), Err(refusal), "{raw:?}");
        }
    }

    #[test]
    fn canonical_paths_are_fixed_points() {
        for raw in ["/%70riv/x", "/a+b", "/caf%c3%a9", "/a%20b/%7e", "/x*y", "/docs/"] {
            let once = ok(raw);
            assert_eq!(ok(&once), once);
        }
    }

    #[test]
    fn patterns_are_spelled_like_paths_and_never_widen() {
        assert_eq!(canonical_pattern("/videos/*"), "/videos/*");
        assert_eq!(canonical_pattern("/%70riv/*"), "/priv/*");
        assert_eq!(canonical_pattern("/a+b/*.mp4"), "/a%2Bb/*.mp4");
        assert_eq!(canonical_pattern("/my file?.pdf"), "/my%20file?.pdf");
        assert_eq!(canonical_pattern("/lit%2A"), "/lit%2A", "an escaped star stays literal");
        assert_eq!(canonical_pattern("/lit%3f"), "/lit%3F");
        assert_eq!(canonical_pattern("/100%"), "/100%25");
        assert_eq!(canonical_pattern("*"), "*");
    }

    #[test]
    fn resources_keep_scheme_host_and_query() {
        assert_eq!(
            canonical_resource("https://d.example.com/docs/a%20b.pdf?lang=en&v=2"),
            "https://d.example.com/docs/a%20b.pdf?lang=en&v=2"
        );
        assert_eq!(canonical_resource("https://H/a+b/*"), "https://H/a%2Bb/*");
        assert_eq!(canonical_resource("*://h/%7euser/*"), "*://h/~user/*");
        assert_eq!(canonical_resource("*"), "*");
        assert_eq!(canonical_resource("https://h"), "https://h");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// An object key: segments of letters, digits, unreserved and
        /// reserved characters, spaces and non-ASCII, never `.` or `..`.
        fn key() -> impl Strategy<Value = String> {
            let segment = proptest::collection::vec(
                prop_oneof![
                    4 => proptest::char::range('a', 'z'),
                    1 => proptest::sample::select(vec!['A', 'Z', '0', '9', '-', '.', '_', '~', ' ', '+', '!', '$', '&', '\'', '(', ')', '*', ',', ';', '=', ':', '@', '?', '#', '%', '[', ']', 'é', '日', '😀']),
                ],
                1..8,
            )
            .prop_map(|chars| chars.into_iter().collect::<String>())
            .prop_filter("not a dot segment", |segment| segment != "." && segment != "..");
            proptest::collection::vec(segment, 1..4).prop_map(|segments| segments.join("/"))
        }

        /// The key spelled by `choices`: each byte raw where that is
        /// unambiguous, or escaped in upper- or lower-case hex.
        fn respell(key: &str, choices: &[u8]) -> String {
            let mut spelled = String::from("/");
            for (i, &byte) in key.as_bytes().iter().enumerate() {
                let choice = choices[i % choices.len()];
                let must_escape = !byte.is_ascii_graphic() || matches!(byte, b'%' | b'?' | b'#' | b'\\');
                match choice % 3 {
                    _ if byte == b'/' => spelled.push('/'),
                    0 if !must_escape => spelled.push(byte as char),
                    1 => spelled.push_str(&format!("%{byte:02X}")),
                    _ => spelled.push_str(&format!("%{byte:02x}")),
                }
            }
            spelled
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Every spelling of a key has the one canonical path, which
            /// is a fixed point and holds no dot or empty segment.
            #[test]
            fn spellings_of_a_key_agree(key in key(), choices in proptest::collection::vec(any::<u8>(), 1..16)) {
                let plain = canonical_path(&respell(&key, &[1])).expect("an escaped key is canonical").into_owned();
                let other = canonical_path(&respell(&key, &choices)).expect("a respelled key is canonical").into_owned();
                prop_assert_eq!(&plain, &other);
                prop_assert_eq!(canonical_path(&plain).unwrap(), plain.clone());
                let decoded = percent_encoding::percent_decode_str(&plain).decode_utf8().unwrap();
                prop_assert_eq!(&decoded[1..], key.as_str(), "the canonical path names exactly the key");
                prop_assert!(plain[1..].split('/').all(|segment| !matches!(segment, "" | "." | "..")));
            }

            /// Dot segments and doubled slashes, however spelled, are refused.
            #[test]
            fn climbing_spellings_are_refused(
                key in key(),
                choices in proptest::collection::vec(any::<u8>(), 1..16),
                dots in proptest::sample::select(vec![".", "..", "%2e", "%2E%2e", ".%2E", "%2e.", ""]),
                at in any::<prop::sample::Index>(),
            ) {
                let spelled = respell(&key, &choices);
                let slashes: Vec<usize> = spelled.match_indices('/').map(|(i, _)| i).collect();
                let cut = slashes[at.index(slashes.len())];
                let climbing = format!("{}/{dots}{}", &spelled[..cut], &spelled[cut..]);
                prop_assert!(canonical_path(&climbing).is_err(), "{}", climbing);
            }

            /// Arbitrary bytes never panic, and what passes is a fixed point
            /// with no dot segment.
            #[test]
            fn any_target_is_refused_or_canonical(raw in "/[ -~é]{0,40}") {
                if let Ok(canonical) = canonical_path(&raw) {
                    prop_assert_eq!(canonical_path(&canonical).unwrap(), canonical.clone());
                    prop_assert!(!canonical[1..].split('/').any(|segment| segment == "." || segment == ".."));
                }
            }
        }
    }
}
