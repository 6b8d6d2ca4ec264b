//! The cache's own figures: its origin and fleet requests and what happens in
//! its tiers. The cache counts them; `metrics` registers them for export
//! (the cache never imports `metrics`).

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

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
    /// Slice bytes held outside the tiers' budgets: arriving in fills, and
    /// filled but waiting for their disk write.
    pub filling_bytes: IntGauge,
    pub unwritten_bytes: IntGauge,
    outside_tiers: IntGaugeVec,
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

    /// Every metric above, for a registry to export.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.origin_requests.clone()),
            Box::new(self.origin_seconds.clone()),
            Box::new(self.parent_requests.clone()),
            Box::new(self.parent_seconds.clone()),
            Box::new(self.coalesced_waits.clone()),
            Box::new(self.evictions.clone()),
            Box::new(self.disk_errors.clone()),
            Box::new(self.disk_degraded.clone()),
            Box::new(self.outside_tiers.clone()),
        ]
    }
}

impl Default for CacheMetrics {
    fn default() -> Self {
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
        let seconds = |name: &str, help: &str, label: &str| {
            let buckets = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label]).expect("a valid metric definition")
        };
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("a valid metric definition");
        let outside_tiers = IntGaugeVec::new(
            Opts::new(
                "keyfront_cache_outside_tiers_bytes",
                "Slice bytes held outside the tiers' budgets: arriving in fills (filling), filled and waiting for their disk write (unwritten).",
            ),
            &["held_by"],
        )
        .expect("a valid metric definition");
        Self {
            filling_bytes: outside_tiers.with_label_values(&["filling"]),
            unwritten_bytes: outside_tiers.with_label_values(&["unwritten"]),
            outside_tiers,
            origin_requests: counter_vec(
                "keyfront_origin_requests_total",
                "Requests the cache made to origins, by outcome.",
                &["origin", "outcome"],
            ),
            origin_seconds: seconds(
                "keyfront_origin_request_seconds",
                "Time from sending a cache request to the origin to its response header.",
                "origin",
            ),
            parent_requests: counter_vec(
                "keyfront_parent_requests_total",
                "Requests the cache made to fleet parents, by outcome.",
                &["parent", "outcome"],
            ),
            parent_seconds: seconds(
                "keyfront_parent_request_seconds",
                "Time from sending a cache request to a fleet parent to its response header.",
                "parent",
            ),
            coalesced_waits: counter(
                "keyfront_coalesced_waits_total",
                "Requests that joined a slice fill already under way.",
            ),
            evictions: counter_vec("keyfront_cache_evictions_total", "Slices evicted by a tier's budget.", &["tier"]),
            disk_errors: counter("keyfront_disk_errors_total", "Disk tier failures: damaged files, failed writes."),
            disk_degraded: IntGauge::new(
                "keyfront_disk_degraded",
                "1 while the disk tier's writes fail (viewers are served from memory), else 0.",
            )
            .expect("a valid metric definition"),
        }
    }
}
