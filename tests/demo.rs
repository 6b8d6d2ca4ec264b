//! `keyfront demo` as a newcomer runs it: the URLs, cookies and requests it
//! prints work against the stack it started.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{free_address, request, wait_for};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_printed_urls_and_cookies_work() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, origin, admin) = (free_address(), free_address(), free_address());
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_keyfront"))
            .args(["demo", "--dir", dir.path().to_str().unwrap()])
            .args([
                "--listen",
                &edge.to_string(),
                "--origin-listen",
                &origin.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut printed = Vec::new();
    for line in BufReader::new(demo.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C stops it");
        printed.push(line);
        if done {
            break;
        }
    }
    wait_for(edge);
    let base = format!("http://{edge}");
    let after = |label: &str| {
        printed
            .iter()
            .skip_while(|l| !l.starts_with(label))
            .nth(1)
            .unwrap()
            .trim()
            .to_owned()
    };
    let target = |url: &str| url.strip_prefix(&base).unwrap().to_owned();
    let canned = after("Canned policy URL");
    let wildcard = after("Custom policy URL");
    let cookie = after("Signed cookies").strip_prefix("Cookie: ").unwrap().to_owned();

    let pdf = request(edge, "GET", &target(&canned), &[], b"");
    assert_eq!(pdf.status, 200);
    assert!(pdf.body.starts_with(b"%PDF-1.4"));
    let head = request(edge, "HEAD", &target(&canned), &[], b"");
    assert_eq!((head.status, head.header("content-length")), (200, pdf.header("content-length")));
    let video = request(edge, "GET", &target(&wildcard), &[("Range", "bytes=1000-1999")], b"");
    assert_eq!((video.status, video.body.len()), (206, 1000));
    assert_eq!(video.header("content-type"), Some("video/mp4"));
    let other_video = target(&wildcard).replace("sample.mp4", "large.bin");
    assert_eq!(request(edge, "GET", &other_video, &[("Range", "bytes=0-9")], b"").status, 206);
    let image = request(edge, "GET", "/images/logo.svg", &[("Cookie", &cookie)], b"");
    assert_eq!((image.status, image.header("content-type")), (200, Some("image/svg+xml")));
    assert_eq!(request(edge, "GET", "/public/hello.txt", &[], b"").status, 200);
    let unsigned = request(edge, "GET", "/docs/guide.pdf", &[], b"");
    assert!(unsigned.text().contains("<Code>MissingKey</Code>"));
    // The container health check's command, against the demo's admin listener.
    let health = Command::new(env!("CARGO_BIN_EXE_keyfront"))
        .args(["health", "--admin", &format!("http://{admin}")])
        .output()
        .unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stdout));
    // The verify line names this very binary, so it runs as printed.
    let verify_line = printed
        .iter()
        .find(|l| l.trim_start().contains(" verify --url "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(verify_line.starts_with(env!("CARGO_BIN_EXE_keyfront")), "{verify_line}");
    let verified = Command::new("sh").arg("-c").arg(&verify_line).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    // The curl lines print these same URLs.
    assert!(printed.iter().any(|l| l.contains(&format!("curl -sS -I '{canned}'"))));

    // A second demo on the same ports stops before writing anything, names
    // the busy port, and the first one serves on with its own key.
    let second_dir = tempfile::tempdir().unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_keyfront"))
        .args(["demo", "--dir", second_dir.path().to_str().unwrap()])
        .args([
            "--listen",
            &free_address().to_string(),
            "--origin-listen",
            &origin.to_string(),
            "--admin-listen",
            &free_address().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("listening on {origin}: ")), "{stderr}");
    assert_eq!(std::fs::read_dir(second_dir.path()).unwrap().count(), 0);
    assert_eq!(request(edge, "GET", &target(&canned), &[], b"").body, pdf.body);
}
