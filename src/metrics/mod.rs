//! The Prometheus registry: one struct owns every metric the edge exports.
//! Request metrics are recorded in pingora's `logging` phase, so failed
//! requests count too, by each thread on its own (`tally`); they, the
//! cache's figures and the origin client's counters are read when
//! `/metrics` is scraped.

mod tally;

use std::sync::atomic::Ordering;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::cache::Cache;

pub struct Metrics {
    registry: Registry,
    /// Request counts, kept by each thread and folded into `requests`,
    /// `response_body_bytes` and `signature_rejections` at scrape.
    tallies: tally::Tallies,
    requests: IntCounterVec,
    response_body_bytes: IntCounterVec,
    signature_rejections: IntCounterVec,
    origin_body_bytes: IntCounter,
    fleet_body_bytes: IntCounter,
    access_log_dropped: IntCounter,
    control_entries_refused: IntCounter,
    control_log_read: IntGauge,
    process_resident: IntGauge,
    cache_bytes: IntGaugeVec,
    cache_budget: IntGaugeVec,
    cache_items: IntGaugeVec,
    config_reloads: IntCounterVec,
    function_failures: FunctionFailures,
    name_members: IntGaugeVec,
    name_resolving: IntGaugeVec,
    name_failures: IntCounterVec,
}

/// CloudFront Functions' failures (each answered 503), by function, event
/// and reason: cheap to clone into what runs a function later.
#[derive(Clone)]
pub struct FunctionFailures(IntCounterVec);

impl FunctionFailures {
    pub fn record(&self, function: &str, event: &str, reason: &str) {
        self.0.with_label_values(&[function, event, reason]).inc();
    }
}

/// Figures kept outside the registry, read at each scrape.
pub struct ScrapeFigures {
    pub access_log_dropped: u64,
    /// Entries of the fleet's control log refused, and when it was last
    /// read whole (Unix milliseconds), for a node that reads one.
    pub control_log: Option<(u64, u64)>,
    /// Each fleet member name: its members now, whether it resolves, and
    /// its failed resolutions in all.
    pub member_names: Vec<MemberName>,
}

/// What a fleet member name gives, for its metrics.
pub struct MemberName {
    pub name: String,
    pub members: usize,
    pub resolving: bool,
    pub failures: u64,
}

/// What the logging phase knows of a finished request.
pub struct RequestRecord<'a> {
    pub behavior: &'a str,
    pub method: &'a str,
    pub status: u16,
    /// `hit`, `refresh_hit`, `miss`, or `none` (refused, or not a GET/HEAD).
    pub cache: &'static str,
    pub body_bytes: u64,
    /// The CloudFront error code of a refused signature.
    pub rejection: Option<&'static str>,
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

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(metric.clone())).expect("a metric registered once");
    metric
}

impl Metrics {
    /// The registry, with `cache`'s own metrics in it, and the control
    /// log's age for a node that `reads_control_log`.
    pub fn new(cache: &Cache, reads_control_log: bool) -> Self {
        let registry = Registry::new();
        for collector in cache.metrics.collectors() {
            registry.register(collector).expect("a metric registered once");
        }
        let control_log_read = IntGauge::new(
            "keyfront_control_log_read_timestamp_seconds",
            "When this node last read the fleet's control log whole (Unix seconds; 0 before it first did).",
        )
        .expect("a valid metric definition");
        if reads_control_log {
            registry
                .register(Box::new(control_log_read.clone()))
                .expect("a metric registered once");
        }
        Self {
            control_log_read,
            tallies: tally::Tallies::default(),
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
            access_log_dropped: counter(
                &registry,
                "keyfront_access_log_dropped_lines_total",
                "Access-log lines dropped because the log's writer fell behind (requests never wait for it).",
            ),
            control_entries_refused: counter(
                &registry,
                "keyfront_control_entries_refused_total",
                "Entries of the fleet's control log skipped unapplied: unsigned, signed with another secret, malformed or too large.",
            ),
            process_resident: gauge(
                &registry,
                "keyfront_process_resident_bytes",
                "The process's resident memory (RSS), to compare with its memory budget.",
            ),
            cache_bytes: gauge_vec(&registry, "keyfront_cache_bytes", "Bytes held by each cache tier.", &["tier"]),
            cache_budget: gauge_vec(
                &registry,
                "keyfront_cache_budget_bytes",
                "Each cache tier's budget (cache.memory, cache.disk.size).",
                &["tier"],
            ),
            cache_items: gauge_vec(&registry, "keyfront_cache_items", "Slices held by each cache tier.", &["tier"]),
            config_reloads: counter_vec(
                &registry,
                "keyfront_config_reloads_total",
                "Config reloads, applied or refused.",
                &["outcome"],
            ),
            name_members: gauge_vec(
                &registry,
                "keyfront_fleet_member_name_members",
                "The fleet members a DNS or SRV name gives now (the last good set while it fails).",
                &["name"],
            ),
            name_resolving: gauge_vec(
                &registry,
                "keyfront_fleet_member_name_resolving",
                "1 while a fleet member name resolves, 0 while it fails (its last members kept).",
                &["name"],
            ),
            name_failures: counter_vec(
                &registry,
                "keyfront_fleet_member_name_failures_total",
                "Failed resolutions of a fleet member name.",
                &["name"],
            ),
            function_failures: FunctionFailures(counter_vec(
                &registry,
                "keyfront_function_failures_total",
                "CloudFront Functions that failed (each answered 503), by function, event type and reason.",
                &["function", "event", "reason"],
            )),
            registry,
        }
    }

    /// Counts one finished request, in this thread's tally: no lock or
    /// counter shared with another thread is touched.
    pub fn record(&self, request: &RequestRecord<'_>) {
        self.tallies.record(request, method_label(request.method));
    }

    /// Counts a config reload, applied or refused.
    pub fn function_failures(&self) -> &FunctionFailures {
        &self.function_failures
    }

    pub fn record_reload(&self, applied: bool) {
        self.config_reloads
            .with_label_values(&[if applied { "applied" } else { "refused" }])
            .inc();
    }

    /// The Prometheus text exposition, with the cache's figures and the
    /// access log's dropped lines as of now.
    pub fn render(&self, cache: &Cache, figures: &ScrapeFigures) -> String {
        let stats = &cache.client.stats;
        let sync = |metric: &IntCounter, value: u64| metric.inc_by(value.saturating_sub(metric.get()));
        let totals = self.tallies.totals();
        for ((behavior, method, status, cache), count) in &totals.requests {
            let status = http::StatusCode::from_u16(*status);
            let status = status.as_ref().map_or("0", http::StatusCode::as_str);
            sync(&self.requests.with_label_values(&[behavior, method, status, cache]), *count);
        }
        for (behavior, bytes) in &totals.body_bytes {
            sync(&self.response_body_bytes.with_label_values(&[behavior]), *bytes);
        }
        for (code, count) in &totals.rejections {
            sync(&self.signature_rejections.with_label_values(&[code]), *count);
        }
        sync(&self.access_log_dropped, figures.access_log_dropped);
        if let Some((refused, read_at_ms)) = figures.control_log {
            sync(&self.control_entries_refused, refused);
            self.control_log_read.set(i64::try_from(read_at_ms / 1000).unwrap_or(i64::MAX));
        }
        for name in &figures.member_names {
            let labels = [name.name.as_str()];
            self.name_members
                .with_label_values(&labels)
                .set(i64::try_from(name.members).unwrap_or(i64::MAX));
            self.name_resolving.with_label_values(&labels).set(i64::from(name.resolving));
            sync(&self.name_failures.with_label_values(&labels), name.failures);
        }
        if let Some(resident) = resident_bytes() {
            self.process_resident.set(i64::try_from(resident).unwrap_or(i64::MAX));
        }
        sync(&self.origin_body_bytes, stats.body_bytes.load(Ordering::Relaxed));
        sync(&self.fleet_body_bytes, stats.fleet_body_bytes.load(Ordering::Relaxed));
        let ((memory_bytes, memory_items), disk) = cache.usage();
        let gauge =
            |metric: &IntGaugeVec, tier: &str, value: u64| metric.with_label_values(&[tier]).set(i64::try_from(value).unwrap_or(i64::MAX));
        let (memory_budget, disk_budget) = cache.budgets();
        gauge(&self.cache_budget, "memory", memory_budget);
        if let Some(disk_budget) = disk_budget {
            gauge(&self.cache_budget, "disk", disk_budget);
        }
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

/// This process's resident memory, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
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
