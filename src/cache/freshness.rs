//! How long an object stays fresh: CloudFront's rules for a behavior's
//! min/default/max TTL against the origin's `Cache-Control` and `Expires`.

use std::time::{Duration, SystemTime};

use crate::config::Ttl;

/// The caching decision for one origin response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// How long the object is served without asking the origin.
    pub ttl: Duration,
    /// Whether the object may be kept at all (`no-store`/`private` with a
    /// minimum TTL of 0 say no: the bytes go to the viewer and are dropped).
    pub storable: bool,
    /// After `ttl`, how long a stale copy may be served while it is revalidated.
    pub stale_while_revalidate: Duration,
    /// After `ttl`, how long a stale copy may be served when the origin fails.
    pub stale_if_error: Duration,
}

fn directive(cache_control: &str, name: &str) -> Option<Option<u64>> {
    cache_control.split(',').map(str::trim).find_map(|part| {
        let (key, value) = part
            .split_once('=')
            .map_or((part, None), |(k, v)| (k.trim(), Some(v.trim().trim_matches('"'))));
        key.eq_ignore_ascii_case(name).then(|| value.and_then(|v| v.parse().ok()))
    })
}

/// Applies CloudFront's rules:
/// - min TTL 0: `s-maxage`, else `max-age`, capped at max; else `Expires`
///   (capped at max); else the default. `no-store`, `no-cache` and `private`
///   mean a TTL of 0, and `no-store`/`private` mean not stored.
/// - min TTL above 0: the origin's value clamped to [min, max]; even
///   `no-store`, `no-cache` and `private` objects are kept for min.
pub fn freshness(ttl: &Ttl, cache_control: Option<&str>, expires: Option<&str>, now: SystemTime) -> Freshness {
    let control = cache_control.unwrap_or("");
    let forbids_storing = directive(control, "no-store").is_some() || directive(control, "private").is_some();
    let forbids_reuse = forbids_storing || directive(control, "no-cache").is_some();
    let origin_seconds = directive(control, "s-maxage")
        .flatten()
        .or_else(|| directive(control, "max-age").flatten())
        .map(Duration::from_secs)
        .or_else(|| {
            let expires = httpdate::parse_http_date(expires?).ok()?;
            Some(expires.duration_since(now).unwrap_or(Duration::ZERO))
        });
    let chosen = if forbids_reuse {
        ttl.min
    } else if ttl.min.is_zero() {
        origin_seconds.map_or(ttl.default, |s| s.min(ttl.max))
    } else {
        origin_seconds.unwrap_or(ttl.default).clamp(ttl.min, ttl.max)
    };
    let seconds = |name| directive(control, name).flatten().map_or(Duration::ZERO, Duration::from_secs);
    Freshness {
        ttl: chosen,
        storable: !(forbids_storing && ttl.min.is_zero()),
        stale_while_revalidate: seconds("stale-while-revalidate"),
        stale_if_error: seconds("stale-if-error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn ttl(min: u64, default: u64, max: u64) -> Ttl {
        Ttl {
            min: Duration::from_secs(min),
            default: Duration::from_secs(default),
            max: Duration::from_secs(max),
        }
    }

    fn seconds(ttl_rule: &Ttl, cache_control: Option<&str>, expires: Option<&str>) -> (u64, bool) {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 12:00:00 GMT").unwrap();
        let f = freshness(ttl_rule, cache_control, expires, now);
        (f.ttl.as_secs(), f.storable)
    }

    #[test]
    fn cloudfront_ttl_table() {
        let zero_min = ttl(0, DAY, 365 * DAY);
        // (rule, Cache-Control, Expires, (TTL seconds, storable))
        type Case<'a> = (&'a Ttl, Option<&'a str>, Option<&'a str>, (u64, bool));
        let cases: &[Case] = &[
            (&zero_min, None, None, (DAY, true)),
            (&zero_min, Some("max-age=60"), None, (60, true)),
            (&zero_min, Some("public, max-age=60, s-maxage=120"), None, (120, true)),
            (&zero_min, Some("max-age=999999999"), None, (365 * DAY, true)),
            (&zero_min, None, Some("Sun, 22 Nov 2026 13:00:00 GMT"), (3600, true)),
            (&zero_min, Some("max-age=60"), Some("Sun, 22 Nov 2026 13:00:00 GMT"), (60, true)),
            (&zero_min, None, Some("Sun, 22 Nov 2026 11:00:00 GMT"), (0, true)),
            (&zero_min, Some("no-cache"), None, (0, true)),
            (&zero_min, Some("no-store"), None, (0, false)),
            (&zero_min, Some("private, max-age=600"), None, (0, false)),
            (&ttl(300, DAY, 2 * DAY), Some("max-age=60"), None, (300, true)),
            (&ttl(300, DAY, 2 * DAY), Some("max-age=999999"), None, (2 * DAY, true)),
            (&ttl(300, DAY, 2 * DAY), Some("no-store"), None, (300, true)),
            (&ttl(300, 600, 2 * DAY), None, None, (600, true)),
        ];
        for (rule, cache_control, expires, expected) in cases {
            assert_eq!(
                seconds(rule, *cache_control, *expires),
                *expected,
                "{cache_control:?} {expires:?} {rule:?}"
            );
        }
    }

    #[test]
    fn stale_windows() {
        let f = freshness(
            &ttl(0, DAY, DAY),
            Some("max-age=10, stale-while-revalidate=30, stale-if-error=600"),
            None,
            SystemTime::now(),
        );
        assert_eq!((f.stale_while_revalidate.as_secs(), f.stale_if_error.as_secs()), (30, 600));
    }
}
