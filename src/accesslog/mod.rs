//! One access-log line per request in CloudFront's standard log format
//! (tab-separated, 33 fields, with `#Version` and `#Fields` header lines), so
//! the tools that read CloudFront's logs read keyfront's.
//!
//! The query field holds the viewer's own parameters only (the signing
//! parameters were removed before anything else), and the cookie field is
//! always `-`: signatures, policies and cookies never reach the log.
//!
//! `json` writes the same fields as one JSON object per line, named as in
//! `#Fields`, for Vector, Loki or Elasticsearch.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::config::AccessLogFormat as LogFormat;

const FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// What CloudFront escapes in logged header values: controls, spaces and the
/// separators of the log itself.
const LOG_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'\t').add(b'"').add(b'\\');

/// Buffers the serving threads append lines to. A thread keeps to one
/// (see `SHARD`), so two threads seldom share one and its lock is
/// uncontended but for the writer's swap every `BATCH_PAUSE`.
const SHARDS: usize = 16;

/// Bytes a buffer holds at most before its lines are dropped and counted,
/// never waited for: 16 MiB in all, about a fifth of a second at 300,000
/// requests/s.
const SHARD_BYTES: usize = 1 << 20;

/// How long the writer waits after a batch before it takes the buffers
/// again: lines appended meanwhile wake nobody (no system call on the
/// request path), and are written and flushed in one batch.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The buffer this thread appends to, in every log.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Where access-log lines go: a buffer per serving thread, each written out
/// whole by a thread of the log's own, so that a request never waits for
/// the disk, allocates its line, or waits for another request's line. A
/// line is on disk within about `BATCH_PAUSE`; lines of different threads
/// may be out of time order by as much (so are CloudFront's log files).
pub struct AccessLog {
    pending: Arc<Pending>,
    writer: std::thread::Thread,
    dropped: AtomicU64,
    format: LogFormat,
    /// `x-edge-location`: the node's name in its fleet, else `keyfront`.
    location: String,
}

/// The lines not yet written, shared with the writer thread.
struct Pending {
    shards: [Mutex<String>; SHARDS],
    /// The writer found every buffer empty and waits to be woken.
    writer_asleep: AtomicBool,
    /// The log is dropped: the writer writes what is left and ends.
    closed: AtomicBool,
}

/// One finished request, as the log needs it.
pub struct AccessRecord<'a> {
    pub unix_seconds: u64,
    pub client: Option<std::net::SocketAddr>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// The viewer's own query string (signing parameters removed), if any.
    pub query: Option<&'a str>,
    pub status: u16,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub forwarded_for: Option<&'a str>,
    /// `Hit`, `RefreshHit`, `Miss` or `Error`.
    pub result: &'a str,
    /// Why, in more detail: the cache result or the rejection label.
    pub detailed_result: &'a str,
    /// Random: tells the lines of one request apart from another's.
    pub request_id: u64,
    pub protocol_version: &'a str,
    pub body_bytes: u64,
    pub time_taken: Duration,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    /// `(start, end)` from the response's Content-Range.
    pub range: Option<(u64, u64)>,
    /// The TLS version and cipher of a TLS connection.
    pub tls: Option<(&'a str, &'a str)>,
    /// From the request's header to the response's (none if none was sent).
    pub time_to_first_byte: Option<Duration>,
    /// The request's bytes, header and body, as they came (HTTP/1; HTTP/2
    /// headers arrive compressed, and their size is not kept).
    pub request_bytes: Option<u64>,
}

/// Appends a logged header value: `-` when there is none.
fn push_field(line: &mut String, value: Option<&str>) {
    match value {
        // A value that needs no escape (most) is borrowed whole, not
        // formatted piece by piece.
        Some(text) if !text.is_empty() => line.push_str(&Cow::from(utf8_percent_encode(text, LOG_ESCAPE))),
        _ => line.push('-'),
    }
}

/// Appends `number` in decimal.
fn push_number(line: &mut String, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    // Pushed as characters: checking them as UTF-8 first cost more than
    // the rest of the number, and a line has nine of them.
    for &digit in &digits[at..] {
        line.push(char::from(digit));
    }
}

/// Appends `millis` as seconds with three decimals (`12.345`).
fn push_seconds(line: &mut String, millis: u64) {
    push_number(line, millis / 1000);
    let fraction = millis % 1000;
    line.push('.');
    line.push_str(if fraction < 10 {
        "00"
    } else if fraction < 100 {
        "0"
    } else {
        ""
    });
    push_number(line, fraction);
}

/// Appends `value` as 16 lower-case hex digits.
fn push_hex16(line: &mut String, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        line.push(HEX[((value >> (shift * 4)) & 0xf) as usize] as char);
    }
}

/// Appends an address as `Display` writes it; IPv4 (most) without `fmt`.
fn push_ip(line: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                push_number(line, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
}

thread_local! {
    /// The date and time fields of the last second this thread logged in:
    /// formatted once per second, not once per line.
    static LAST_SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Appends `date<TAB>time` of `unix_seconds`, in UTC.
fn push_date_time(line: &mut String, unix_seconds: u64) {
    LAST_SECOND.with_borrow_mut(|(second, text)| {
        if *second != unix_seconds {
            let moment = time::OffsetDateTime::from_unix_timestamp(unix_seconds as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            text.clear();
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}\t{:02}:{:02}:{:02}",
                moment.year(),
                moment.month() as u8,
                moment.day(),
                moment.hour(),
                moment.minute(),
                moment.second()
            );
            *second = unix_seconds;
        }
        line.push_str(text);
    });
}

impl AccessLog {
    /// Appends to the file at `path`, writing the header lines if it is new
    /// (and standard); `location` names this node in its lines.
    pub fn to_file(path: &Path, format: LogFormat, location: &str) -> std::io::Result<Self> {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if fresh && format == LogFormat::Standard {
            file.write_all(Self::header().as_bytes())?;
        }
        Ok(Self::writing_to(Box::new(file), format, location))
    }

    /// Writes to standard output.
    pub fn to_stdout(format: LogFormat, location: &str) -> Self {
        if format == LogFormat::Standard {
            print!("{}", Self::header());
        }
        Self::writing_to(Box::new(std::io::stdout()), format, location)
    }

    fn writing_to(sink: Box<dyn Write + Send>, format: LogFormat, location: &str) -> Self {
        let pending = Arc::new(Pending {
            shards: std::array::from_fn(|_| Mutex::new(String::new())),
            writer_asleep: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let lines = pending.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_out(&lines, sink))
            .expect("the access-log thread starts");
        Self {
            pending,
            writer: writer.thread().clone(),
            dropped: AtomicU64::new(0),
            format,
            location: location.to_owned(),
        }
    }

    fn header() -> String {
        format!("#Version: 1.0\n#Fields: {FIELDS}\n")
    }

    /// The standard line for `record` from the node `location`, newline
    /// included. Numbers are written digit by digit, not through
    /// `fmt`: the line is made on every request's path.
    pub fn line(record: &AccessRecord<'_>, location: &str) -> String {
        let mut line = String::with_capacity(320);
        Self::push_line(&mut line, record, location);
        line
    }

    /// Appends the standard line for `record` to `line`.
    fn push_line(line: &mut String, record: &AccessRecord<'_>, location: &str) {
        push_date_time(line, record.unix_seconds);
        line.push('\t');
        push_field(line, Some(location));
        line.push('\t');
        push_number(line, record.body_bytes);
        line.push('\t');
        match record.client {
            Some(client) => push_ip(line, client.ip()),
            None => line.push('-'),
        }
        line.push('\t');
        line.push_str(record.method);
        line.push('\t');
        push_field(line, record.host);
        line.push('\t');
        push_field(line, Some(record.path));
        line.push('\t');
        push_number(line, u64::from(record.status));
        line.push('\t');
        push_field(line, record.referer);
        line.push('\t');
        push_field(line, record.user_agent);
        line.push('\t');
        push_field(line, record.query);
        line.push_str("\t-\t");
        line.push_str(record.result);
        line.push('\t');
        push_hex16(line, record.request_id);
        line.push('\t');
        push_field(line, record.host);
        line.push_str(if record.tls.is_some() { "\thttps\t" } else { "\thttp\t" });
        match record.request_bytes {
            Some(bytes) => push_number(line, bytes),
            None => line.push('-'),
        }
        line.push('\t');
        // Milliseconds, cut as CloudFront's time-taken is.
        push_seconds(line, u64::try_from(record.time_taken.as_millis()).unwrap_or(u64::MAX));
        line.push('\t');
        push_field(line, record.forwarded_for);
        line.push('\t');
        push_field(line, record.tls.map(|(version, _)| version));
        line.push('\t');
        push_field(line, record.tls.map(|(_, cipher)| cipher));
        line.push('\t');
        line.push_str(record.result);
        line.push('\t');
        line.push_str(record.protocol_version);
        line.push_str("\t-\t-\t");
        match record.client {
            Some(client) => push_number(line, u64::from(client.port())),
            None => line.push('-'),
        }
        line.push('\t');
        match record.time_to_first_byte {
            // Rounded to the millisecond.
            Some(first_byte) => push_seconds(line, u64::try_from((first_byte.as_micros() + 500) / 1000).unwrap_or(u64::MAX)),
            None => line.push('-'),
        }
        line.push('\t');
        line.push_str(record.detailed_result);
        line.push('\t');
        push_field(line, record.content_type);
        line.push('\t');
        push_field(line, record.content_length);
        match record.range {
            Some((start, end)) => {
                line.push('\t');
                push_number(line, start);
                line.push('\t');
                push_number(line, end);
                line.push('\n');
            }
            None => line.push_str("\t-\t-\n"),
        }
    }

    /// Appends one line to this thread's buffer. Never waits for the
    /// disk: a full buffer (the disk far slower than the requests) drops
    /// the line and counts it.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let shard = &self.pending.shards[SHARD.with(|shard| *shard)];
        let mut lines = shard.lock().expect("access-log buffer lock");
        let was_empty = lines.is_empty();
        if lines.len() >= SHARD_BYTES {
            drop(lines);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.format {
            LogFormat::Standard => Self::push_line(&mut lines, record, &self.location),
            LogFormat::Json => lines.push_str(&json_line(&Self::line(record, &self.location))),
        }
        drop(lines);
        // The writer sleeps only once it has seen every buffer empty after
        // saying so; the lock orders that look and this append.
        if was_empty && self.pending.writer_asleep.swap(false, Ordering::AcqRel) {
            self.writer.unpark();
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The standard `line` as one JSON object, each field by its `#Fields`
/// name with the same text.
pub fn json_line(line: &str) -> String {
    let fields = FIELDS.split(' ').zip(line.trim_end_matches('\n').split('\t'));
    let object: serde_json::Map<String, serde_json::Value> = fields.map(|(name, value)| (name.to_owned(), value.into())).collect();
    let mut json = serde_json::Value::Object(object).to_string();
    json.push('\n');
    json
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.pending.closed.store(true, Ordering::Release);
        self.writer.unpark();
    }
}

/// The writer thread: takes every buffer's lines, writes and flushes them,
/// pauses; sleeps while there are none; ends (flushed) when the log is
/// dropped.
fn write_out(pending: &Pending, mut sink: Box<dyn Write + Send>) {
    // Swapped with a full buffer each time: the two allocations are reused.
    let mut batch = String::new();
    loop {
        let closed = pending.closed.load(Ordering::Acquire);
        let mut wrote = false;
        for shard in &pending.shards {
            std::mem::swap(&mut *shard.lock().expect("access-log buffer lock"), &mut batch);
            if !batch.is_empty() {
                if let Err(error) = sink.write_all(batch.as_bytes()) {
                    tracing::warn!(%error, "access log: write failed");
                }
                batch.clear();
                wrote = true;
            }
        }
        if closed {
            let _ = sink.flush();
            return;
        }
        if wrote {
            if let Err(error) = sink.flush() {
                tracing::warn!(%error, "access log: write failed");
            }
            std::thread::park_timeout(BATCH_PAUSE);
            continue;
        }
        pending.writer_asleep.store(true, Ordering::Release);
        let idle = pending
            .shards
            .iter()
            .all(|shard| shard.lock().expect("access-log buffer lock").is_empty());
        if idle && !pending.closed.load(Ordering::Acquire) {
            std::thread::park();
        }
        pending.writer_asleep.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_cloudfronts_33_fields_and_escapes_its_values() {
        let record = AccessRecord {
            unix_seconds: 1_795_000_000,
            client: Some("192.0.2.7:51000".parse().unwrap()),
            method: "GET",
            host: Some("cdn.example.com"),
            path: "/videos/a b.mp4",
            query: Some("lang=en"),
            status: 206,
            referer: None,
            user_agent: Some("Mozilla/5.0 (X11)\tEvil"),
            forwarded_for: None,
            result: "Hit",
            detailed_result: "hit",
            request_id: 0x00c0_ffee,
            protocol_version: "HTTP/1.1",
            body_bytes: 1000,
            time_taken: Duration::from_micros(12_300),
            content_type: Some("video/mp4"),
            content_length: Some("1000"),
            range: Some((0, 999)),
            tls: Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256")),
            time_to_first_byte: Some(Duration::from_micros(4_600)),
            request_bytes: Some(412),
        };
        let line = AccessLog::line(&record, "fra-1");
        let fields: Vec<&str> = line.strip_suffix('\n').unwrap().split('\t').collect();
        assert_eq!(fields.len(), FIELDS.split(' ').count());
        assert_eq!(fields.len(), 33);
        assert_eq!(&fields[..5], ["2026-11-18", "11:06:40", "fra-1", "1000", "192.0.2.7"]);
        assert_eq!(fields[7], "/videos/a%20b.mp4");
        assert_eq!(fields[10], "Mozilla/5.0%20(X11)%09Evil");
        assert_eq!(fields[12], "-", "cookies are never logged");
        assert_eq!((fields[14], fields[18]), ("0000000000c0ffee", "0.012"));
        assert_eq!(&fields[31..], ["0", "999"]);
        assert_eq!((fields[16], fields[17]), ("https", "412"));
        assert_eq!(&fields[20..22], ["TLSv1.3", "TLS13_AES_128_GCM_SHA256"]);
        assert_eq!((fields[26], fields[27]), ("51000", "0.005"));
        assert_eq!(
            (fields[5], fields[8], fields[13], fields[22], fields[23]),
            ("GET", "206", "Hit", "Hit", "HTTP/1.1")
        );
        assert_eq!(
            (fields[24], fields[25], fields[28], fields[29], fields[30]),
            ("-", "-", "hit", "video/mp4", "1000")
        );

        let mut numbers = String::new();
        for value in [0, 7, 10, 999, 1_000, u64::MAX] {
            push_number(&mut numbers, value);
            numbers.push(' ');
            push_seconds(&mut numbers, value.min(99_999));
            numbers.push(' ');
        }
        assert_eq!(
            numbers,
            "0 0.000 7 0.007 10 0.010 999 0.999 1000 1.000 18446744073709551615 99.999 "
        );
        let mut ips = String::new();
        push_ip(&mut ips, "10.0.255.1".parse().unwrap());
        push_ip(&mut ips, "::1".parse().unwrap());
        assert_eq!(ips, "10.0.255.1::1");

        let json: serde_json::Value = serde_json::from_str(&json_line(&line)).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), 33);
        for (name, value) in FIELDS.split(' ').zip(&fields) {
            assert_eq!(object[name], *value, "{name}");
        }
    }

    fn record(path: &str) -> AccessRecord<'_> {
        AccessRecord {
            unix_seconds: 1_795_000_000,
            client: None,
            method: "GET",
            host: None,
            path,
            query: None,
            status: 200,
            referer: None,
            user_agent: None,
            forwarded_for: None,
            result: "Hit",
            detailed_result: "hit",
            request_id: 1,
            protocol_version: "HTTP/1.1",
            body_bytes: 1,
            time_taken: Duration::ZERO,
            content_type: None,
            content_length: None,
            range: None,
            tls: None,
            time_to_first_byte: None,
            request_bytes: None,
        }
    }

    /// A sink that hands what it is given to the test, and blocks while
    /// the test holds `gate`.
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(written: &Mutex<Vec<u8>>) -> Vec<String> {
        String::from_utf8(written.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| line.split('\t').nth(7).unwrap().to_owned())
            .collect()
    }

    fn wait_for(written: &Mutex<Vec<u8>>, count: usize) -> Vec<String> {
        for _ in 0..500 {
            let lines = lines_of(written);
            if lines.len() >= count {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        lines_of(written)
    }

    #[test]
    fn every_threads_lines_arrive_whole_and_once_and_a_quiet_log_still_writes_its_next_line() {
        let (written, gate) = (Arc::default(), Arc::default());
        let log = Arc::new(AccessLog::writing_to(
            Box::new(Sink {
                written: Arc::clone(&written),
                gate,
            }),
            LogFormat::Standard,
            "fra-1",
        ));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for line in 0..2_000 {
                        log.write(&record(&format!("/t{thread}/{line}")));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        let mut paths = wait_for(&written, 8_000);
        assert_eq!(paths.len(), 8_000);
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 8_000, "each line once");
        // The writer has gone to sleep on empty buffers: a new line wakes it.
        std::thread::sleep(BATCH_PAUSE * 3);
        log.write(&record("/after-a-pause"));
        assert_eq!(wait_for(&written, 8_001).last().unwrap(), "/after-a-pause");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_stalled_disk_drops_lines_past_the_buffer_and_counts_them_without_waiting() {
        let (written, gate) = (Arc::default(), Arc::new(Mutex::new(())));
        let stall = gate.lock().unwrap();
        let log = AccessLog::writing_to(
            Box::new(Sink {
                written: Arc::clone(&written),
                gate: Arc::clone(&gate),
            }),
            LogFormat::Standard,
            "fra-1",
        );
        // The first line is taken by the writer, which then blocks on the sink.
        log.write(&record("/first"));
        std::thread::sleep(BATCH_PAUSE * 3);
        let line_bytes = AccessLog::line(&record("/x"), "fra-1").len();
        let lines = 2 * SHARD_BYTES / line_bytes;
        let started = std::time::Instant::now();
        for _ in 0..lines {
            log.write(&record("/x"));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never waits for the disk");
        let dropped = log.dropped();
        assert!(dropped > 0 && dropped < lines as u64, "dropped {dropped} of {lines}");
        drop(stall);
        let kept = wait_for(&written, 1 + lines - dropped as usize);
        assert_eq!(kept.len() as u64, 1 + lines as u64 - dropped, "every line kept is written");
        assert!(
            (kept.len() - 1) * line_bytes <= SHARD_BYTES + line_bytes,
            "at most a buffer's worth waits: {} lines",
            kept.len()
        );
    }
}
