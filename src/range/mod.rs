//! Viewer byte ranges and conditional requests against a cached object (RFC
//! 9110 with CloudFront's choices), and `multipart/byteranges` framing.

use std::time::SystemTime;

/// An inclusive byte range within an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The number of bytes, at least one.
    pub fn length(self) -> u64 {
        self.end - self.start + 1
    }

    /// `bytes a-b/size`, the value of `Content-Range`.
    pub fn content_range(self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end)
    }
}

/// What a `Range` header asks of an object of a known size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range: the whole object, 200.
    Full,
    /// One or more satisfiable ranges, in the order asked: 206.
    Partial(Vec<ByteRange>),
    /// Syntactically valid, but nothing in the object: 416.
    Unsatisfiable,
}

/// More ranges than this in one request are treated as no Range at all:
/// a request for thousands of tiny ranges costs the edge far more than it.
pub const MAX_RANGES: usize = 32;

/// A byte position as RFC 9110 writes it: digits only (no sign, no space).
fn number(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Parses `Range` for an object of `size` bytes. As CloudFront does, invalid,
/// descending and overlapping ranges get the whole object (200); ranges that
/// start past the end are dropped, and if none is left the answer is 416.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Full;
    };
    let Some(specs) = header
        .trim()
        .strip_prefix("bytes=")
        .or_else(|| header.trim().strip_prefix("Bytes="))
    else {
        return RangeRequest::Full;
    };
    if size == 0 {
        return RangeRequest::Full;
    }
    // Counted while parsing: a header of thousands of ranges is given up on
    // at the first one over the limit, never collected.
    let mut ranges = Vec::new();
    for (count, spec) in specs.split(',').map(str::trim).enumerate() {
        if count == MAX_RANGES {
            return RangeRequest::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeRequest::Full;
        };
        let range = match (first, last) {
            ("", suffix) => match number(suffix) {
                Some(0) => None,
                Some(n) => Some(ByteRange {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }),
                None => return RangeRequest::Full,
            },
            (start, "") => match number(start) {
                Some(start) => (start < size).then_some(ByteRange { start, end: size - 1 }),
                None => return RangeRequest::Full,
            },
            (start, end) => match (number(start), number(end)) {
                (Some(start), Some(end)) if start <= end => (start < size).then(|| ByteRange {
                    start,
                    end: end.min(size - 1),
                }),
                _ => return RangeRequest::Full,
            },
        };
        ranges.extend(range);
    }
    if ranges.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| r.start);
    if sorted.windows(2).any(|pair| pair[1].start <= pair[0].end) {
        return RangeRequest::Full;
    }
    RangeRequest::Partial(ranges)
}

/// Parses an origin's `Content-Range: bytes START-END/TOTAL`: the range and
/// the object's total size, only when the range lies inside the object
/// (`START <= END < TOTAL`, plain digits).
pub fn parse_content_range(value: &str) -> Option<(ByteRange, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (number(start)?, number(end)?, number(total)?);
    (start <= end && end < total).then_some((ByteRange { start, end }, total))
}

/// The validators of a cached object.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    pub etag: &'a str,
    pub last_modified: Option<SystemTime>,
}

fn strip_weak(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Whether `If-None-Match` / `If-Modified-Since` let the edge answer 304.
/// `If-None-Match` (weak comparison) wins when both are present.
pub fn not_modified(if_none_match: Option<&str>, if_modified_since: Option<&str>, object: Validators<'_>) -> bool {
    if let Some(tags) = if_none_match {
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || strip_weak(tag) == strip_weak(object.etag));
    }
    match (
        if_modified_since.and_then(|d| httpdate::parse_http_date(d).ok()),
        object.last_modified,
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Whether an `If-Range` validator still names this object, so the Range
/// applies. An entity tag must match strongly; a date must equal Last-Modified.
pub fn if_range_matches(if_range: Option<&str>, object: Validators<'_>) -> bool {
    let Some(value) = if_range.map(str::trim) else {
        return true;
    };
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/") && !object.etag.starts_with("W/") && value == object.etag;
    }
    match (httpdate::parse_http_date(value), object.last_modified) {
        (Ok(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// The framing of a `multipart/byteranges` body.
#[derive(Clone, Copy, Debug)]
pub struct Multipart<'a> {
    pub boundary: &'a str,
    pub content_type: &'a str,
    pub size: u64,
}

impl Multipart<'_> {
    /// What precedes the bytes of `range`.
    pub fn part_head(&self, range: ByteRange) -> String {
        format!(
            "\r\n--{}\r\nContent-Type: {}\r\nContent-Range: {}\r\n\r\n",
            self.boundary,
            self.content_type,
            range.content_range(self.size)
        )
    }

    /// What ends the body.
    pub fn tail(&self) -> String {
        format!("\r\n--{}--\r\n", self.boundary)
    }

    /// The whole body's length, for `Content-Length`.
    pub fn content_length(&self, ranges: &[ByteRange]) -> u64 {
        ranges.iter().map(|r| self.part_head(*r).len() as u64 + r.length()).sum::<u64>() + self.tail().len() as u64
    }
}

#[cfg(test)]
mod tests;
