//! `keyfront sign url` and `keyfront sign cookies`, with the flags of `aws cloudfront sign`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::dates::parse_date;
use super::{CliError, load_private_key, read_text};
use crate::auth::{HashAlgorithm, MAX_EPOCH, PolicySpec, PolicyTerms, Signer, parse_custom_policy, parse_ip_range};

#[derive(Subcommand, Debug)]
pub enum SignCommand {
    /// Print a signed URL.
    Url(SignArgs),
    /// Print signed cookies as Set-Cookie lines (or JSON).
    Cookies {
        #[command(flatten)]
        sign: SignArgs,
        /// Print a JSON object of cookie names and values instead.
        #[arg(long)]
        json: bool,
        /// The cookies' Domain attribute.
        #[arg(long)]
        cookie_domain: Option<String>,
        /// The cookies' Path attribute.
        #[arg(long, default_value = "/")]
        cookie_path: String,
    },
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The URL to sign, without signing parameters.
    #[arg(long)]
    url: String,
    /// The id of the public key in a trusted key group.
    #[arg(long)]
    key_pair_id: String,
    /// The private key PEM (PKCS#1, PKCS#8 or EC); `file://PATH` works too.
    #[arg(long)]
    private_key: PathBuf,
    /// Expiry: epoch seconds, RFC 3339, YYYY-MM-DDThh:mm:ss (UTC) or YYYY-MM-DD.
    #[arg(long, required_unless_present = "policy_file")]
    date_less_than: Option<String>,
    /// Start of validity; makes the policy custom.
    #[arg(long, conflicts_with = "policy_file")]
    date_greater_than: Option<String>,
    /// An address or CIDR the viewer must come from; makes the policy custom.
    #[arg(long, conflicts_with = "policy_file")]
    ip_address: Option<String>,
    /// The policy's Resource when it differs from --url (wildcards `*` and `?`).
    #[arg(long, conflicts_with = "policy_file")]
    policy_resource: Option<String>,
    /// A custom policy document, signed exactly as written.
    #[arg(long, conflicts_with = "date_less_than")]
    policy_file: Option<PathBuf>,
    /// sha1 (CloudFront's default) or sha256 (adds Hash-Algorithm=SHA256).
    #[arg(long, default_value = "sha1", value_parser = parse_hash_algorithm)]
    hash_algorithm: HashAlgorithm,
}

fn parse_hash_algorithm(text: &str) -> Result<HashAlgorithm, String> {
    HashAlgorithm::from_name(text).ok_or_else(|| "expected sha1 or sha256".to_owned())
}

impl SignArgs {
    fn signer_and_policy(&self) -> Result<(Signer, PolicySpec), CliError> {
        let key = load_private_key(&self.private_key)?;
        let policy = match &self.policy_file {
            Some(path) => {
                let document = read_text(path)?;
                parse_custom_policy(document.as_bytes()).map_err(|e| {
                    CliError::bad(
                        "--policy-file",
                        path.display().to_string(),
                        format!("CloudFront would refuse it: {e}"),
                    )
                })?;
                PolicySpec::Custom { document }
            }
            None => PolicySpec::for_url(&self.url, &self.terms()?),
        };
        Ok((Signer::new(&self.key_pair_id, key, self.hash_algorithm), policy))
    }

    fn terms(&self) -> Result<PolicyTerms, CliError> {
        let date = |flag: &'static str, text: &str| {
            let seconds = parse_date(text).map_err(|reason| CliError::bad(flag, text, reason))?;
            if seconds > MAX_EPOCH {
                return Err(CliError::bad(flag, text, "CloudFront accepts dates up to 2038-01-19T03:14:07Z"));
            }
            Ok(seconds)
        };
        let date_less_than = self
            .date_less_than
            .as_deref()
            .expect("clap requires --date-less-than without --policy-file");
        if let Some(ip) = &self.ip_address
            && parse_ip_range(ip).is_none()
        {
            return Err(CliError::bad("--ip-address", ip, "expected an address or CIDR range"));
        }
        Ok(PolicyTerms {
            resource: self.policy_resource.clone(),
            date_less_than: date("--date-less-than", date_less_than)?,
            date_greater_than: self
                .date_greater_than
                .as_deref()
                .map(|d| date("--date-greater-than", d))
                .transpose()?,
            ip_address: self.ip_address.clone(),
        })
    }
}

pub fn run(command: SignCommand) -> Result<ExitCode, CliError> {
    match command {
        SignCommand::Url(args) => {
            let (signer, policy) = args.signer_and_policy()?;
            let url = signer.sign_url(&args.url, &policy);
            if url.len() > crate::request::MAX_URL_BYTES {
                // Found by fuzzing: a large custom policy makes a URL that
                // CloudFront and keyfront refuse (414) before reading it.
                eprintln!(
                    "keyfront sign: warning: the signed URL is {} bytes, over the {}-byte limit; viewers will get 414 (use signed cookies or a shorter policy)",
                    url.len(),
                    crate::request::MAX_URL_BYTES
                );
            }
            println!("{url}");
        }
        SignCommand::Cookies {
            sign,
            json,
            cookie_domain,
            cookie_path,
        } => {
            let (signer, policy) = sign.signer_and_policy()?;
            let cookies = signer.sign_cookies(&sign.url, &policy);
            if json {
                let object: serde_json::Map<String, serde_json::Value> =
                    cookies.into_iter().map(|(name, value)| (name, value.into())).collect();
                println!("{}", serde_json::Value::Object(object));
            } else {
                let mut attributes = format!("; Path={cookie_path}");
                if let Some(domain) = cookie_domain {
                    attributes.push_str(&format!("; Domain={domain}"));
                }
                // Browsers drop Secure cookies on plain http, which would break local use.
                if sign.url.starts_with("https://") {
                    attributes.push_str("; Secure");
                }
                attributes.push_str("; HttpOnly");
                for (name, value) in cookies {
                    println!("Set-Cookie: {name}={value}{attributes}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
