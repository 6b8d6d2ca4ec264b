//! Verification cost: the full check of a signed URL without the memo (one RSA
//! or ECDSA operation) and with a memo hit, for RSA-2048 and ECDSA P-256,
//! beside `openssl speed` on the same machine.
//!
//! Targets (issue 2): uncached RSA within 2x of OpenSSL's verify; memo hit under 1 µs.
//! Run: `cargo bench --bench verify`

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PrivateKey, Signer, TrustedKeys, Verifier, ViewerRequest, split_target};

const BASE: &str = "https://cdn.example.com";
const NOW: u64 = 1_900_000_000;

struct Case {
    name: &'static str,
    trusted: TrustedKeys,
    target: String,
}

fn cases() -> Vec<Case> {
    [("rsa2048", KeyAlgorithm::Rsa), ("ecdsa-p256", KeyAlgorithm::Ecdsa)]
        .into_iter()
        .map(|(name, algorithm)| {
            let key = PrivateKey::generate(algorithm);
            let trusted = TrustedKeys::new([("K1".to_owned(), key.public_key())]);
            let url = Signer::new("K1", key, HashAlgorithm::Sha1).sign_url(
                &format!("{BASE}/videos/2026/launch-keynote-1080p.mp4?lang=en"),
                &PolicySpec::Canned { expires: NOW + 3600 },
            );
            Case {
                name,
                trusted,
                target: url.strip_prefix(BASE).unwrap().to_owned(),
            }
        })
        .collect()
}

fn verify_once(verifier: &Verifier, case: &Case) {
    let target = split_target(&case.target).expect("a canonical target");
    let request = ViewerRequest {
        base_url: BASE,
        target: &target,
        cookie_headers: &[],
        client_ip: None,
        now: NOW,
    };
    black_box(verifier.verify(&request, &case.trusted).expect("the URL is valid"));
}

fn bench(c: &mut Criterion) {
    for case in cases() {
        let uncached = Verifier::new(0);
        c.bench_function(&format!("{}/uncached", case.name), |b| b.iter(|| verify_once(&uncached, &case)));
        let memo = Verifier::default();
        verify_once(&memo, &case);
        c.bench_function(&format!("{}/memo_hit", case.name), |b| b.iter(|| verify_once(&memo, &case)));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}

/// Median microseconds per call over several timed batches.
fn per_call_micros(mut call: impl FnMut()) -> f64 {
    let mut batches: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..300 {
                call();
            }
            start.elapsed().as_secs_f64() * 1e6 / 300.0
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

/// OpenSSL's verifications per second for `rsa2048` and `ecdsap256`, single core.
fn openssl_verifies_per_second() -> Option<(f64, f64)> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa2048", "ecdsap256"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let column = |prefix: &str, index_from_end: usize| {
        text.lines().find(|l| l.trim_start().starts_with(prefix)).and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(fields.len() - index_from_end)?.parse::<f64>().ok()
        })
    };
    // `rsa 2048 bits ... sign verify sign/s verify/s` and `256 bits ecdsa (nistp256) ... sign verify sign/s verify/s`.
    Some((column("rsa 2048", 1)?, column("256 bits ecdsa", 1)?))
}

fn summary() {
    println!("\nsummary (median of 7 batches of 300 calls, one core)");
    let openssl = openssl_verifies_per_second();
    let mut openssl_micros = [None, None];
    if let Some((rsa, ecdsa)) = openssl {
        openssl_micros = [Some(1e6 / rsa), Some(1e6 / ecdsa)];
    }
    println!(
        "{:<12} {:>14} {:>14} {:>16} {:>10}",
        "key", "uncached µs", "memo hit µs", "openssl verify µs", "ratio"
    );
    for (case, openssl) in cases().iter().zip(openssl_micros) {
        let uncached = Verifier::new(0);
        let memo = Verifier::default();
        let cold = per_call_micros(|| verify_once(&uncached, case));
        let hot = per_call_micros(|| verify_once(&memo, case));
        let (reference, ratio) = match openssl {
            Some(us) => (format!("{us:.1}"), format!("{:.2}x", cold / us)),
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        println!("{:<12} {cold:>14.1} {hot:>14.2} {reference:>16} {ratio:>10}", case.name);
    }
    if openssl.is_none() {
        println!("(openssl speed did not run: install openssl to compare)");
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --all-targets` runs each benchmark once as a smoke test; the
    // timed summary and `openssl speed` belong to `cargo bench` only.
    if std::env::args().any(|arg| arg == "--bench") {
        summary();
    }
}
