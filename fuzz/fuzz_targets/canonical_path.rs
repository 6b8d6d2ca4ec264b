//! The canonical path: whatever the viewer sends, a path that passes is a
//! fixed point, holds no dot or empty segment (but a trailing `/`), is spelled in S3's encoding
//! only, and names the same key as the spelling it came from.
#![no_main]

use keyfront::auth::split_target;
use keyfront::request::{canonical_path, canonical_pattern};
use libfuzzer_sys::fuzz_target;

fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let path = raw.split('?').next().unwrap_or_default();
    let canonical = canonical_path(path);
    if let Ok(canonical) = &canonical {
        assert_eq!(canonical_path(canonical).as_deref(), Ok(&**canonical), "idempotent");
        assert_eq!(canonical_pattern(canonical), **canonical, "a canonical path is its own pattern");
        if &**canonical != "/" {
            // A last segment may be empty: `/docs/` is the key `docs/`.
            let segments = canonical[1..].strip_suffix('/').unwrap_or(&canonical[1..]);
            assert!(segments.split('/').all(|s| !matches!(s, "" | "." | "..")), "{canonical}");
        }
        let mut escape = 0;
        for byte in canonical.bytes() {
            match escape {
                0 if byte == b'%' => escape = 2,
                0 => assert!(byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte), "{canonical}"),
                _ => {
                    assert!(byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte), "{canonical}");
                    escape -= 1;
                }
            }
        }
        assert_eq!(decode(canonical), decode(path), "the same key");
    }
    // The whole target: refused exactly when its path is (or it is too long),
    // and its canonical form starts with that canonical path.
    match split_target(raw) {
        Ok(target) => {
            assert_eq!(Ok(target.path()), canonical.as_deref());
            let own = target.query().unwrap_or_default();
            assert!(
                own.split('&')
                    .all(|pair| !keyfront::auth::SIGNING_PARAMS.contains(&pair.split('=').next().unwrap_or(pair))),
                "{own}"
            );
        }
        Err(_) => assert!(canonical.is_err() || raw.len() > keyfront::request::MAX_URL_BYTES),
    }
});
