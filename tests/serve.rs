//! `keyfront serve` and `keyfront check-config` as a user runs them: a child
//! process, its exit status and its log lines.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{ACCESS_KEY, BUCKET, KEY_ID, SECRET, fixture, free_address, request};

fn keyfront(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyfront"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn the_example_config_validates() {
    let output = keyfront(&["check-config", "--config", "config/keyfront.yaml"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn bad_configs_exit_2_naming_the_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/keyfront.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("example-keys")).unwrap();
    std::fs::copy(fixture("rsa_public.pem"), dir.path().join("example-keys/public_key.pem")).unwrap();
    let cases = [
        (
            example.replace("listen:\n  - 127.0.0.1:8080", "listen:\n  - 127.0.0.1:8080\n  - nowhere"),
            "listen[1]: \"nowhere\"",
        ),
        (
            example.replace(
                "    origin: local\n    trusted_key_groups: [main]\n    allowed_methods: [GET, HEAD]",
                "    origin: locl\n    trusted_key_groups: [main]\n    allowed_methods: [GET, HEAD]",
            ),
            "behaviors[2].origin: \"locl\"",
        ),
        (
            example.replace("example-keys/public_key.pem", "example-keys/missing.pem"),
            "key_groups.main[0].public_key: \"example-keys/missing.pem\"",
        ),
        (
            example.replace("first_byte_timeout: 30s", "first_byte_timeout: soon"),
            "origins.s3.first_byte_timeout: \"soon\"",
        ),
        (
            example.replace("path_style: false", "path_style: false\n    pathstyle: true"),
            "origins.s3: unknown field `pathstyle`, expected one of `endpoint`",
        ),
        ("listen: [\n".to_owned(), "keyfront.yaml"),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("keyfront.yaml");
        std::fs::write(&path, text).unwrap();
        let output = keyfront(&["check-config", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A canned URL target for `path` on `edge`, its signature, and a `Cookie`
/// value that carries the signature and a secret session cookie: what a
/// log must never show.
fn signed_with_secret_cookie(edge: std::net::SocketAddr, path: &str) -> (String, String, String) {
    let key = keyfront::auth::PrivateKey::from_pem(&std::fs::read_to_string(fixture("rsa_pkcs1.pem")).unwrap()).unwrap();
    let signer = keyfront::auth::Signer::new(KEY_ID, key, keyfront::auth::HashAlgorithm::Sha1);
    let url = signer.sign_url(
        &format!("http://{edge}{path}"),
        &keyfront::auth::PolicySpec::Canned {
            expires: common::now() + 600,
        },
    );
    let target = url.strip_prefix(&format!("http://{edge}")).unwrap().to_owned();
    let signature = target.split("Signature=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let cookie = format!("CloudFront-Signature={signature}; session=s3cr3t-cookie");
    (target, signature, cookie)
}

#[test]
fn serve_logs_an_origin_refusing_credentials_and_never_logs_secrets() {
    let store_dir = tempfile::tempdir().unwrap();
    let origin = common::spawn_store(store_dir.path());
    let edge = free_address();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("keyfront.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {edge}\nkey_groups:\n  main:\n    - id: {KEY_ID}\n      public_key: {key}\norigins:\n  bad:\n    type: s3\n    endpoint: http://{origin}\n    bucket: {BUCKET}\n    path_style: true\n    access_key_id: {ACCESS_KEY}\n    secret_access_key: not-the-secret\nbehaviors:\n  - path_pattern: \"*\"\n    origin: bad\n    trusted_key_groups: [main]\n",
            key = fixture("rsa_public.pem").display()
        ),
    )
    .unwrap();
    let mut served = Served::start(&config, edge, Some("debug"));
    let (target, signature, cookie) = signed_with_secret_cookie(edge, "/a.mp4");
    let target = target.as_str();
    assert_eq!(request(edge, "GET", target, &[("Cookie", &cookie)], b"").status, 502);
    assert_eq!(request(edge, "GET", "/a.mp4", &[("Cookie", &cookie)], b"").status, 403);

    let _ = served.child.kill();
    let _ = served.child.wait();
    let mut log = String::new();
    served.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("origin refused keyfront's credentials"), "{log}");
    for secret in [
        signature.as_str(),
        "not-the-secret",
        SECRET,
        "s3cr3t-cookie",
        "Signature=",
        "Key-Pair-Id=",
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log:\n{log}");
    }
}

/// At debug level, with the embedded origin in the same process: neither
/// the edge, nor pingora, nor the origin's s3s prints a secret, a viewer's
/// signature or cookie, or a SigV4 signature (s3s prints the expected
/// signature of every mismatch at debug).
#[test]
fn serve_with_an_embedded_origin_logs_no_secret_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, store) = (free_address(), free_address());
    let config = dir.path().join("keyfront.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {edge}\nkey_groups:\n  main:\n    - id: {KEY_ID}\n      public_key: {key}\norigins:\n  store: {{type: embedded, root: store, listen: \"{store}\", bucket: media, access_key_id: edge-key, secret_access_key: edge-embedded-secret}}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n    trusted_key_groups: [main]\n",
            key = fixture("rsa_public.pem").display()
        ),
    )
    .unwrap();
    let mut served = Served::start(&config, edge, Some("debug"));
    let origin = keyfront::origin::Origin::embedded(store, "media", "edge-key", "edge-embedded-secret");
    assert_eq!(keyfront::origin::put_object(&origin, "/a.txt", &[], b"hello").unwrap(), 200);
    let (target, signature, cookie) = signed_with_secret_cookie(edge, "/a.txt");
    let target = target.as_str();
    let served_object = request(edge, "GET", target, &[("Cookie", &cookie)], b"");
    assert_eq!((served_object.status, served_object.text().as_str()), (200, "hello"));
    // A request to the origin signed with a wrong secret: s3s compares it
    // with the signature the right secret gives, which must not be logged.
    let time = std::time::SystemTime::now();
    let sigv4 = |secret: &str| {
        let origin = keyfront::origin::Origin::embedded(store, "media", "edge-key", secret);
        origin.sign("GET", "/media/a.txt", &[], time).unwrap()
    };
    let authorization = |headers: &[(String, String)]| headers.iter().find(|(n, _)| n == "authorization").unwrap().1.clone();
    let expected = authorization(&sigv4("edge-embedded-secret"));
    let wrong = sigv4("a-wrong-secret");
    let wrong_headers: Vec<(&str, &str)> = wrong.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(request(store, "GET", "/media/a.txt", &wrong_headers, b"").status, 403);

    let _ = served.child.kill();
    let _ = served.child.wait();
    let mut log = String::new();
    served.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("edge listening"), "{log}");
    let signature_of = |authorization: &str| authorization.rsplit("Signature=").next().unwrap().to_owned();
    for secret in [
        signature.as_str(),
        "edge-embedded-secret",
        "s3cr3t-cookie",
        "Signature=",
        "Key-Pair-Id=",
        &signature_of(&expected),
        &signature_of(&authorization(&wrong)),
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log:\n{log}");
    }
}

/// A child `keyfront serve` in a directory of its own, its only behavior
/// public and served by an embedded origin (`origin`).
struct EmbeddedServe {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    edge: std::net::SocketAddr,
    origin: keyfront::origin::Origin,
    served: Served,
}

impl EmbeddedServe {
    /// Starts it; `settings` are more top-level config lines.
    fn start(settings: &str) -> EmbeddedServe {
        let dir = tempfile::tempdir().unwrap();
        let (edge, store) = (free_address(), free_address());
        let config = dir.path().join("keyfront.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {edge}\n{settings}\norigins:\n  store: {{type: embedded, root: store, listen: \"{store}\", bucket: media, access_key_id: edge-key, secret_access_key: edge-secret}}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n"
            ),
        )
        .unwrap();
        let served = Served::start(&config, edge, None);
        let origin = keyfront::origin::Origin::embedded(store, "media", "edge-key", "edge-secret");
        EmbeddedServe {
            dir,
            config,
            edge,
            origin,
            served,
        }
    }
}

/// A second `keyfront serve` started by mistake on a running one's ports
/// stops at once, naming the busy address, and takes none of the first
/// one's requests (pingora alone would wait 30 s, and the embedded origin,
/// whose port is kept open to upgrades, would have answered half of them).
#[test]
fn a_second_serve_on_busy_ports_exits_2_at_once_naming_the_address() {
    let first = EmbeddedServe::start("");
    assert_eq!(keyfront::origin::put_object(&first.origin, "/kept.txt", &[], b"kept").unwrap(), 200);
    let edge_only = first.dir.path().join("same-edge.yaml");
    let first_config = std::fs::read_to_string(&first.config).unwrap();
    let store = first_config.split("listen: \"").nth(1).unwrap().split('"').next().unwrap();
    std::fs::write(&edge_only, first_config.replace(store, &free_address().to_string())).unwrap();
    for (config, busy) in [(&first.config, store.to_owned()), (&edge_only, first.edge.to_string())] {
        let started = Instant::now();
        let second = keyfront(&["serve", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("listening on {busy}: Address already in use")), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }
    for _ in 0..20 {
        let answer = request(first.edge, "GET", "/kept.txt", &[], b"");
        assert_eq!((answer.status, answer.body.as_slice()), (200, b"kept".as_slice()));
        assert_eq!(keyfront::origin::put_object(&first.origin, "/kept.txt", &[], b"kept").unwrap(), 200);
    }
}

/// An `EmbeddedServe` whose origin holds a 24 MiB object, and a viewer that
/// has read its first 64 KiB.
struct Download {
    serve: EmbeddedServe,
    viewer: std::net::TcpStream,
    received: Vec<u8>,
    data: Vec<u8>,
}

impl Download {
    fn start(settings: &str) -> Download {
        let serve = EmbeddedServe::start(settings);
        let data = common::patterned(24 << 20);
        assert_eq!(keyfront::origin::put_object(&serve.origin, "/big.bin", &[], &data).unwrap(), 200);
        let mut viewer = std::net::TcpStream::connect(serve.edge).unwrap();
        viewer.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let get = format!("GET /big.bin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", serve.edge);
        std::io::Write::write_all(&mut viewer, get.as_bytes()).unwrap();
        let mut received = vec![0u8; 64 * 1024];
        viewer.read_exact(&mut received).unwrap();
        Download {
            serve,
            viewer,
            received,
            data,
        }
    }

    /// Reads the rest: the download must run to its end, right bytes only.
    fn finish(&mut self) {
        self.viewer.read_to_end(&mut self.received).unwrap();
        let body_start = self.received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(self.received.len() - body_start, self.data.len(), "the download ran to its end");
        assert!(self.received[body_start..] == self.data[..]);
    }
}

/// SIGTERM (by the child's own pid) while a viewer downloads 24 MiB: the
/// listener closes, the download runs on to its last byte, right bytes only,
/// and a kept-alive connection waiting for its next request is closed at
/// once, not at its idle timeout or the drain's end.
#[test]
fn sigterm_drains_in_flight_downloads() {
    let mut download = Download::start("drain_timeout: 5s");
    let mut idle = std::net::TcpStream::connect(download.serve.edge).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("HEAD /big.bin HTTP/1.1\r\nHost: {}\r\n\r\n", download.serve.edge);
    std::io::Write::write_all(&mut idle, head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(idle.read(&mut byte).unwrap(), 1, "the HEAD is answered");
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    download.serve.served.signal("TERM");
    let signalled = Instant::now();
    assert_eq!(idle.read(&mut [0u8; 1]).unwrap(), 0, "the idle connection is closed");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "closed at once: {:?}",
        signalled.elapsed()
    );
    common::wait_until("the listener closed", || std::net::TcpStream::connect(download.serve.edge).is_err());
    download.finish();
    let status = download.serve.served.child.wait().unwrap();
    assert!(status.success(), "a drained shutdown exits 0, not by the signal: {status:?}");
}

/// SIGINT ends `keyfront serve` at once, every time: with pingora's own quick
/// shutdown, a service on two or more threads (here the admin listener)
/// sometimes spun for ever on accept errors (3 of 12 demo runs here).
#[test]
fn sigint_ends_the_process_at_once_every_time() {
    let admin = free_address();
    let serve = EmbeddedServe::start(&format!("admin_listen: \"{admin}\""));
    drop(serve.served);
    for run in 0..6 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyfront"))
            .args(["serve", "--config", serve.config.to_str().unwrap(), "--threads", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        common::wait_for(serve.edge);
        common::wait_for(admin);
        assert_eq!(request(serve.edge, "GET", "/nothing", &[], b"").status, 404);
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "run {run}: still running 5 s after SIGINT ({status:?})"
        );
    }
}

/// A graceful upgrade: a second `keyfront serve --upgrade` takes the
/// listeners over when the first gets SIGQUIT. A download begun on the old
/// process and paused across the hand-over completes byte-exact; a viewer
/// connecting all the while is never refused; the old process exits, the
/// new one serves on (its embedded origin bound the same port meanwhile).
#[test]
fn a_graceful_upgrade_drops_no_viewer() {
    let mut download = Download::start("drain_timeout: 5s\nupgrade_socket: upgrade.sock");
    let edge = download.serve.edge;
    assert_eq!(
        keyfront::origin::put_object(&download.serve.origin, "/small.txt", &[], b"small").unwrap(),
        200
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let viewers = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut served, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match std::panic::catch_unwind(|| request(edge, "GET", "/small.txt", &[], b"")) {
                    Ok(answer) if answer.status == 200 && answer.body == b"small" => served += 1,
                    Ok(answer) => failed.push(format!("{} {}", answer.status, answer.text())),
                    Err(_) => failed.push("connection failed".to_owned()),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (served, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let _new = Served::spawn(&download.serve.config, &["--upgrade"], None);
    std::thread::sleep(Duration::from_millis(500));
    download.serve.served.signal("QUIT");
    // pingora's old process accepts alongside the new one for 5 s after the
    // hand-over, then stops accepting and drains for `drain_timeout` (5 s):
    // resume the download in the drain.
    std::thread::sleep(Duration::from_secs(6));
    download.finish();
    let deadline = Instant::now() + Duration::from_secs(15);
    while download.serve.served.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process exits once drained");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failed) = viewers.join().unwrap();
    assert!(failed.is_empty(), "no viewer refused or failed across the upgrade: {failed:?}");
    assert!(served > 100, "viewers were served throughout: {served}");
    assert_eq!(
        request(edge, "GET", "/small.txt", &[], b"").body,
        b"small",
        "the new process serves"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A disk tier that cannot write (a file-size limit put on the running
/// process with `prlimit`, as a full disk would): viewers are still served
/// whole, from memory; no partial file is left; `/readyz` and
/// `keyfront_disk_degraded` say degraded; both recover at the first write
/// after the limit is lifted. Without SIGXFSZ caught, the first write past
/// the limit would end the process.
#[test]
fn a_disk_that_cannot_write_degrades_and_recovers() {
    let admin = free_address();
    let serve = EmbeddedServe::start(&format!("admin_listen: \"{admin}\"\ncache:\n  disk: {{path: disk, size: 1GiB}}"));
    let data = common::patterned(3 << 20);
    for key in ["/before.bin", "/during.bin", "/after.bin"] {
        assert_eq!(keyfront::origin::put_object(&serve.origin, key, &[], &data).unwrap(), 200);
    }
    let pid = serve.served.child.id().to_string();
    // The soft limit only: lifting a hard one again would need privilege.
    let limit_file_size = |size: &str| {
        let limited = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={size}:")])
            .status()
            .unwrap();
        assert!(limited.success());
    };
    let readiness = || request(admin, "GET", "/readyz", &[], b"").text();
    let gauge = || {
        let metrics = request(admin, "GET", "/metrics", &[], b"").text();
        metrics
            .lines()
            .find(|l| l.starts_with("keyfront_disk_degraded "))
            .map(str::to_owned)
    };
    let served_whole = |key: &str| {
        let answer = request(serve.edge, "GET", key, &[], b"");
        assert!(
            answer.status == 200 && answer.body == data,
            "{key} served whole: {} {} bytes, first difference at {:?}",
            answer.status,
            answer.body.len(),
            answer.body.iter().zip(&data).position(|(a, b)| a != b)
        );
    };
    let slice_files = || {
        let files = files_under(&serve.dir.path().join("disk"));
        files.iter().filter(|f| f.extension().is_some_and(|e| e == "slice")).count()
    };
    let partial_files = || {
        let files = files_under(&serve.dir.path().join("disk"));
        files
            .into_iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().contains(".tmp"))
            .collect::<Vec<_>>()
    };

    served_whole("/before.bin");
    common::wait_until("the first object's three slices on disk", || slice_files() == 3);
    assert_eq!(readiness(), "{\"status\":\"ready\"}");

    limit_file_size("65536");
    served_whole("/during.bin");
    served_whole("/during.bin");
    common::wait_until("the tier degraded", || readiness().contains("\"status\":\"degraded\""));
    assert!(readiness().contains("File too large"), "{}", readiness());
    assert_eq!(gauge().as_deref(), Some("keyfront_disk_degraded 1"));
    common::wait_until("the three failed writes counted", || {
        request(admin, "GET", "/metrics", &[], b"")
            .text()
            .contains("keyfront_disk_errors_total 3")
    });
    assert_eq!(slice_files(), 3, "no slice of the second object written");
    assert_eq!(partial_files(), Vec::<std::path::PathBuf>::new(), "no partial file left");

    limit_file_size("unlimited");
    served_whole("/after.bin");
    common::wait_until("the tier recovered", || readiness() == "{\"status\":\"ready\"}");
    assert_eq!(gauge().as_deref(), Some("keyfront_disk_degraded 0"));
    common::wait_until("the third object's slices on disk", || slice_files() == 6);
    assert_eq!(partial_files(), Vec::<std::path::PathBuf>::new());
    served_whole("/during.bin");
}

/// `kill -HUP` (by the child's own pid) makes `keyfront serve` reload: a key
/// added to the file is trusted without a restart.
#[test]
fn sighup_reloads_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, store) = (free_address(), free_address());
    let config = dir.path().join("keyfront.yaml");
    let write_config = |trusted: &str| {
        let text = format!(
            "listen: {edge}\nkey_groups:\n  old:\n    - id: KOLD\n      public_key: {rsa}\n  new:\n    - id: KNEW\n      public_key: {ec}\norigins:\n  store: {{type: embedded, root: store, listen: \"{store}\", bucket: media, access_key_id: edge-key, secret_access_key: edge-secret}}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n    trusted_key_groups: [{trusted}]\n",
            rsa = fixture("rsa_public.pem").display(),
            ec = fixture("ec_public.pem").display(),
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("old");
    let served = Served::start(&config, edge, None);
    let key = keyfront::auth::PrivateKey::from_pem(&std::fs::read_to_string(fixture("ec_pkcs8.pem")).unwrap()).unwrap();
    let signer = keyfront::auth::Signer::new("KNEW", key, keyfront::auth::HashAlgorithm::Sha1);
    let url = signer.sign_url(
        &format!("http://{edge}/missing.mp4"),
        &keyfront::auth::PolicySpec::Canned {
            expires: common::now() + 600,
        },
    );
    let target = url.strip_prefix(&format!("http://{edge}")).unwrap().to_owned();
    assert!(request(edge, "GET", &target, &[], b"").text().contains("<Code>InvalidKey</Code>"));

    write_config("old, new");
    served.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Past the signature check, the embedded origin has no such object: 404.
        let status = request(edge, "GET", &target, &[], b"").status;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TLS listener serves HTTP/2 (through ALPN) and HTTP/1.1, and signed URLs
/// are checked against the `https://` URL the viewer used. curl is the client
/// (scripts/ensure-deps test installs it), the certificate OpenSSL's.
#[test]
fn tls_listeners_serve_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    common::self_signed_certificate(dir.path()).unwrap();
    let (plain, tls, store) = (free_address(), free_address(), free_address());
    let config = dir.path().join("keyfront.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {plain}\naccess_log: access.jsonl\naccess_log_format: json\ntls_listen:\n  - {{address: \"{tls}\", certificate: cert.pem, key: key.pem}}\nkey_groups:\n  main:\n    - id: KEC\n      public_key: {ec}\norigins:\n  store: {{type: embedded, root: store, listen: \"{store}\", bucket: media, access_key_id: edge-key, secret_access_key: edge-secret}}\nbehaviors:\n  - path_pattern: /public/*\n    origin: store\n  - path_pattern: \"*\"\n    origin: store\n    trusted_key_groups: [main]\n",
            ec = fixture("ec_public.pem").display(),
        ),
    )
    .unwrap();
    let _served = Served::start(&config, tls, None);
    let curl = |version: &str, url: &str| {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                "cert.pem",
                "--resolve",
                &format!("localhost:{}:{}", tls.port(), tls.ip()),
                version,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                url,
            ])
            .current_dir(dir.path())
            .output()
            .expect("curl is installed (scripts/ensure-deps test installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let base = format!("https://localhost:{}", tls.port());
    // Public and missing at the origin: 404 proves the request went through.
    assert_eq!(curl("--http2", &format!("{base}/public/none.txt")), "2 404");
    assert_eq!(curl("--http1.1", &format!("{base}/public/none.txt")), "1.1 404");
    let key = keyfront::auth::PrivateKey::from_pem(&std::fs::read_to_string(fixture("ec_pkcs8.pem")).unwrap()).unwrap();
    let signer = keyfront::auth::Signer::new("KEC", key, keyfront::auth::HashAlgorithm::Sha1);
    let expires = keyfront::auth::PolicySpec::Canned {
        expires: common::now() + 600,
    };
    let signed_https = signer.sign_url(&format!("{base}/private/none.mp4"), &expires);
    assert_eq!(curl("--http2", &signed_https), "2 404", "a URL signed for https:// passes over TLS");
    let signed_http = signer.sign_url(&format!("http://localhost:{}/private/none.mp4", tls.port()), &expires);
    let over_tls = signed_http.replacen("http://", "https://", 1);
    assert_eq!(curl("--http2", &over_tls), "2 403", "the scheme is part of what is signed");

    // Bytes over HTTP/2: a signed object whole and a range of it, two
    // streams on one connection, each exactly the object's bytes.
    let data = common::patterned(300_000);
    let origin = keyfront::origin::Origin::embedded(store, "media", "edge-key", "edge-secret");
    assert_eq!(keyfront::origin::put_object(&origin, "/private/film.mp4", &[], &data).unwrap(), 200);
    let signed = signer.sign_url(&format!("{base}/private/film.mp4"), &expires);
    let resolve = format!("localhost:{}:{}", tls.port(), tls.ip());
    let options = ["-sS", "--http2", "--cacert", "cert.pem", "--resolve", &resolve];
    let output = Command::new("curl")
        .args(options)
        .args(["-w", "%{http_version} %{http_code} %{num_connects}\n", "-o", "whole.bin", &signed])
        .arg("--next")
        .args(options)
        .args([
            "-w",
            "%{http_version} %{http_code} %{num_connects}\n",
            "-r",
            "1000-200999",
            "-o",
            "part.bin",
            &signed,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "2 200 1\n2 206 0\n",
        "two streams, one connection"
    );
    assert!(std::fs::read(dir.path().join("whole.bin")).unwrap() == data);
    assert!(std::fs::read(dir.path().join("part.bin")).unwrap() == data[1000..=200_999]);

    // The JSON access log: a line per request, every field named; a TLS
    // request's line has its protocol and cipher, every line its time to
    // first byte, the 206 its range.
    let path = dir.path().join("access.jsonl");
    common::wait_until("the access log's lines", || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.lines().count() >= 6)
    });
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for line in &lines {
        assert_eq!(line.as_object().unwrap().len(), 33, "{line}");
        assert_eq!(line["cs-protocol"], "https", "{line}");
        assert!(line["ssl-protocol"].as_str().unwrap().starts_with("TLS"), "{line}");
        assert!(
            line["ssl-cipher"].as_str().unwrap().contains("AES") || line["ssl-cipher"].as_str().unwrap().contains("CHACHA"),
            "{line}"
        );
        let first_byte: f64 = line["time-to-first-byte"].as_str().unwrap().parse().unwrap();
        let taken: f64 = line["time-taken"].as_str().unwrap().parse().unwrap();
        assert!(first_byte <= taken + 0.001, "{line}");
        assert!(line["c-port"].as_str().unwrap().parse::<u16>().is_ok(), "{line}");
        assert_eq!(line["x-edge-location"], "keyfront");
    }
    let ranged = lines.iter().find(|line| line["sc-status"] == "206").expect("the 206's line");
    assert_eq!(
        (&ranged["sc-range-start"], &ranged["sc-range-end"]),
        (&"1000".into(), &"200999".into())
    );
    assert_eq!(ranged["cs-protocol-version"], "HTTP/2.0");
    assert_eq!(ranged["sc-content-len"], "200000");
}

#[test]
fn origin_public_read_opens_object_reads_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let address = free_address();
    let _origin = Served {
        child: Command::new(env!("CARGO_BIN_EXE_keyfront"))
            .args(["origin", "--root", root.path().to_str().unwrap(), "--listen", &address.to_string()])
            .args([
                "--bucket",
                "open=open-key:open-secret",
                "--bucket",
                "closed=closed-key:closed-secret",
            ])
            .args(["--public-read", "open"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    };
    common::wait_for(address);
    for (bucket, key, secret) in [("open", "open-key", "open-secret"), ("closed", "closed-key", "closed-secret")] {
        let origin = keyfront::origin::Origin::embedded(address, bucket, key, secret);
        let status = keyfront::origin::put_object(&origin, "/a.txt", &[], b"public bytes").unwrap();
        assert_eq!(status, 200, "seeding {bucket}");
    }

    let read = request(address, "GET", "/open/a.txt", &[("Range", "bytes=7-")], b"");
    assert_eq!((read.status, read.text().as_str()), (206, "bytes"));
    assert_eq!(request(address, "HEAD", "/open/a.txt", &[], b"").status, 200);
    for (method, target, body) in [
        ("GET", "/closed/a.txt", &b""[..]),
        ("PUT", "/open/b.txt", b"anyone"),
        ("DELETE", "/open/a.txt", b""),
        ("GET", "/open/", b""),
        ("GET", "/", b""),
    ] {
        let response = request(address, method, target, &[], body);
        assert_eq!(response.status, 403, "unsigned {method} {target}: {}", response.text());
    }
    assert_eq!(request(address, "GET", "/open/a.txt", &[], b"").text(), "public bytes");

    let unknown = keyfront(&["origin", "--root", ".", "--bucket", "a=k:s", "--public-read", "b"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--public-read"));
}

/// On two threads, 400 sequential cold misses open about one origin
/// connection per thread (3 in every run here); pingora's own pool, which
/// loses a connection whenever its watcher on the other thread has not let
/// go in time, opened 5 to 20. Connections the origin closed while idle are
/// noticed when next taken, and the misses after still succeed.
#[test]
fn two_threads_reuse_their_origin_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::spawn_store(dir.path());
    let relay = common::Relay::start(store);
    let edge = free_address();
    let config = dir.path().join("keyfront.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {edge}\norigins:\n  store: {{type: s3, endpoint: \"http://{relay}\", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}}}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n",
            relay = relay.address,
        ),
    )
    .unwrap();
    let origin = keyfront::origin::Origin::embedded(store, BUCKET, ACCESS_KEY, SECRET);
    let body = |index: usize| format!("object {index} ").repeat(40 + index).into_bytes();
    for index in 0..440 {
        assert_eq!(
            keyfront::origin::put_object(&origin, &format!("/o{index}"), &[], &body(index)).unwrap(),
            200
        );
    }
    let _served = Served::spawn(&config, &["--threads", "2"], None);
    common::wait_for(edge);
    let miss = |index: usize| {
        let answer = request(edge, "GET", &format!("/o{index}"), &[], b"");
        assert!(
            answer.status == 200 && answer.body == body(index),
            "/o{index}: {} {}",
            answer.status,
            answer.text()
        );
    };

    for index in 0..400 {
        miss(index);
    }
    assert!(
        relay.connections() <= 4,
        "{} origin connections for 400 misses",
        relay.connections()
    );

    // The origin closes every idle connection.
    relay.set_on(false);
    relay.set_on(true);
    std::thread::sleep(Duration::from_millis(100));
    let before = relay.connections();
    for index in 400..440 {
        miss(index);
    }
    assert!(relay.connections() > before, "closed connections are not reused");
    assert!(
        relay.connections() <= before + 4,
        "{} more connections",
        relay.connections() - before
    );
}
