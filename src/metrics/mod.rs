//! The Prometheus registry: one struct owns every metric the edge exports.
//! Request metrics are recorded in pingora's `logging` phase, so failed
//! requests count too; the cache's and the origin client's own counters are
//! read when `/metrics` is scraped.

use std::sync::atomic::Ordering;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::cache::Cache;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    response_body_bytes: IntCounterVec,
    signature_rejections: IntCounterVec,
    origin_body_bytes: IntCounter,
    fleet_body_bytes: IntCounter,
    /// Handed to the cache, which records its origin traffic and its events.
    pub cache: CacheMetrics,
    cache_bytes: IntGaugeVec,
    cache_items: IntGaugeVec,
    config_reloads: IntCounterVec,
}

/// The cache's own metrics: its origin requests and what happens in its tiers.
#[derive(Clone)]
pub struct CacheMetrics {
    origin_requests: IntCounterVec,
    origin_seconds: HistogramVec,
    parent_requests: IntCounterVec,
    parent_seconds: HistogramVec,
    /// Requests that joined a slice fill another request had started.
    pub coalesced_waits: IntCounter,
    /// Slices pushed out of a tier by its budget.
    pub evictions: IntCounterVec,
    /// Disk tier failures: damaged files found, writes that failed.
    pub disk_errors: IntCounter,
    /// 1 while the disk tier's writes fail (memory still serves), else 0.
    pub disk_degraded: IntGauge,
}

impl CacheMetrics {
    /// Counts an origin request by origin and outcome (`2xx`..`5xx`,
    /// `timeout`, `error`) with the time to its response header.
    pub fn origin_answered(&self, origin: &str, outcome: &str, seconds: f64) {
        self.origin_requests.with_label_values(&[origin, outcome]).inc();
        self.origin_seconds.with_label_values(&[origin]).observe(seconds);
    }

    /// Counts a request to a fleet parent by parent and outcome, with the
    /// time to its response header.
    pub fn parent_answered(&self, parent: &str, outcome: &str, seconds: f64) {
        self.parent_requests.with_label_values(&[parent, outcome]).inc();
        self.parent_seconds.with_label_values(&[parent]).observe(seconds);
    }

    fn register(registry: &Registry) -> Self {
        Self {
            origin_requests: counter_vec(
                registry,
                "keyfront_origin_requests_total",
                "Requests the cache made to origins, by outcome.",
                &["origin", "outcome"],
            ),
            origin_seconds: seconds_histogram(
                registry,
                "keyfront_origin_request_seconds",
                "Time from sending a cache request to the origin to its response header.",
                "origin",
            ),
            parent_requests: counter_vec(
                registry,
                "keyfront_parent_requests_total",
                "Requests the cache made to fleet parents, by outcome.",
                &["parent", "outcome"],
            ),
            parent_seconds: seconds_histogram(
                registry,
                "keyfront_parent_request_seconds",
                "Time from sending a cache request to a fleet parent to its response header.",
                "parent",
            ),
            coalesced_waits: counter(
                registry,
                "keyfront_coalesced_waits_total",
                "Requests that joined a slice fill already under way.",
            ),
            evictions: counter_vec(
                registry,
                "keyfront_cache_evictions_total",
                "Slices evicted by a tier's budget.",
                &["tier"],
            ),
            disk_errors: counter(
                registry,
                "keyfront_disk_errors_total",
                "Disk tier failures: damaged files, failed writes.",
            ),
            disk_degraded: {
                let metric = IntGauge::new(
                    "keyfront_disk_degraded",
                    "1 while the disk tier's writes fail (viewers are served from memory), else 0.",
                )
                .expect("a valid metric definition");
                registry.register(Box::new(metric.clone())).expect("a metric registered once");
                metric
            },
        }
    }
}

/// What the logging phase knows of a finished request.
pub struct RequestRecord<'a> {
    pub behavior: &'a str,
    pub method: &'a str,
    pub status: u16,
    /// `hit`, `refresh_hit`, `miss`, or `none` (refused, or not a GET/HEAD).
    pub cache: &'a str,
    pub body_bytes: u64,
    /// The CloudFront error code of a refused signature.
    pub rejection: Option<&'a str>,
}

/// The `method` label: the methods CloudFront passes, and `other` for the
/// rest, so viewers cannot mint label values (each is a series kept forever).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

fn seconds_histogram(registry: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    let buckets = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label]).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        Self {
            requests: counter_vec(
                &registry,
                "keyfront_requests_total",
                "Viewer requests answered.",
                &["behavior", "method", "status", "cache"],
            ),
            response_body_bytes: counter_vec(
                &registry,
                "keyfront_response_body_bytes_total",
                "Body bytes sent to viewers.",
                &["behavior"],
            ),
            signature_rejections: counter_vec(
                &registry,
                "keyfront_signature_rejections_total",
                "Requests refused by signature checks, by CloudFront error code.",
                &["code"],
            ),
            origin_body_bytes: counter(
                &registry,
                "keyfront_origin_body_bytes_total",
                "Body bytes the cache read from origins.",
            ),
            fleet_body_bytes: counter(
                &registry,
                "keyfront_fleet_body_bytes_total",
                "Body bytes the cache read from other nodes of its fleet (parents, site peers).",
            ),
            cache: CacheMetrics::register(&registry),
            cache_bytes: gauge_vec(&registry, "keyfront_cache_bytes", "Bytes held by each cache tier.", &["tier"]),
            cache_items: gauge_vec(&registry, "keyfront_cache_items", "Slices held by each cache tier.", &["tier"]),
            config_reloads: counter_vec(
                &registry,
                "keyfront_config_reloads_total",
                "Config reloads, applied or refused.",
                &["outcome"],
            ),
            registry,
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, request: &RequestRecord<'_>) {
        let status = http::StatusCode::from_u16(request.status);
        let status = status.as_ref().map_or("0", http::StatusCode::as_str);
        self.requests
            .with_label_values(&[request.behavior, method_label(request.method), status, request.cache])
            .inc();
        self.response_body_bytes
            .with_label_values(&[request.behavior])
            .inc_by(request.body_bytes);
        if let Some(code) = request.rejection {
            self.signature_rejections.with_label_values(&[code]).inc();
        }
    }

    /// Counts a config reload, applied or refused.
    pub fn record_reload(&self, applied: bool) {
        self.config_reloads
            .with_label_values(&[if applied { "applied" } else { "refused" }])
            .inc();
    }

    /// The Prometheus text exposition, with the cache's figures as of now.
    pub fn render(&self, cache: &Cache) -> String {
        let stats = &cache.client.stats;
        let sync = |metric: &IntCounter, value: u64| metric.inc_by(value.saturating_sub(metric.get()));
        sync(&self.origin_body_bytes, stats.body_bytes.load(Ordering::Relaxed));
        sync(&self.fleet_body_bytes, stats.fleet_body_bytes.load(Ordering::Relaxed));
        let ((memory_bytes, memory_items), disk) = cache.usage();
        let gauge =
            |metric: &IntGaugeVec, tier: &str, value: u64| metric.with_label_values(&[tier]).set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge(&self.cache_bytes, "memory", memory_bytes);
        gauge(&self.cache_items, "memory", memory_items);
        if let Some((disk_bytes, disk_items)) = disk {
            gauge(&self.cache_bytes, "disk", disk_bytes);
            gauge(&self.cache_items, "disk", disk_items);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding of gathered metrics");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn method_labels_are_a_fixed_set() {
        assert_eq!(super::method_label("GET"), "GET");
        assert_eq!(super::method_label("DELETE"), "DELETE");
        assert_eq!(super::method_label("get"), "other");
        assert_eq!(super::method_label("XYZZY-1234"), "other");
    }
}
