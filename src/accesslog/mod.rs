//! One access-log line per request in CloudFront's standard log format
//! (tab-separated, 33 fields, with `#Version` and `#Fields` header lines), so
//! the tools that read CloudFront's logs read keyfront's.
//!
//! The query field holds the viewer's own parameters only (the signing
//! parameters were removed before anything else), and the cookie field is
//! always `-`: signatures, policies and cookies never reach the log.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

const FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// What CloudFront escapes in logged header values: controls, spaces and the
/// separators of the log itself.
const LOG_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'\t').add(b'"').add(b'\\');

/// Where access-log lines go.
pub struct AccessLog {
    sink: Mutex<Box<dyn Write + Send>>,
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
    pub request_id: &'a str,
    pub protocol_version: &'a str,
    pub body_bytes: u64,
    pub seconds_taken: f64,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    /// `(start, end)` from the response's Content-Range.
    pub range: Option<(u64, u64)>,
}

fn field(value: Option<&str>) -> String {
    match value {
        Some(text) if !text.is_empty() => utf8_percent_encode(text, LOG_ESCAPE).to_string(),
        _ => "-".to_owned(),
    }
}

impl AccessLog {
    /// Appends to the file at `path`, writing the header lines if it is new.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if fresh {
            file.write_all(Self::header().as_bytes())?;
        }
        Ok(Self {
            sink: Mutex::new(Box::new(std::io::LineWriter::new(file))),
        })
    }

    /// Writes to standard output.
    pub fn to_stdout() -> Self {
        print!("{}", Self::header());
        Self {
            sink: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    fn header() -> String {
        format!("#Version: 1.0\n#Fields: {FIELDS}\n")
    }

    /// The line for `record`, without its newline.
    pub fn line(record: &AccessRecord<'_>) -> String {
        let moment = time::OffsetDateTime::from_unix_timestamp(record.unix_seconds as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let date = format!("{:04}-{:02}-{:02}", moment.year(), moment.month() as u8, moment.day());
        let clock = format!("{:02}:{:02}:{:02}", moment.hour(), moment.minute(), moment.second());
        let (range_start, range_end) = record
            .range
            .map_or(("-".to_owned(), "-".to_owned()), |(s, e)| (s.to_string(), e.to_string()));
        let fields = [
            date,
            clock,
            "keyfront".to_owned(),
            record.body_bytes.to_string(),
            record.client.map_or("-".to_owned(), |c| c.ip().to_string()),
            record.method.to_owned(),
            field(record.host),
            field(Some(record.path)),
            record.status.to_string(),
            field(record.referer),
            field(record.user_agent),
            field(record.query),
            "-".to_owned(),
            record.result.to_owned(),
            record.request_id.to_owned(),
            field(record.host),
            "http".to_owned(),
            "-".to_owned(),
            format!("{:.3}", record.seconds_taken),
            field(record.forwarded_for),
            "-".to_owned(),
            "-".to_owned(),
            record.result.to_owned(),
            record.protocol_version.to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            record.client.map_or("-".to_owned(), |c| c.port().to_string()),
            "-".to_owned(),
            record.detailed_result.to_owned(),
            field(record.content_type),
            field(record.content_length),
            range_start,
            range_end,
        ];
        fields.join("\t")
    }

    /// Writes one line. A failing log never fails the request.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let line = Self::line(record) + "\n";
        if let Ok(mut sink) = self.sink.lock()
            && let Err(error) = sink.write_all(line.as_bytes())
        {
            tracing::warn!(%error, "access log: write failed");
        }
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
            request_id: "r1",
            protocol_version: "HTTP/1.1",
            body_bytes: 1000,
            seconds_taken: 0.0123,
            content_type: Some("video/mp4"),
            content_length: Some("1000"),
            range: Some((0, 999)),
        };
        let line = AccessLog::line(&record);
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), FIELDS.split(' ').count());
        assert_eq!(fields.len(), 33);
        assert_eq!(&fields[..5], ["2026-11-18", "11:06:40", "keyfront", "1000", "192.0.2.7"]);
        assert_eq!(fields[7], "/videos/a%20b.mp4");
        assert_eq!(fields[10], "Mozilla/5.0%20(X11)%09Evil");
        assert_eq!(fields[12], "-", "cookies are never logged");
        assert_eq!(&fields[31..], ["0", "999"]);
    }
}
