use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn r(start: u64, end: u64) -> ByteRange {
    ByteRange { start, end }
}

#[test]
fn range_forms() {
    let cases: &[(&str, RangeRequest)] = &[
        ("bytes=0-99", RangeRequest::Partial(vec![r(0, 99)])),
        ("bytes=0-", RangeRequest::Partial(vec![r(0, 999)])),
        ("bytes=990-2000", RangeRequest::Partial(vec![r(990, 999)])),
        ("bytes=-10", RangeRequest::Partial(vec![r(990, 999)])),
        ("bytes=-5000", RangeRequest::Partial(vec![r(0, 999)])),
        ("bytes=0-0,-1", RangeRequest::Partial(vec![r(0, 0), r(999, 999)])),
        ("bytes= 500-599 , 0-9", RangeRequest::Partial(vec![r(500, 599), r(0, 9)])),
        ("bytes=1000-", RangeRequest::Unsatisfiable),
        ("bytes=1000-1005,2000-", RangeRequest::Unsatisfiable),
        ("bytes=-0", RangeRequest::Unsatisfiable),
        ("bytes=5-1", RangeRequest::Full),
        ("bytes=0-10,5-20", RangeRequest::Full),
        ("bytes=abc", RangeRequest::Full),
        ("bytes=1-2-3", RangeRequest::Full),
        ("items=0-1", RangeRequest::Full),
        ("bytes=", RangeRequest::Full),
        ("bytes=+1-2", RangeRequest::Full),
        ("bytes=99999999999999999999999-", RangeRequest::Full),
    ];
    for (header, expected) in cases {
        assert_eq!(&parse_range(Some(header), 1000), expected, "{header}");
    }
    assert_eq!(parse_range(None, 1000), RangeRequest::Full);
    assert_eq!(parse_range(Some("bytes=0-0"), 0), RangeRequest::Full);
    let many = format!(
        "bytes={}",
        (0..40).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect::<Vec<_>>().join(",")
    );
    assert_eq!(parse_range(Some(&many), 1000), RangeRequest::Full);
}

#[test]
fn conditionals() {
    let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let object = Validators {
        etag: "\"abc\"",
        last_modified: Some(modified),
    };
    assert!(not_modified(Some("\"abc\""), None, object));
    assert!(not_modified(Some("\"x\", W/\"abc\""), None, object));
    assert!(not_modified(Some("*"), None, object));
    assert!(
        !not_modified(Some("\"x\""), Some("Tue, 14 Nov 2023 22:13:20 GMT"), object),
        "If-None-Match wins"
    );
    assert!(not_modified(None, Some("Tue, 14 Nov 2023 22:13:20 GMT"), object));
    assert!(!not_modified(None, Some("Tue, 14 Nov 2023 22:13:19 GMT"), object));
    assert!(!not_modified(None, Some("garbage"), object));
    assert!(!not_modified(None, None, object));
}

#[test]
fn if_range() {
    let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let object = Validators {
        etag: "\"abc\"",
        last_modified: Some(modified),
    };
    assert!(if_range_matches(None, object));
    assert!(if_range_matches(Some("\"abc\""), object));
    assert!(!if_range_matches(Some("\"abd\""), object));
    assert!(!if_range_matches(Some("W/\"abc\""), object), "weak tags never match");
    assert!(if_range_matches(Some("Tue, 14 Nov 2023 22:13:20 GMT"), object));
    assert!(!if_range_matches(Some("Tue, 14 Nov 2023 22:13:21 GMT"), object));
}

#[test]
fn multipart_length_matches_what_is_written() {
    let framing = Multipart {
        boundary: "b0undary",
        content_type: "video/mp4",
        size: 1000,
    };
    let ranges = [r(0, 9), r(500, 599)];
    let mut body = String::new();
    for range in ranges {
        body.push_str(&framing.part_head(range));
        body.push_str(&"x".repeat(range.length() as usize));
    }
    body.push_str(&framing.tail());
    assert_eq!(framing.content_length(&ranges), body.len() as u64);
    assert!(body.starts_with("\r\n--b0undary\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-9/1000\r\n\r\n"));
    assert!(body.ends_with("\r\n--b0undary--\r\n"));
}

#[test]
fn origin_content_ranges_lie_inside_the_object() {
    let range = |start, end| ByteRange { start, end };
    assert_eq!(parse_content_range("bytes 0-99/1000"), Some((range(0, 99), 1000)));
    assert_eq!(parse_content_range("bytes 999-999/1000"), Some((range(999, 999), 1000)));
    for refused in [
        "bytes */1000",
        "bytes 5-2/1000",
        "bytes 0-1000/1000",
        "bytes +0-9/1000",
        "bytes 0-9/",
        "bytes 0-9/*",
        "items 0-9/10",
        "bytes 0-99999999999999999999999/1",
    ] {
        assert_eq!(parse_content_range(refused), None, "{refused}");
    }
}
