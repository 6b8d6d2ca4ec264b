//! `keyfront demo`: signs and verifies sample URLs and cookies with a fresh key,
//! showing what the edge will accept and what it will refuse, and why.

use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::auth::{
    HashAlgorithm, KeyAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Rejection, Signer,
    TrustedKeys, Verifier, ViewerRequest, split_target,
};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The public base URL the sample URLs use.
    #[arg(long, default_value = "https://cdn.example.com")]
    base_url: String,
}

pub fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa);
    let public = key.public_key();
    let key_id = public.derived_key_id();
    let trusted = TrustedKeys::new([(key_id.clone(), public)]);
    let signer = Signer::new(&key_id, key, HashAlgorithm::Sha1);
    let verifier = Verifier::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = args.base_url.trim_end_matches('/');
    println!("keyfront demo: a new RSA-2048 key pair, key id {key_id}\n");

    let canned_url = signer.sign_url(
        &format!("{base}/videos/intro.mp4"),
        &PolicySpec::Canned {
            expires: now + 3600,
        },
    );
    let folder = PolicyTerms {
        resource: Some(format!("{base}/videos/*")),
        date_less_than: now + 3600,
        ..PolicyTerms::default()
    };
    let folder_url = format!("{base}/videos/intro.mp4");
    let wildcard_url = signer.sign_url(&folder_url, &PolicySpec::for_url(&folder_url, &folder));
    let wildcard_query = wildcard_url.split_once('?').map_or("", |(_, q)| q);
    let cookies = signer.sign_cookies(&folder_url, &PolicySpec::for_url(&folder_url, &folder));
    let cookie_header = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");

    let judge = |label: &str, url: &str, cookie: Option<&str>, at: u64| {
        let (origin, target) = url.split_at(base.len());
        let target = split_target(target);
        let cookie_headers: Vec<&str> = cookie.into_iter().collect();
        let request = ViewerRequest {
            base_url: origin,
            target: &target,
            cookie_headers: &cookie_headers,
            client_ip: None,
            now: at,
        };
        let verdict = match verifier.verify(&request, &trusted) {
            Ok(_) => "200 allowed".to_owned(),
            Err(Rejection { reason, .. }) => format!(
                "{} {}: {reason}",
                reason.status(),
                reason.error_code().code()
            ),
        };
        println!("  {label:<44} {verdict}");
    };
    println!("canned policy URL (one file, one hour):\n  {canned_url}\n");
    println!("custom policy URL for the folder {base}/videos/*:\n  {wildcard_url}\n");
    println!("signed cookies for the same folder:\n  Cookie: {cookie_header}\n");
    println!("what the edge decides:");
    judge("canned URL", &canned_url, None, now);
    judge("canned URL, two hours later", &canned_url, None, now + 7200);
    judge(
        "canned URL, path changed",
        &canned_url.replace("intro", "outro"),
        None,
        now,
    );
    judge(
        "folder URL, another file in the folder",
        &format!("{base}/videos/2026/talk.mp4?{wildcard_query}"),
        None,
        now,
    );
    judge(
        "folder URL, a file outside the folder",
        &format!("{base}/private/report.pdf?{wildcard_query}"),
        None,
        now,
    );
    judge(
        "cookies, a file in the folder",
        &format!("{base}/videos/any.mp4"),
        Some(&cookie_header),
        now,
    );
    judge(
        "no signature at all",
        &format!("{base}/videos/intro.mp4"),
        None,
        now,
    );
    Ok(ExitCode::SUCCESS)
}
