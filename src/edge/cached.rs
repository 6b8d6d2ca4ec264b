//! GET and HEAD, answered by the edge from its slice cache: hits from memory
//! or disk, misses filled slice by slice from the origin and streamed to the
//! viewer as they arrive.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{
    ACCEPT_RANGES, AGE, CONTENT_LENGTH, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::plan::{Plan, plan_response};
use super::respond::{self, BAD_GATEWAY, CREDENTIALS_REFUSED, EdgeError, GATEWAY_TIMEOUT, NOT_FOUND};
use super::state::EdgeState;
use super::{RequestContext, Viewer};
use crate::auth::error_xml;
use crate::cache::{FillError, FillReader, ObjectMeta, ObjectRef, Revalidation, SliceReader, SliceSource};
use crate::origin::OriginResponse;
use crate::range::ByteRange;
use crate::routing::Behavior;
use crate::routing::ErrorPage;

/// How a response was answered, for `X-Cache` and the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    RefreshHit,
    Miss,
}

impl CacheStatus {
    fn header(self) -> &'static str {
        match self {
            Self::Hit => "Hit from keyfront",
            Self::RefreshHit => "RefreshHit from keyfront",
            Self::Miss => "Miss from keyfront",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::RefreshHit => "refresh_hit",
            Self::Miss => "miss",
        }
    }
}

/// Why an answer stopped before it was complete.
enum Interrupted {
    /// The object changed at the origin before any byte went out: start over.
    ChangedBeforeSending,
    /// An error to report (before any byte went out) or to end the connection with.
    Failed(Box<Error>),
    /// The origin's error has a page of the distribution's in its place.
    ErrorPage(ErrorPage),
}

impl From<Box<Error>> for Interrupted {
    fn from(error: Box<Error>) -> Self {
        Self::Failed(error)
    }
}

/// The first bytes of a miss, fetched together with the metadata.
enum EarlyBytes<'a> {
    /// The fill of slice `index`.
    Fill { index: u64, reader: FillReader },
    /// A seek deep into an object not seen before: the origin's answer to
    /// the viewer's own range from `start` (to its slice's end at most),
    /// whose header gave the metadata. One origin round trip to the first
    /// byte; the aligned fill starts beside it.
    Direct { start: u64, response: Box<OriginResponse<'a>> },
}

/// Parsed once: a hit names its headers without parsing them again.
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The header a hit of `meta`'s version answers with, kept with the version
/// and cloned per hit: a 200 with the origin's replayed headers (its
/// `x-amz-meta-*` only if `forward_metadata`), `Accept-Ranges`, `X-Cache: Hit`,
/// `Age: 0` and the whole object's `Content-Length`. An answer replaces what
/// differs for it; a replaced header keeps its place and costs no allocation.
fn hit_template(meta: &ObjectMeta, forward_metadata: bool) -> ResponseHeader {
    // Without the map that keeps header names' case: HTTP/1 writes them in
    // lower case, as HTTP/2 must.
    let mut response = ResponseHeader::build_no_case(200, Some(meta.headers.len() + 6)).expect("200 is a status");
    let replayed = meta
        .response_headers()
        .filter(|(name, _)| forward_metadata || !name.as_str().starts_with("x-amz-meta-"));
    for (name, value) in replayed {
        response.insert_header(name, value).expect("a parsed header");
    }
    for (name, value) in [
        (ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (X_CACHE, HeaderValue::from_static(CacheStatus::Hit.header())),
        (AGE, HeaderValue::from_static("0")),
        (CONTENT_LENGTH, HeaderValue::from(meta.size)),
    ] {
        response.insert_header(name, value).expect("a valid header");
    }
    response
}

/// The `Age` header's value for `age` seconds. Every hit within a second
/// of another's answers with the same age: a thread's last value is kept
/// and shared, where a new one costs two allocations.
fn age_value(age: u64) -> HeaderValue {
    thread_local! {
        static LAST_AGE: std::cell::RefCell<(u64, HeaderValue)> = const { std::cell::RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    LAST_AGE.with_borrow_mut(|(last, value)| {
        if *last != age {
            (*last, *value) = (age, HeaderValue::from(age));
        }
        value.clone()
    })
}

/// Answers a GET or HEAD for `object`; the response is always written.
pub async fn serve(
    state: &EdgeState,
    session: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    behavior: &Behavior,
    object: ObjectRef,
) -> Result<()> {
    for _ in 0..2 {
        match answer(state, session, ctx, behavior, &object).await {
            Ok(()) => return Ok(()),
            Err(Interrupted::ChangedBeforeSending) => {
                // The fill that found the change has forgotten the old version.
                tracing::info!(path = %ctx.path, "object changed at the origin during a miss; starting over");
            }
            Err(Interrupted::Failed(error)) => return Err(error),
            // Boxed: a second `answer` in this future would double its size
            // (and the bytes every request copies as it starts).
            Err(Interrupted::ErrorPage(page)) => return Box::pin(serve_error_page(state, session, ctx, page, object.viewer)).await,
        }
    }
    respond::write_error(session, BAD_GATEWAY).await
}

/// The object a viewer's canonical `path` names under `behavior` of the
/// routing table `table` (see `ObjectRef::table`), whose origin path is
/// `origin_path`, asked for by `viewer` (`None`: another node).
pub fn object_ref(
    table: &Arc<str>,
    behavior: &Behavior,
    (path, origin_path, variant): (String, String, &str),
    site_hop: bool,
    viewer: Option<IpAddr>,
) -> ObjectRef {
    ObjectRef {
        failover: behavior.failover.clone(),
        sent: None,
        key: ObjectRef::cache_key(&behavior.origin_name, &origin_path, variant),
        table: table.clone(),
        path,
        site_hop,
        origin_name: behavior.origin_name.clone(),
        origin: behavior.origin.clone(),
        origin_path,
        ttl: behavior.ttl,
        slice_size: behavior.slice_size,
        viewer,
        error_caching: behavior.error_caching.clone(),
    }
}

/// The page of the request's distribution that replaces an origin's
/// `status`, unless this answer is already one.
fn error_page(ctx: &RequestContext, status: u16) -> Option<ErrorPage> {
    if ctx.error_page_status.is_some() {
        return None;
    }
    ctx.distribution.as_ref()?.error_page(status).cloned()
}

/// Answers with `page`, whole, under the status it names; a page that
/// cannot be served is an error of its own (never another page).
async fn serve_error_page(
    state: &EdgeState,
    session: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    page: ErrorPage,
    viewer: Option<IpAddr>,
) -> Result<()> {
    let distribution = ctx.distribution.clone().expect("pages come from a distribution");
    let found = distribution
        .behaviors
        .iter()
        .find(|behavior| behavior.matches(&page.page))
        .and_then(|behavior| Some((behavior, behavior.origin.object_path(&page.page)?)));
    let Some((behavior, origin_path)) = found else {
        return respond::write_error(session, NOT_FOUND).await;
    };
    let object = object_ref(&distribution.id, behavior, (page.page.clone(), origin_path, ""), false, viewer);
    ctx.error_page_status = Some(page.response_code);
    match answer(state, session, ctx, behavior, &object).await {
        Ok(()) => Ok(()),
        Err(Interrupted::Failed(error)) => Err(error),
        Err(Interrupted::ChangedBeforeSending | Interrupted::ErrorPage(_)) => respond::write_error(session, BAD_GATEWAY).await,
    }
}

fn origin_failure(error: &FillError) -> EdgeError {
    match error {
        FillError::Timeout(_) => GATEWAY_TIMEOUT,
        _ => BAD_GATEWAY,
    }
}

/// Where a miss should start fetching: the first offset the Range asks for
/// (`None` for suffix or unreadable ranges, which need the size first).
fn first_offset(range: Option<&str>) -> Option<u64> {
    let Some(range) = range else {
        return Some(0);
    };
    let first = range.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    first.split_once('-')?.0.parse().ok()
}

/// The viewer's single range `(first, last)` (`last` `None` when open),
/// when nothing else in the request (another range, a condition) could
/// change what the answer's bytes are.
fn plain_single_range(request: &pingora::http::RequestHeader) -> Option<(u64, Option<u64>)> {
    let conditional = [IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE, IF_RANGE];
    if conditional.iter().any(|name| request.headers.contains_key(name)) {
        return None;
    }
    let range = request.headers.get(RANGE)?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (first, last) = range.split_once('-')?;
    let first = first.trim().parse().ok()?;
    match last.trim() {
        "" => Some((first, None)),
        last => Some((first, Some(last.parse().ok()?))),
    }
}

async fn current_meta<'a>(
    state: &'a EdgeState,
    session: &Viewer<'_>,
    ctx: &mut RequestContext,
    object: &ObjectRef,
) -> Result<(Arc<ObjectMeta>, Option<EarlyBytes<'a>>, CacheStatus), FillError> {
    let (cache, now) = (&state.cache, ctx.now);
    match cache.meta(object).await {
        Some(meta) if meta.is_fresh(now) => Ok((meta, None, CacheStatus::Hit)),
        // A remembered error past its time is asked for again whole, as the
        // first time: a HEAD would come back without the origin's body, and
        // the viewer would get the edge's page in place of the origin's.
        Some(stale) if stale.status != 200 => Box::pin(first_meta(state, session, object)).await,
        Some(stale) if stale.usable_while_revalidating(now) => {
            cache.revalidate_in_background(object, stale.clone());
            Ok((stale, None, CacheStatus::Hit))
        }
        // The paths that ask upstream are boxed: each is far larger than a
        // hit's, and every hit's future (allocated and moved per request)
        // would otherwise carry them.
        Some(stale) => match Box::pin(cache.revalidate(object, &stale)).await {
            Ok(Revalidation::Unchanged(meta)) => Ok((meta, None, CacheStatus::RefreshHit)),
            Ok(Revalidation::Replaced(meta)) => Ok((meta, None, CacheStatus::Miss)),
            // A HEAD that gives no size (a custom origin's chunked page) says
            // nothing of the version: the object is fetched again.
            Err(FillError::LengthUnknown) => Box::pin(first_meta(state, session, object)).await,
            // Judged when the origin failed, which may be a timeout later.
            Err(error) if stale.status == 200 && stale.usable_on_error(cache.clock.unix_seconds()) => {
                tracing::warn!(path = %ctx.path, %error, "origin failed; serving a stale copy (stale-if-error)");
                Ok((stale, None, CacheStatus::Hit))
            }
            Err(error) => Err(error),
        },
        None => Box::pin(first_meta(state, session, object)).await,
    }
}

/// The metadata of an object not cached (or whose cached copy cannot be
/// revalidated by its header alone), from its first fill or a HEAD.
async fn first_meta<'a>(
    state: &'a EdgeState,
    session: &Viewer<'_>,
    object: &ObjectRef,
) -> Result<(Arc<ObjectMeta>, Option<EarlyBytes<'a>>, CacheStatus), FillError> {
    let cache = &state.cache;
    let header = session.req_header();
    let offset = first_offset(header.headers.get(RANGE).and_then(|v| v.to_str().ok()));
    // An offset past the largest object S3 stores cannot be served: the
    // size comes first (a HEAD), and the answer is a 416, not whatever
    // the origin makes of a range it cannot represent.
    let servable = |offset: &u64| *offset < MAX_OBJECT_BYTES && header.method == http::Method::GET;
    let Some(offset) = offset.filter(servable) else {
        return match cache.fetch_meta(object).await {
            // A HEAD that gives no size (a custom origin's chunked page):
            // the object's first slice tells it.
            Err(FillError::LengthUnknown) => filled_meta(state, object, 0).await.map(|(meta, _, status)| (meta, None, status)),
            other => other.map(|meta| (meta, None, CacheStatus::Miss)),
        };
    };
    let index = offset / object.slice_size;
    let slice_end = (index + 1) * object.slice_size - 1;
    let seek = plain_single_range(header).filter(|(first, _)| first % object.slice_size >= DIRECT_SEEK_BYTES);
    if let Some((start, last)) = seek
        && let Some((meta, response)) = state
            .cache
            .seek_cold(object, start, last.map_or(slice_end, |l| l.min(slice_end)))
            .await
    {
        let response = Box::new(response);
        return Ok((meta, Some(EarlyBytes::Direct { start, response }), CacheStatus::Miss));
    }
    filled_meta(state, object, index).await
}

/// The metadata a fill of slice `index` of an object not cached finds,
/// with the fill to read its bytes from.
async fn filled_meta<'a>(
    state: &'a EdgeState,
    object: &ObjectRef,
    index: u64,
) -> Result<(Arc<ObjectMeta>, Option<EarlyBytes<'a>>, CacheStatus), FillError> {
    let cache = &state.cache;
    let reader = cache.start_fill(object, None, index);
    match reader.meta().await {
        Ok(meta) => Ok((meta, Some(EarlyBytes::Fill { index, reader }), CacheStatus::Miss)),
        Err(FillError::Unsatisfiable) => cache.fetch_meta(object).await.map(|meta| (meta, None, CacheStatus::Miss)),
        Err(FillError::OriginStatus(status, body)) => {
            let mut meta = ObjectMeta::error(status, std::time::Duration::ZERO, cache.clock.unix_seconds());
            meta.error_body = body;
            Ok((Arc::new(meta), None, CacheStatus::Miss))
        }
        Err(error) => Err(error),
    }
}

async fn answer(
    state: &EdgeState,
    session: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    behavior: &Behavior,
    object: &ObjectRef,
) -> Result<(), Interrupted> {
    let (meta, mut first_slice, status) = match current_meta(state, session, ctx, object).await {
        Ok(found) => found,
        Err(FillError::Changed(_)) => return Err(Interrupted::ChangedBeforeSending),
        Err(error) => {
            tracing::error!(path = %ctx.path, %error, "origin request failed");
            let failure = origin_failure(&error);
            if let Some(page) = error_page(ctx, failure.status) {
                return Err(Interrupted::ErrorPage(page));
            }
            respond::write_error(session, failure).await?;
            return Ok(());
        }
    };
    ctx.cache_status = Some(status);
    if let Some(page) = error_page(ctx, meta.status).filter(|_| meta.status != 200) {
        return Err(Interrupted::ErrorPage(page));
    }
    if meta.status != 200 {
        match meta.status {
            _ if meta.error_body.is_some() => {
                let body = meta.error_body.as_ref().expect("matched");
                respond::write_origin_error(session, meta.status, body).await?;
            }
            404 => respond::write_error(session, NOT_FOUND).await?,
            403 if behavior.origin.is_signed() => {
                tracing::error!(origin = %behavior.origin_name, path = %ctx.path, "{CREDENTIALS_REFUSED}");
                respond::write_error(session, BAD_GATEWAY).await?;
            }
            other => respond::write_xml(session, other, error_xml("OriginError", "The origin answered with an error.")).await?,
        }
        return Ok(());
    }
    let mut response = meta
        .response_template(behavior.forward_metadata_headers, |meta| {
            hit_template(meta, behavior.forward_metadata_headers)
        })
        .clone();
    if status != CacheStatus::Hit {
        response.insert_header(X_CACHE, HeaderValue::from_static(status.header()))?;
    }
    let age = meta.age(ctx.now);
    if age > 0 {
        response.insert_header(AGE, age_value(age))?;
    }
    let Plan {
        header: mut response,
        body,
        framing,
    } = plan_response(&meta, response, session.req_header(), ctx.error_page_status)?;
    if body.is_empty() {
        session.write_response_header(Box::new(response)).await?;
        return Ok(());
    }
    // The first slice is resolved before any byte goes out, so that a version
    // change found there starts the answer over instead of breaking it.
    let first_index = body[0].start / meta.slice_size;
    let (early_fill, early_direct) = match first_slice.take() {
        Some(EarlyBytes::Fill { index, reader }) if index == first_index => (Some(reader), None),
        Some(EarlyBytes::Direct { start, response }) if start == body[0].start => (None, Some(response)),
        _ => (None, None),
    };
    let cache = &state.cache;
    let cached = match early_fill {
        Some(_) => None,
        None => cache.cached_slice(object, &meta, first_index).await,
    };
    // A miss deep inside a slice asks the origin for the viewer's bytes first,
    // then starts the aligned fill, so the fill does not queue ahead of them.
    let deep_seek = body[0].start % meta.slice_size >= DIRECT_SEEK_BYTES;
    let direct = match (&cached, early_direct) {
        (Some(_), _) => None,
        (_, Some(response)) => Some(response),
        _ if deep_seek => Box::pin(direct_fetch(state, object, &meta, body[0])).await.map(Box::new),
        _ => None,
    };
    let first = match direct {
        Some(response) => {
            cache.prefetch(object, &meta, first_index);
            FirstBytes::Direct(response)
        }
        None => {
            let found = early_fill.map(SliceSource::Filling).or(cached);
            match SliceReader::start(cache, object, &meta, first_index, slice_offsets(&meta, body[0], first_index), found).await {
                Ok(reader) => FirstBytes::Slice(reader),
                Err(FillError::Changed(_)) => return Err(Interrupted::ChangedBeforeSending),
                Err(error) => {
                    tracing::error!(path = %ctx.path, %error, "origin request failed");
                    respond::write_error(session, origin_failure(&error)).await?;
                    return Ok(());
                }
            }
        }
    };
    // Fresh metadata alone is no hit: when the bytes come from the origin,
    // the answer is a miss, in X-Cache, the metrics and the access log.
    if status == CacheStatus::Hit && !matches!(&first, FirstBytes::Slice(reader) if reader.is_hit()) {
        ctx.cache_status = Some(CacheStatus::Miss);
        response.insert_header(X_CACHE, HeaderValue::from_static(CacheStatus::Miss.header()))?;
    }
    session.write_response_header(Box::new(response)).await?;
    let multipart = body.len() > 1;
    let mut first = Some(first);
    for range in &body {
        if multipart {
            session
                .write_response_body(Some(Bytes::from(framing.part_head(*range))), false)
                .await?;
        }
        stream_range(state, session, object, &meta, *range, &mut first).await?;
    }
    if multipart {
        session.write_response_body(Some(Bytes::from(framing.tail())), false).await?;
    }
    session.write_response_body(None, true).await?;
    Ok(())
}

/// The offsets in slice `index` of the bytes of `range` it holds.
fn slice_offsets(meta: &ObjectMeta, range: ByteRange, index: u64) -> (u64, u64) {
    let slice_start = index * meta.slice_size;
    let from = range.start.max(slice_start) - slice_start;
    let last = range.end.min(slice_start + meta.slice_length(index) - 1) - slice_start;
    (from, last)
}

/// Writes the bytes of `range`, slice by slice and part by part, starting
/// the next slice's fetch while the current one is sent.
async fn stream_range(
    state: &EdgeState,
    session: &mut Viewer<'_>,
    object: &ObjectRef,
    meta: &Arc<ObjectMeta>,
    range: ByteRange,
    first: &mut Option<FirstBytes<'_>>,
) -> Result<(), Interrupted> {
    let cache = &state.cache;
    let (first_index, last_index) = (range.start / meta.slice_size, range.end / meta.slice_size);
    // Bytes already went out: a slice that fails ends the connection, never
    // stitched, and the next request starts from the origin's current
    // version (a fill that finds a change forgets the old one).
    let broken = |index: u64, error: FillError| Error::explain(ErrorType::ReadError, format!("slice {index}: {error}"));
    for index in first_index..=last_index {
        if index < last_index {
            cache.prefetch(object, meta, index + 1);
        }
        let (from, last) = slice_offsets(meta, range, index);
        let reader = match first.take() {
            Some(FirstBytes::Direct(mut response)) if index == first_index => {
                let written = Box::pin(stream_direct(session, &mut response, last - from + 1)).await?;
                if from + written > last {
                    continue;
                }
                // The direct source broke off: the rest is the same version's,
                // from the aligned fill (which resumes past a failed node).
                SliceReader::start(cache, object, meta, index, (from + written, last), None).await
            }
            Some(FirstBytes::Slice(reader)) if index == first_index => Ok(reader),
            _ => SliceReader::start(cache, object, meta, index, (from, last), None).await,
        };
        let mut reader = reader.map_err(|error| broken(index, error))?;
        // A part that came from upstream goes out before the next is waited
        // for; a cached slice's parts are all there, and leave together.
        let arriving = !reader.is_hit();
        while let Some(part) = reader.next_part().await.map_err(|error| broken(index, error))? {
            session.write_response_body(Some(part), false).await?;
            if arriving {
                session.send_now().await?;
            }
        }
    }
    Ok(())
}

/// S3's largest object, 5 TiB.
const MAX_OBJECT_BYTES: u64 = 5 << 40;

/// A seek this far or further into a slice that is not cached yet fetches the
/// viewer's bytes directly, instead of waiting for the fill to reach them.
const DIRECT_SEEK_BYTES: u64 = 64 * 1024;

/// Where the first bytes of an answer come from.
enum FirstBytes<'a> {
    /// The first slice: cached, or arriving through the fill shared with
    /// others; its first part already read.
    Slice(SliceReader<'a>),
    /// A miss deep inside a slice: the viewer's bytes of that slice, fetched
    /// from the origin directly while the aligned fill runs on for the cache.
    /// A seek thus costs at most two slices of origin bytes, and its first byte
    /// waits for the origin's first byte, not for the slice's prefix.
    Direct(Box<OriginResponse<'a>>),
}

/// Asks the origin for the bytes of `range` within its first slice, of this
/// version only (`If-Match`). `None` if the origin answers anything else,
/// or gave the version no ETag to ask by; the caller then reads the fill.
async fn direct_fetch<'a>(state: &'a EdgeState, object: &ObjectRef, meta: &ObjectMeta, range: ByteRange) -> Option<OriginResponse<'a>> {
    let etag = meta.origin_etag()?;
    let slice_end = (range.start / meta.slice_size + 1) * meta.slice_size - 1;
    let end = range.end.min(slice_end).min(meta.size - 1);
    let asked = format!("bytes={}-{end}", range.start);
    let headers = [("range", asked.as_str()), ("if-match", etag)];
    let response = state.cache.send(object, "GET", &headers).await.ok()?;
    let expected = format!("bytes {}-{end}/{}", range.start, meta.size);
    let right = response.status() == 206 && response.header_value("content-range") == Some(expected.as_str());
    (right && response.header_value("etag") == Some(etag)).then_some(response)
}

/// Writes up to `length` bytes of a direct response; how many it wrote
/// before its source broke off or ended early, `length` when it did not.
async fn stream_direct(session: &mut Viewer<'_>, response: &mut OriginResponse<'_>, length: u64) -> Result<u64, Interrupted> {
    let mut written = 0u64;
    while written < length {
        let chunk = match response.next_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(written),
            Err(error) => {
                tracing::warn!(%error, written, "a direct range broke off; the rest comes from the slice");
                return Ok(written);
            }
        };
        let part = chunk.slice(..chunk.len().min((length - written) as usize));
        written += part.len() as u64;
        session.write_response_body(Some(part), false).await?;
        session.send_now().await?;
    }
    // Reading the end of the body hands the connection back to the pool.
    let _ = response.next_chunk().await;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::{age_value, first_offset};

    #[test]
    fn the_age_a_thread_keeps_is_the_age_asked_for() {
        for age in [7, 7, 8, 7, 1_000_000_007, 1] {
            assert_eq!(age_value(age), age.to_string().as_str());
        }
        // Another thread keeps its own.
        std::thread::spawn(|| assert_eq!(age_value(9), "9")).join().unwrap();
        assert_eq!(age_value(1), "1");
    }

    #[test]
    fn where_a_miss_starts() {
        assert_eq!(first_offset(None), Some(0));
        assert_eq!(first_offset(Some("bytes=5000-6000")), Some(5000));
        assert_eq!(first_offset(Some("bytes=5000-,0-1")), Some(5000));
        assert_eq!(first_offset(Some("bytes=-500")), None);
        assert_eq!(first_offset(Some("rows=1-2")), None);
    }
}
