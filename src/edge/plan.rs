//! The answer a GET or HEAD gets from a cached version, decided before any
//! byte is fetched or sent: status, header and the byte ranges of the body,
//! from the request's conditions (`If-None-Match`, `If-Modified-Since`,
//! `If-Range`) and ranges. Pure, and tested without sockets.

use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderName, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

use crate::cache::ObjectMeta;
use crate::range::{ByteRange, Multipart, RangeRequest, Validators, if_range_matches, not_modified, parse_range};

/// The boundary between the parts of a `multipart/byteranges` answer.
const MULTIPART_BOUNDARY: &str = "keyfront-byteranges-5f2c9e7a";

/// How a GET or HEAD of a cached version is answered.
pub struct Plan<'m> {
    /// The response header, status included.
    pub header: ResponseHeader,
    /// The object's byte ranges the body holds, in order; none: the header
    /// is the whole answer (HEAD, 304, 416, an empty object).
    pub body: Vec<ByteRange>,
    /// The multipart framing around the ranges when there are several.
    pub framing: Multipart<'m>,
}

/// The answer to `request` from `meta`: `response` (the version's header,
/// `X-Cache` and `Age` set) turned into a 200, 206 (one range or
/// multipart), 304 or 416 as the request's conditions and ranges ask. An
/// error page (`page_status`) is answered whole under its own status.
/// Pure: no I/O, no clock.
pub fn plan_response<'m>(
    meta: &'m ObjectMeta,
    mut response: ResponseHeader,
    request: &RequestHeader,
    page_status: Option<u16>,
) -> Result<Plan<'m>> {
    let header_text = |name: HeaderName| request.headers.get(name).and_then(|v| v.to_str().ok());
    let validators = Validators {
        etag: &meta.etag,
        last_modified: meta.last_modified(),
    };
    let framing = Multipart {
        boundary: MULTIPART_BOUNDARY,
        content_type: meta.header("content-type").unwrap_or("application/octet-stream"),
        size: meta.size,
    };
    let header_only = |header| {
        Ok(Plan {
            header,
            body: Vec::new(),
            framing,
        })
    };
    if let Some(status) = page_status {
        response.set_status(status)?;
    }
    if page_status.is_none() && not_modified(header_text(IF_NONE_MATCH), header_text(IF_MODIFIED_SINCE), validators) {
        response.set_status(304)?;
        for name in [
            "content-type",
            "content-encoding",
            "content-disposition",
            "content-language",
            "content-length",
        ] {
            response.remove_header(name);
        }
        return header_only(response);
    }
    let ranges = if page_status.is_none() && if_range_matches(header_text(IF_RANGE), validators) {
        parse_range(header_text(RANGE), meta.size)
    } else {
        RangeRequest::Full
    };
    let body: Vec<ByteRange> = match ranges {
        RangeRequest::Unsatisfiable => {
            response.set_status(416)?;
            response.insert_header(CONTENT_RANGE, format!("bytes */{}", meta.size))?;
            response.insert_header(CONTENT_LENGTH, HeaderValue::from_static("0"))?;
            return header_only(response);
        }
        RangeRequest::Full if meta.size == 0 => Vec::new(),
        RangeRequest::Full => vec![ByteRange {
            start: 0,
            end: meta.size - 1,
        }],
        RangeRequest::Partial(ranges) if ranges.len() == 1 => {
            response.set_status(206)?;
            response.insert_header(CONTENT_RANGE, ranges[0].content_range(meta.size))?;
            response.insert_header(CONTENT_LENGTH, HeaderValue::from(ranges[0].length()))?;
            ranges
        }
        RangeRequest::Partial(ranges) => {
            response.set_status(206)?;
            response.insert_header(CONTENT_TYPE, format!("multipart/byteranges; boundary={MULTIPART_BOUNDARY}"))?;
            response.insert_header(CONTENT_LENGTH, HeaderValue::from(framing.content_length(&ranges)))?;
            ranges
        }
    };
    if request.method == http::Method::HEAD {
        return header_only(response);
    }
    Ok(Plan {
        header: response,
        body,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::Freshness;

    const ETAG: &str = "\"v1\"";
    const MODIFIED: &str = "Sun, 22 Nov 2026 12:00:00 GMT";
    const SIZE: u64 = 10_000;

    fn meta() -> ObjectMeta {
        let mut origin = ResponseHeader::build(200, None).unwrap();
        origin.insert_header("etag", ETAG).unwrap();
        origin.insert_header("last-modified", MODIFIED).unwrap();
        origin.insert_header("content-type", "video/mp4").unwrap();
        let fresh = Freshness {
            ttl: Duration::from_secs(60),
            storable: true,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        };
        ObjectMeta::from_origin(&origin, SIZE, fresh, 4096, 0)
    }

    /// The version's 200 header, as a hit clones it.
    fn template() -> ResponseHeader {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-type", "video/mp4").unwrap();
        header.insert_header("content-length", SIZE.to_string()).unwrap();
        header.insert_header("etag", ETAG).unwrap();
        header
    }

    /// A plan as plain values: status, body ranges, header fields.
    type Planned = (u16, Vec<(u64, u64)>, Vec<(String, String)>);

    fn plan(method: &str, headers: &[(&str, &str)], page_status: Option<u16>) -> Planned {
        let meta = meta();
        let mut request = RequestHeader::build(method, b"/v.mp4", None).unwrap();
        for (name, value) in headers {
            request.insert_header(name.to_string(), *value).unwrap();
        }
        let plan = plan_response(&meta, template(), &request, page_status).unwrap();
        let header = plan
            .header
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = plan.body.iter().map(|r| (r.start, r.end)).collect();
        (plan.header.status.as_u16(), body, header)
    }

    fn value<'a>(header: &'a [(String, String)], name: &str) -> Option<&'a str> {
        header.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_plain_get_is_the_whole_object_and_head_the_header_alone() {
        let (status, body, header) = plan("GET", &[], None);
        assert_eq!((status, body), (200, vec![(0, SIZE - 1)]));
        assert_eq!(value(&header, "content-length"), Some("10000"));
        let (status, body, header) = plan("HEAD", &[], None);
        assert_eq!((status, body.len()), (200, 0), "HEAD: no body");
        assert_eq!(value(&header, "content-length"), Some("10000"), "HEAD: the GET's length");
    }

    #[test]
    fn ranges_give_206_one_part_or_multipart_and_unsatisfiable_416() {
        let (status, body, header) = plan("GET", &[("range", "bytes=100-199")], None);
        assert_eq!((status, body), (206, vec![(100, 199)]));
        assert_eq!(value(&header, "content-range"), Some("bytes 100-199/10000"));
        assert_eq!(value(&header, "content-length"), Some("100"));

        let (status, body, header) = plan("GET", &[("range", "bytes=0-9,-10")], None);
        assert_eq!((status, body), (206, vec![(0, 9), (9990, 9999)]));
        let content_type = value(&header, "content-type").unwrap();
        assert_eq!(content_type, format!("multipart/byteranges; boundary={MULTIPART_BOUNDARY}"));
        let framing = Multipart {
            boundary: MULTIPART_BOUNDARY,
            content_type: "video/mp4",
            size: SIZE,
        };
        let parts = [ByteRange { start: 0, end: 9 }, ByteRange { start: 9990, end: 9999 }];
        let expected_length = framing.content_length(&parts).to_string();
        assert_eq!(value(&header, "content-length"), Some(expected_length.as_str()));

        let (status, body, header) = plan("GET", &[("range", "bytes=20000-")], None);
        assert_eq!((status, body.len()), (416, 0));
        assert_eq!(value(&header, "content-range"), Some("bytes */10000"));
        assert_eq!(value(&header, "content-length"), Some("0"));
    }

    #[test]
    fn conditions_give_304_and_a_stale_if_range_the_whole_object() {
        for condition in [("if-none-match", ETAG), ("if-modified-since", MODIFIED)] {
            let (status, body, header) = plan("GET", &[condition], None);
            assert_eq!((status, body.len()), (304, 0), "{condition:?}");
            assert_eq!(value(&header, "content-length"), None, "a 304 has no length");
            assert_eq!(value(&header, "content-type"), None);
            assert_eq!(value(&header, "etag"), Some(ETAG));
        }
        let (status, ..) = plan("GET", &[("if-none-match", "\"v0\"")], None);
        assert_eq!(status, 200, "another version's ETag: the whole object");
        let (status, body, _) = plan("GET", &[("if-range", "\"v0\""), ("range", "bytes=0-9")], None);
        assert_eq!(
            (status, body),
            (200, vec![(0, SIZE - 1)]),
            "If-Range of another version: all of this one"
        );
        let (status, body, _) = plan("GET", &[("if-range", ETAG), ("range", "bytes=0-9")], None);
        assert_eq!((status, body), (206, vec![(0, 9)]));
    }

    #[test]
    fn an_error_page_is_whole_under_its_own_status() {
        let (status, body, _) = plan("GET", &[("range", "bytes=0-9"), ("if-none-match", ETAG)], Some(404));
        assert_eq!((status, body), (404, vec![(0, SIZE - 1)]));
    }
}
