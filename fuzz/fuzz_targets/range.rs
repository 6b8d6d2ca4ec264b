//! `Range` and `If-Range` against an object of any size: a partial answer
//! never covers bytes outside the object, never overlaps, never exceeds the
//! range limit, and is in the order asked.
#![no_main]

use keyfront::range::{MAX_RANGES, RangeRequest, Validators, if_range_matches, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    let Ok(header) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let (range, if_range) = header.split_once('\n').unwrap_or((header, ""));
    let validators = Validators {
        etag: "\"v1\"",
        last_modified: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
    };
    let _ = if_range_matches(Some(if_range), validators);
    match parse_range(Some(range), size) {
        RangeRequest::Partial(ranges) => {
            assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
            for range in &ranges {
                assert!(range.start <= range.end && range.end < size, "{range:?} of {size}");
            }
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            assert!(sorted.windows(2).all(|pair| pair[0].end < pair[1].start));
        }
        RangeRequest::Unsatisfiable => assert!(size > 0),
        RangeRequest::Full => {}
    }
});
