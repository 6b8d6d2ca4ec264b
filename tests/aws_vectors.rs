//! URLs signed by AWS's own signers (awscli, botocore; see tests/vectors/generate.py):
//! `keyfront sign` reproduces them byte for byte and `keyfront verify` accepts them.

use std::process::{Command, Output};

use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    name: String,
    url: String,
    policy_resource: Option<String>,
    key_pair_id: String,
    private_key: String,
    public_key: String,
    date_less_than: String,
    date_greater_than: Option<String>,
    ip_address: Option<String>,
    hash_algorithm: String,
    deterministic: bool,
    signed_url: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("vectors/aws_signer.json")).expect("vectors parse")
}

/// Inside every vector's validity window (after 2029-06-01, before 2030-01-01).
const VALID_TIME: &str = "2029-07-01T00:00:00Z";

fn keyfront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfront"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("keyfront runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verify(vector: &Vector, url: &str, client_ip: &str, time: &str) -> Output {
    let key = format!("{}={}", vector.key_pair_id, vector.public_key);
    keyfront(&["verify", "--url", url, "--key", &key, "--client-ip", client_ip, "--time", time])
}

fn client_ip_for(vector: &Vector) -> String {
    match vector.ip_address.as_deref() {
        Some(range) => range.split('/').next().unwrap().to_owned(),
        None => "127.0.0.1".to_owned(),
    }
}

#[test]
fn keyfront_sign_reproduces_every_rsa_vector_byte_for_byte() {
    let mut checked = 0;
    for vector in vectors().iter().filter(|v| v.deterministic) {
        let mut args = vec![
            "sign",
            "url",
            "--url",
            &vector.url,
            "--key-pair-id",
            &vector.key_pair_id,
            "--private-key",
            &vector.private_key,
            "--date-less-than",
            &vector.date_less_than,
            "--hash-algorithm",
            &vector.hash_algorithm,
        ];
        for (flag, value) in [
            ("--date-greater-than", &vector.date_greater_than),
            ("--ip-address", &vector.ip_address),
            ("--policy-resource", &vector.policy_resource),
        ] {
            if let Some(value) = value {
                args.extend([flag, value.as_str()]);
            }
        }
        let output = keyfront(&args);
        assert!(
            output.status.success(),
            "{}: {}",
            vector.name,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout(&output).trim_end(), vector.signed_url, "{}", vector.name);
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn keyfront_verify_accepts_every_vector() {
    for vector in vectors() {
        let output = verify(&vector, &vector.signed_url, &client_ip_for(&vector), VALID_TIME);
        assert!(output.status.success(), "{}:\n{}", vector.name, stdout(&output));
        assert!(stdout(&output).contains("decision:     ALLOW (signed URL)"), "{}", vector.name);
    }
}

#[test]
fn keyfront_verify_explains_expiry_start_and_ip() {
    let vectors = vectors();
    let everything = vectors.iter().find(|v| v.name == "cli custom everything").unwrap();
    let expired = verify(everything, &everything.signed_url, "203.0.113.5", "2030-01-01T02:03:00Z");
    assert_eq!(expired.status.code(), Some(1));
    assert!(stdout(&expired).contains("403 AccessDenied"), "{}", stdout(&expired));
    assert!(
        stdout(&expired).contains("expired at 2030-01-01T00:00:00Z (2h 3m ago)"),
        "{}",
        stdout(&expired)
    );
    let early = verify(everything, &everything.signed_url, "203.0.113.5", "2029-05-31T23:00:00Z");
    assert!(
        stdout(&early).contains("not valid before 2029-06-01T00:00:00Z (in 1h)"),
        "{}",
        stdout(&early)
    );
    let elsewhere = verify(everything, &everything.signed_url, "198.51.100.1", VALID_TIME);
    assert!(stdout(&elsewhere).contains("client IP 198.51.100.1 is outside the policy's AWS:SourceIp 203.0.113.0/24"));
}

/// The definition of done: an AWS CLI URL signed for `https://HOST/path/*`
/// opens the paths it covers and is refused, with the reason, for the rest.
#[test]
fn aws_cli_wildcard_url_covers_its_folder_only() {
    let vectors = vectors();
    let wildcard = vectors.iter().find(|v| v.name == "cli custom wildcard with start").unwrap();
    let (signed_base, signing_query) = wildcard.signed_url.split_once('?').unwrap();
    assert_eq!(signed_base, "https://d111111abcdef8.cloudfront.net/videos/*");
    for path in [
        "videos/intro.mp4",
        "videos/2026/a/b.m3u8",
        "vid%65os/intro.mp4",
        "videos/x.mp4?quality=hd",
    ] {
        let joiner = if path.contains('?') { '&' } else { '?' };
        let url = format!("https://d111111abcdef8.cloudfront.net/{path}{joiner}{signing_query}");
        let output = verify(wildcard, &url, "127.0.0.1", VALID_TIME);
        assert!(output.status.success(), "{path}: {}", stdout(&output));
    }
    // No spelling climbs out of the folder: paths without a canonical form
    // are refused before the signature is looked at.
    for path in [
        "videos/../private/x",
        "videos/%2e%2e/private/x",
        "videos/..%2Fprivate/x",
        "videos//x",
    ] {
        let url = format!("https://d111111abcdef8.cloudfront.net/{path}?{signing_query}");
        let output = verify(wildcard, &url, "127.0.0.1", VALID_TIME);
        assert_eq!(output.status.code(), Some(1), "{path}");
        assert!(
            stdout(&output).contains("DENY: 400 before any signature check"),
            "{path}: {}",
            stdout(&output)
        );
    }
    for path in ["video/intro.mp4", "Videos/intro.mp4", "private/videos/x"] {
        let url = format!("https://d111111abcdef8.cloudfront.net/{path}?{signing_query}");
        let output = verify(wildcard, &url, "127.0.0.1", VALID_TIME);
        assert_eq!(output.status.code(), Some(1), "{path}");
        let text = stdout(&output);
        assert!(text.contains("the policy's Resource does not cover the URL"), "{text}");
        assert!(text.contains("Resource: https://d111111abcdef8.cloudfront.net/videos/*"), "{text}");
        assert!(
            text.contains(&format!("URL:      https://d111111abcdef8.cloudfront.net/{path}")),
            "{text}"
        );
    }
    let other_host = format!("https://evil.example.com/videos/intro.mp4?{signing_query}");
    assert_eq!(verify(wildcard, &other_host, "127.0.0.1", VALID_TIME).status.code(), Some(1));
}

#[test]
fn bad_arguments_name_the_flag_and_exit_2() {
    let output = keyfront(&[
        "sign",
        "url",
        "--url",
        "https://h/a",
        "--key-pair-id",
        "K",
        "--private-key",
        "tests/vectors/keys/rsa_pkcs1.pem",
        "--date-less-than",
        "next week",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--date-less-than: \"next week\""));
    let missing = keyfront(&["verify", "--url", "https://h/a", "--key", "K=does/not/exist.pem"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does/not/exist.pem"));
}

#[test]
fn signed_cookies_print_as_set_cookie_lines_and_json() {
    let base = [
        "sign",
        "cookies",
        "--url",
        "https://cdn.example.com/*",
        "--key-pair-id",
        "K2JCJMDEHXQW5F",
        "--private-key",
        "tests/vectors/keys/ec_pkcs8.pem",
        "--date-less-than",
        "2030-01-01",
    ];
    let lines = stdout(&keyfront(&base));
    let names: Vec<&str> = lines.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Set-Cookie: CloudFront-Policy",
            "Set-Cookie: CloudFront-Signature",
            "Set-Cookie: CloudFront-Key-Pair-Id"
        ]
    );
    assert!(lines.lines().all(|l| l.ends_with("; Path=/; Secure; HttpOnly")), "{lines}");

    let json = stdout(&keyfront(&[&base[..], &["--json", "--hash-algorithm", "sha256"]].concat()));
    let cookies: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(cookies["CloudFront-Hash-Algorithm"], "SHA256");
    let cookie_header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
    let verdict = keyfront(&[
        "verify",
        "--url",
        "https://cdn.example.com/any/file.pdf",
        "--cookie",
        &cookie_header.join("; "),
        "--key",
        "K2JCJMDEHXQW5F=tests/vectors/keys/ec_public.pem",
        "--time",
        "2029-01-01",
    ]);
    assert!(verdict.status.success(), "{}", stdout(&verdict));
    assert!(stdout(&verdict).contains("ALLOW (signed cookies)"));
}

#[test]
fn keygen_writes_a_usable_pair_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("k.pem");
    let public = dir.path().join("k.pub.pem");
    let args = [
        "keygen",
        "--algorithm",
        "ecdsa",
        "--private-key",
        private.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ];
    let output = keyfront(&args);
    assert!(output.status.success());
    let key_id = stdout(&output)
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let signed = stdout(&keyfront(&[
        "sign",
        "url",
        "--url",
        "https://h/a",
        "--key-pair-id",
        &key_id,
        "--private-key",
        private.to_str().unwrap(),
        "--date-less-than",
        "2100000000",
    ]));
    let key_spec = format!("{key_id}={}", public.display());
    let verdict = keyfront(&["verify", "--url", signed.trim(), "--key", &key_spec]);
    assert!(verdict.status.success(), "{}", stdout(&verdict));
    assert_eq!(
        keyfront(&args).status.code(),
        Some(2),
        "a second keygen must not overwrite the keys"
    );
}

/// A policy large enough to sign a URL over CloudFront's 8,192-byte limit
/// (found by fuzzing): the URL is printed, with a warning that viewers will
/// get 414.
#[test]
fn sign_warns_when_the_url_is_over_the_limit() {
    let sign = |extra: &[&str]| {
        let key = "tests/vectors/keys/rsa_pkcs1.pem";
        let base = [
            "sign",
            "url",
            "--url",
            "https://h/x",
            "--key-pair-id",
            "K1",
            "--private-key",
            key,
            "--date-less-than",
            "2030-01-01",
        ];
        keyfront(&[&base[..], extra].concat())
    };
    let long = format!("https://h/{}*", "a".repeat(7000));
    let output = sign(&["--policy-resource", &long]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over the 8192-byte limit; viewers will get 414"), "{stderr}");
    let short = sign(&[]);
    assert!(short.status.success() && short.stderr.is_empty());
}
