//! The Prometheus registry: one struct owns every metric the edge exports.
//! Request metrics are recorded in pingora's `logging` phase, so failed
//! requests count too; the cache's and the origin client's own counters are
//! read when `/metrics` is scraped.

use std::sync::atomic::Ordering;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::cache::Cache;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    response_body_bytes: IntCounterVec,
    signature_rejections: IntCounterVec,
    origin_requests: IntCounter,
    origin_body_bytes: IntCounter,
    origin_failures: IntCounter,
    cache_bytes: IntGaugeVec,
    cache_items: IntGaugeVec,
    config_reloads: IntCounterVec,
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

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
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
            origin_requests: counter(
                &registry,
                "keyfront_origin_requests_total",
                "Requests the cache made to origins (fills, revalidations, HEADs).",
            ),
            origin_body_bytes: counter(
                &registry,
                "keyfront_origin_body_bytes_total",
                "Body bytes the cache read from origins.",
            ),
            origin_failures: counter(
                &registry,
                "keyfront_origin_failures_total",
                "Cache requests to origins that failed (unreachable, timed out, broken off).",
            ),
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
        let status = request.status.to_string();
        self.requests
            .with_label_values(&[request.behavior, request.method, &status, request.cache])
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
        sync(&self.origin_requests, stats.requests.load(Ordering::Relaxed));
        sync(&self.origin_body_bytes, stats.body_bytes.load(Ordering::Relaxed));
        sync(&self.origin_failures, stats.failures.load(Ordering::Relaxed));
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
