//! CloudFront's base64 variant and the JSON string escaping its policies use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Encodes with CloudFront's base64: the standard alphabet with `=` padding,
/// then `+` -> `-`, `=` -> `_`, `/` -> `~`. This is not RFC 4648's URL-safe form.
pub fn cloudfront_base64_encode(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            other => other,
        })
        .collect()
}

/// Decodes CloudFront's base64. The standard characters are accepted too,
/// since signers that forget the substitution still produce an unambiguous
/// value; whatever decodes is checked by the signature anyway.
pub fn cloudfront_base64_decode(text: &str) -> Option<Vec<u8>> {
    let standard: Vec<u8> = text
        .bytes()
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'=',
            b'~' => b'/',
            other => other,
        })
        .collect();
    STANDARD.decode(standard).ok()
}

/// Which characters a JSON string writer escapes beyond what JSON requires.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum JsonEscape {
    /// Only `"`, `\` and control characters, as CloudFront does when it rebuilds
    /// a canned policy from the URL it received.
    Required,
    /// Also every character outside printable ASCII as `\uXXXX`, as Python's
    /// `json.dumps` does by default, so that policies written by keyfront are
    /// byte-identical to those of botocore and the AWS CLI.
    AsciiOnly,
}

/// Appends `text` as a quoted JSON string.
pub fn push_json_string(out: &mut String, text: &str, escape: JsonEscape) {
    out.push('"');
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\' && (escape == JsonEscape::Required || b < 0x7f);
    // Nearly every URL needs no escaping: copy it whole (this is on the per-request path).
    if text.bytes().all(plain) {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_unicode_escape(out, c as u16),
            c if escape == JsonEscape::AsciiOnly && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, *unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, unit: u16) {
    use std::fmt::Write;
    let _ = write!(out, "\\u{unit:04x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_uses_cloudfront_substitutions() {
        // 0xfb 0xff encodes to "+/8=" in standard base64.
        assert_eq!(cloudfront_base64_encode(&[0xfb, 0xff]), "-~8_");
        assert_eq!(cloudfront_base64_decode("-~8_").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn base64_rejects_garbage() {
        assert!(cloudfront_base64_decode("abc").is_none());
        assert!(cloudfront_base64_decode("a b=").is_none());
        assert!(cloudfront_base64_decode("%%%%").is_none());
    }

    #[test]
    fn json_escaping_matches_python_json_dumps() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é😀\u{7f}", JsonEscape::AsciiOnly);
        assert_eq!(out, r#""a\"b\\c\nd\u0001\u00e9\ud83d\ude00\u007f""#);
        let mut raw = String::new();
        push_json_string(&mut raw, "é/\"", JsonEscape::Required);
        assert_eq!(raw, "\"é/\\\"\"");
    }
}
