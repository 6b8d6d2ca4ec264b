//! `bench/functions`: what a CloudFront Function costs. First the
//! per-invocation cost of a small viewer-request function (in this process,
//! on one thread); then hot 4 KiB hits of one behavior with that function
//! against the same behavior without it, alternately, through one emulator
//! in one run (a ratio).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use keyfront::emulator::{Emulator, EmulatorOptions};
use keyfront::functions::{self, FunctionCode, JsRuntime, RequestView};
use keyfront::origin::{Origin, put_object};

use crate::load::{Answers, Requests, wrk};
use crate::report::Samples;
use crate::{Failure, Settings};

const NS: &str = "xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"";

/// The function measured: the index rewrite most sites use, plus a header.
const SOURCE: &str = "function handler(event) { var r = event.request; if (r.uri.endsWith('/')) { r.uri += 'index.html'; } r.headers['x-rewritten'] = { value: 'yes' }; return r; }";

pub fn run() -> Result<(), Failure> {
    let settings = Settings::from_env()?;
    per_invocation()?;
    throughput(&settings)
}

fn per_invocation() -> Result<(), Failure> {
    let code = FunctionCode {
        name: "bench".into(),
        version: "E1".into(),
        source: Arc::from(SOURCE),
        runtime: JsRuntime::V2,
        store: None,
    };
    let event = functions::request_event(&RequestView {
        method: "GET",
        uri: "/docs/",
        query: Some("lang=en"),
        headers: vec![("host", "127.0.0.2:8580"), ("user-agent", "curl/8"), ("accept", "*/*")],
        viewer_ip: Some("192.0.2.1".into()),
        distribution_id: "EBENCH",
        distribution_domain: "127.0.0.2:8580",
        request_id: "r".into(),
    });
    const RUNS: u32 = 20_000;
    let mut batches = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..RUNS {
            let invocation = functions::invoke(&code, &event).map_err(|e| format!("the function failed: {e}"))?;
            let changes = functions::request_outcome(&invocation.output).map_err(|e| format!("its output: {e}"))?;
            if changes.map_or(true, |changes| changes.uri != "/docs/index.html") {
                return Err("the function did not rewrite the URI".into());
            }
        }
        batches.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS));
    }
    batches.sort_by(f64::total_cmp);
    println!(
        "bench/functions: one invocation of the index rewrite (event in, output checked): median {:.1} µs, fastest {:.1} µs ({RUNS} runs x 5)",
        batches[2], batches[0]
    );
    Ok(())
}

fn throughput(settings: &Settings) -> Result<(), Failure> {
    let emulator = Emulator::start(EmulatorOptions::default())?;
    let origin = Origin::embedded(emulator.s3, &emulator.bucket, &emulator.access_key_id, &emulator.secret_access_key);
    put_object(&origin, "/hot.bin", &[], &vec![7u8; 4096])?;
    let call = |method: &str, path: &str, body: &str, if_match: Option<&str>| -> Result<String, Failure> {
        let answer = emulator.call(method, path, body.as_bytes(), if_match)?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        if answer.status >= 300 {
            return Err(format!("{method} {path}: {} {text}", answer.status).into());
        }
        Ok(answer.header("etag").map(str::to_owned).unwrap_or(text))
    };
    let code = base64::engine::general_purpose::STANDARD.encode(SOURCE);
    let etag = call(
        "POST",
        "/2020-05-31/function",
        &format!(
            "<CreateFunctionRequest {NS}><Name>bench</Name><FunctionConfig><Comment>c</Comment><Runtime>cloudfront-js-2.0</Runtime></FunctionConfig><FunctionCode>{code}</FunctionCode></CreateFunctionRequest>"
        ),
        None,
    )?;
    call("POST", "/2020-05-31/function/bench/publish", "", Some(&etag))?;
    let arn = "arn:aws:cloudfront::123456789012:function/bench";
    let distribution = |reference: &str, functions: &str| -> Result<String, Failure> {
        let body = format!(
            "<DistributionConfig {NS}><CallerReference>{reference}</CallerReference><Comment>c</Comment><Enabled>true</Enabled>\
             <Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>{}.s3.amazonaws.com</DomainName><S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity></S3OriginConfig></Origin></Items></Origins>\
             <DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><ViewerProtocolPolicy>allow-all</ViewerProtocolPolicy><MinTTL>0</MinTTL>{functions}</DefaultCacheBehavior></DistributionConfig>",
            emulator.bucket
        );
        let answer = emulator.call("POST", "/2020-05-31/distribution", body.as_bytes(), None)?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        let start = text.find("<DomainName>").ok_or_else(|| format!("no distribution: {text}"))? + "<DomainName>".len();
        Ok(text[start..start + text[start..].find('<').unwrap_or(0)].to_owned())
    };
    let plain = distribution("plain", "")?;
    let with_function = distribution(
        "function",
        &format!(
            "<FunctionAssociations><Quantity>1</Quantity><Items><FunctionAssociation><FunctionARN>{arn}</FunctionARN><EventType>viewer-request</EventType></FunctionAssociation></Items></FunctionAssociations>"
        ),
    )?;
    let dir = tempfile::tempdir()?;
    let targets = ["/hot.bin".to_owned()];
    let mut samples = Samples::default();
    for domain in [&plain, &with_function] {
        // Warm: the object cached before any measured run.
        wrk(domain.parse()?, &Requests::Cycle(&targets), Answers::Served, 4, 1, dir.path())?;
    }
    for _ in 0..settings.rounds {
        for (name, domain) in [("without", &plain), ("with", &with_function)] {
            let run = wrk(
                domain.parse()?,
                &Requests::Cycle(&targets),
                Answers::Served,
                64,
                settings.seconds,
                dir.path(),
            )?;
            samples.add("hits", name, run.requests_per_second);
        }
    }
    let (with, without) = (
        samples.median("hits", "with").unwrap_or(0.0),
        samples.median("hits", "without").unwrap_or(0.0),
    );
    println!(
        "bench/functions: hot 4 KiB hits, {} rounds of {} s: without a function {without:.0}/s, with one {with:.0}/s: {:.2} of it; {:.1} µs more per request",
        settings.rounds,
        settings.seconds,
        with / without,
        (1.0 / with - 1.0 / without) * 1e6 * crate::threads() as f64
    );
    Ok(())
}
