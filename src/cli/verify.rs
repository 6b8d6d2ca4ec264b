//! `keyfront verify`: the decision CloudFront would make, and the exact reason.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::dates::parse_date;
use super::{CliError, load_public_key};
use crate::auth::{CredentialSource, Policy, TrustedKeys, Verifier, ViewerRequest, format_epoch, split_target};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The signed URL as a viewer would request it.
    #[arg(long)]
    url: String,
    /// A Cookie header value (`name=value; name2=value2`); repeatable.
    #[arg(long)]
    cookie: Vec<String>,
    /// The viewer's address, for policies with AWS:SourceIp.
    #[arg(long)]
    client_ip: Option<IpAddr>,
    /// Judge as of this time instead of now (epoch seconds or RFC 3339).
    #[arg(long)]
    time: Option<String>,
    /// A trusted public key as ID=PEM-PATH; repeatable.
    #[arg(long = "key", value_name = "ID=PATH", required = true)]
    keys: Vec<String>,
}

/// Splits `https://host/path?q` into `https://host` and `/path?q`.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let authority_start = url.find("://")? + 3;
    let url = url.split('#').next().unwrap_or(url);
    let path_start = url[authority_start..].find('/').map_or(url.len(), |i| authority_start + i);
    Some(url.split_at(path_start))
}

pub fn run(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let mut trusted = Vec::new();
    for spec in &args.keys {
        let (id, path) = spec
            .split_once('=')
            .ok_or_else(|| CliError::bad("--key", spec, "expected ID=PATH"))?;
        trusted.push((id.to_owned(), load_public_key(&PathBuf::from(path))?));
    }
    let trusted = TrustedKeys::new(trusted);
    let now = match &args.time {
        Some(text) => parse_date(text).map_err(|reason| CliError::bad("--time", text, reason))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let (base_url, target) =
        split_url(&args.url).ok_or_else(|| CliError::bad("--url", &args.url, "expected an absolute http:// or https:// URL"))?;
    let target = match split_target(target) {
        Ok(target) => target,
        Err(refusal) => {
            println!("decision:     DENY: {} before any signature check", refusal.status());
            println!("reason:       {refusal}");
            return Ok(ExitCode::from(1));
        }
    };
    let cookies: Vec<&str> = args.cookie.iter().map(String::as_str).collect();
    let request = ViewerRequest {
        base_url,
        target: &target,
        cookie_headers: &cookies,
        client_ip: args.client_ip,
        now,
    };
    println!("URL covered:  {base_url}{}", target.canonical);
    println!("judged at:    {}", format_epoch(now));
    match Verifier::new(1 << 20).verify(&request, &trusted) {
        Ok(grant) => {
            let source = match grant.source {
                CredentialSource::SignedUrl => "signed URL",
                _ => "signed cookies",
            };
            println!("decision:     ALLOW ({source})");
            println!("key:          {} ({:?})", grant.key_pair_id, grant.hash_algorithm);
            print_policy(&grant.policy);
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            let code = rejection.reason.error_code();
            println!(
                "decision:     DENY: {} {} ({})",
                rejection.reason.status(),
                code.code(),
                code.message()
            );
            if let Some(key) = &rejection.key_pair_id {
                println!("key:          {key}");
            }
            if let Some(policy) = &rejection.policy {
                print_policy(policy);
            }
            println!("reason:       {}", rejection.reason);
            Ok(ExitCode::from(1))
        }
    }
}

fn print_policy(policy: &Policy) {
    let kind = if policy.resource_is_pattern { "custom" } else { "canned" };
    println!("policy:       {kind}");
    println!("  Resource:        {}", policy.resource.as_deref().unwrap_or("(none: any URL)"));
    println!("  DateLessThan:    {}", format_epoch(policy.date_less_than));
    if let Some(start) = policy.date_greater_than {
        println!("  DateGreaterThan: {}", format_epoch(start));
    }
    if let Some(range) = policy.source_ip {
        println!("  SourceIp:        {range}");
    }
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split_at_the_path() {
        assert_eq!(split_url("https://h:8443/a?b"), Some(("https://h:8443", "/a?b")));
        assert_eq!(split_url("https://h"), Some(("https://h", "")));
        assert_eq!(split_url("https://h/a#frag"), Some(("https://h", "/a")));
        assert_eq!(split_url("/a"), None);
    }
}
