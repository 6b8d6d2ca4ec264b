//! The alerts and the dashboard in `deploy/` against the real tools: the
//! rules checked and unit-tested by `promtool`, and a real Prometheus on
//! loopback scraping a running fleet and a signed edge, which must find every
//! metric the rules and the dashboard name, with every label they use.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::fleet::Fleet;
use common::{Stack, free_address, request};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Runs `promtool` with `args` in `deploy/prometheus`; its output, or the
/// test fails with it.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; scripts/ensure-deps test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtools_checks_and_unit_tests() {
    assert!(promtool(&["check", "rules", "keyfront-rules.yml"]).contains("SUCCESS: 10 rules found"));
    assert!(promtool(&["test", "rules", "keyfront-rules.test.yml"]).contains("SUCCESS"));
}

/// A Prometheus server of this test's own, stopped when dropped.
struct Prometheus {
    child: Child,
    address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(targets: &[std::net::SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let listed: Vec<String> = targets.iter().map(|target| format!("\"{target}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: keyfront\n    static_configs:\n      - targets: [{}]\n",
            listed.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let address = free_address();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/ensure-deps test installs it)");
        Prometheus { child, address, _dir: dir }
    }

    /// The `data` of an API answer, once Prometheus answers.
    fn api(&self, target: &str) -> serde_json::Value {
        // curl: Prometheus answers in chunks, which `common::request` does not join.
        let answer = Command::new("curl")
            .args(["-sS", "--fail", &format!("http://{}{target}", self.address)])
            .output()
            .unwrap();
        assert!(answer.status.success(), "{target}: {}", String::from_utf8_lossy(&answer.stderr));
        let body: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
        body["data"].clone()
    }

    /// Each `keyfront_` metric Prometheus holds, with the labels its series carry.
    fn metrics(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let series = self.api("/api/v1/series?match%5B%5D=%7B__name__%3D~%22keyfront_.%2B%22%7D");
        for labels in series.as_array().unwrap() {
            let labels = labels.as_object().unwrap();
            let name = labels["__name__"].as_str().unwrap().to_owned();
            metrics
                .entry(name)
                .or_default()
                .extend(labels.keys().filter(|key| *key != "__name__").cloned());
        }
        metrics
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every PromQL expression of the rules and of the dashboard.
fn expressions() -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy().join("prometheus/keyfront-rules.yml")).unwrap()).unwrap();
    let mut all: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .map(|rule| rule["expr"].as_str().unwrap().to_owned())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy().join("grafana/keyfront.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            all.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    all.push(dashboard["templating"]["list"][1]["query"].as_str().unwrap().to_owned());
    all
}

/// The metric names an expression reads, each with the labels its selector
/// matches on; and the labels its `by (...)`/`on (...)` clauses name.
fn uses(expression: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut grouped = Vec::new();
    let bytes = expression.as_bytes();
    let word_end = |from: usize| {
        from + bytes[from..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(bytes.len() - from)
    };
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if starts_word && expression[at..].starts_with("keyfront_") {
            let end = word_end(at);
            let mut labels = Vec::new();
            if bytes.get(end) == Some(&b'{') {
                let close = end + expression[end..].find('}').unwrap();
                for matcher in expression[end + 1..close].split(',') {
                    let name: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    labels.push(name);
                }
            }
            metrics.push((expression[at..end].to_owned(), labels));
            at = end;
        } else if starts_word && (expression[at..].starts_with("by (") || expression[at..].starts_with("on (")) {
            let close = at + expression[at..].find(')').unwrap();
            grouped.extend(expression[at + 4..close].split(',').map(|label| label.trim().to_owned()));
            at = close;
        } else {
            at += 1;
        }
    }
    (metrics, grouped)
}

#[test]
fn prometheus_finds_every_metric_and_label_the_rules_and_the_dashboard_use() {
    // A fleet (parents, site peers, control logs) and a signed edge with a
    // disk tier, each given the traffic that makes its series exist.
    let fleet = Fleet::start(true);
    fleet.put("/films/a.mp4", &common::patterned(3 << 20));
    let edge = fleet.sites[0][0].edge;
    for path in ["/films/a.mp4", "/films/a.mp4", "/films/missing.mp4"] {
        request(edge, "GET", path, &[], b"");
    }
    let stack = Stack::start_with("", "  disk: {path: disk, size: 64MiB}");
    stack.put("/signed.txt", "text/plain", b"signed");
    assert_eq!(stack.get(&stack.signed("/signed.txt")).status, 200);
    assert_eq!(stack.get("/signed.txt").status, 403);

    let mut targets: Vec<std::net::SocketAddr> = fleet.nodes().map(|node| node.admin).collect();
    targets.push(stack.admin);
    let prometheus = Prometheus::scraping(&targets);
    let needed = [
        "keyfront_parent_requests_total",
        "keyfront_signature_rejections_total",
        "keyfront_control_log_read_timestamp_seconds",
    ];
    common::wait_for(prometheus.address);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let metrics = loop {
        if request(prometheus.address, "GET", "/-/ready", &[], b"").status == 200 {
            let up = prometheus.api("/api/v1/query?query=up");
            let all_up = up["result"]
                .as_array()
                .is_some_and(|series| series.len() == targets.len() && series.iter().all(|one| one["value"][1] == "1"));
            let metrics = prometheus.metrics();
            if all_up && needed.iter().all(|name| metrics.contains_key(*name)) {
                break metrics;
            }
            seen = format!("up: {up}\nmetrics: {:?}", metrics.keys());
        }
        assert!(Instant::now() < deadline, "Prometheus scraped every node within a minute:\n{seen}");
        std::thread::sleep(Duration::from_millis(250));
    };

    for expression in expressions() {
        let (used, grouped) = uses(&expression);
        assert!(!used.is_empty(), "{expression} reads no keyfront metric");
        for (name, labels) in &used {
            let known = metrics
                .get(name)
                .unwrap_or_else(|| panic!("{name} (in {expression}) is not exported; exported: {:?}", metrics.keys()));
            for label in labels {
                assert!(
                    known.contains(label),
                    "{name} has no label {label} (in {expression}); it has {known:?}"
                );
            }
        }
        for label in grouped {
            let somewhere = used.iter().any(|(name, _)| metrics[name].contains(&label));
            assert!(somewhere, "no metric of {expression} has the label {label} it groups by");
        }
    }
}
