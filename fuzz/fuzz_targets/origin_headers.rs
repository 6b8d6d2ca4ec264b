//! What an origin answers: `Content-Range` is accepted only inside the
//! object, and `Cache-Control`/`Expires` give a TTL within the behavior's
//! Min and Max, whatever they say.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use keyfront::cache::freshness;
use keyfront::config::Ttl;
use keyfront::range::parse_content_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (content_range, cache_control, expires) = (lines.next(), lines.next(), lines.next());
    if let Some((range, total)) = content_range.and_then(parse_content_range) {
        assert!(range.start <= range.end && range.end < total);
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    for (min, max) in [(0, 31_536_000), (60, 3600), (0, 0)] {
        let ttl = Ttl {
            min: Duration::from_secs(min),
            default: Duration::from_secs(min.max(max.min(86_400))),
            max: Duration::from_secs(max),
        };
        let fresh = freshness(&ttl, cache_control, expires, now);
        assert!(ttl.min <= fresh.ttl && fresh.ttl <= ttl.max, "{fresh:?} outside {ttl:?}");
    }
});
