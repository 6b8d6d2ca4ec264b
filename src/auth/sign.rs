//! Signing URLs and cookies the way AWS's own signers do, byte for byte.

use super::encoding::{JsonEscape, cloudfront_base64_encode};
use super::keys::{HashAlgorithm, PrivateKey};
use super::policy::{aws_custom_policy_document, canned_policy_document};

/// The policy a signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySpec {
    /// A canned policy: the URL itself, valid until `expires` (Unix seconds).
    Canned { expires: u64 },
    /// A custom policy document, signed exactly as given.
    Custom { document: String },
}

/// What a policy should allow, as `aws cloudfront sign` takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTerms {
    /// The Resource when it differs from the URL (wildcards allowed).
    pub resource: Option<String>,
    /// Unix seconds; the URL is valid strictly before.
    pub date_less_than: u64,
    /// Unix seconds; the URL is valid from then on.
    pub date_greater_than: Option<u64>,
    /// An address or CIDR range; a bare address means `/32` (IPv6: `/128`).
    pub ip_address: Option<String>,
}

impl PolicySpec {
    /// Chooses as the AWS CLI does: a custom policy when there is a start date,
    /// an IP range, a wildcard, or a Resource other than the URL; otherwise canned.
    pub fn for_url(url: &str, terms: &PolicyTerms) -> Self {
        let resource = terms.resource.as_deref().unwrap_or(url);
        let needs_custom = terms.date_greater_than.is_some() || terms.ip_address.is_some() || resource.contains('*') || resource != url;
        if !needs_custom {
            return Self::Canned {
                expires: terms.date_less_than,
            };
        }
        let ip = terms.ip_address.as_deref().map(|ip| match ip.contains('/') {
            true => ip.to_owned(),
            false if ip.contains(':') => format!("{ip}/128"),
            false => format!("{ip}/32"),
        });
        Self::Custom {
            document: aws_custom_policy_document(resource, terms.date_less_than, terms.date_greater_than, ip.as_deref()),
        }
    }
}

/// Signs with one key pair: what an application holds to hand out URLs.
#[derive(Debug)]
pub struct Signer {
    key_pair_id: String,
    key: PrivateKey,
    hash_algorithm: HashAlgorithm,
}

/// The signing parameters of one signature, in the order AWS's signers write them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningParams {
    /// `("Expires", N)` or `("Policy", base64)`.
    pub policy: (&'static str, String),
    pub signature: String,
    pub key_pair_id: String,
    /// Set for SHA-256 only; SHA-1 is CloudFront's default and is not written.
    pub hash_algorithm: Option<&'static str>,
}

impl SigningParams {
    fn pairs(&self, prefix: &str) -> Vec<(String, String)> {
        let mut pairs = vec![
            (format!("{prefix}{}", self.policy.0), self.policy.1.clone()),
            (format!("{prefix}Signature"), self.signature.clone()),
            (format!("{prefix}Key-Pair-Id"), self.key_pair_id.clone()),
        ];
        if let Some(algorithm) = self.hash_algorithm {
            pairs.push((format!("{prefix}Hash-Algorithm"), algorithm.to_owned()));
        }
        pairs
    }
}

impl Signer {
    pub fn new(key_pair_id: impl Into<String>, key: PrivateKey, hash_algorithm: HashAlgorithm) -> Self {
        Self {
            key_pair_id: key_pair_id.into(),
            key,
            hash_algorithm,
        }
    }

    /// Signs `policy` for `url` (the URL matters only for a canned policy).
    pub fn params(&self, url: &str, policy: &PolicySpec) -> SigningParams {
        let (document, policy_param) = match policy {
            PolicySpec::Canned { expires } => (
                canned_policy_document(url, *expires, JsonEscape::AsciiOnly),
                ("Expires", expires.to_string()),
            ),
            PolicySpec::Custom { document } => (document.clone(), ("Policy", cloudfront_base64_encode(document.as_bytes()))),
        };
        SigningParams {
            policy: policy_param,
            signature: cloudfront_base64_encode(&self.key.sign(self.hash_algorithm, document.as_bytes())),
            key_pair_id: self.key_pair_id.clone(),
            hash_algorithm: (self.hash_algorithm == HashAlgorithm::Sha256).then_some(HashAlgorithm::Sha256.param()),
        }
    }

    /// A signed URL: `url`, then `?` (or `&` when it has a query) and the signing parameters.
    pub fn sign_url(&self, url: &str, policy: &PolicySpec) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        let query: Vec<String> = self
            .params(url, policy)
            .pairs("")
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!("{url}{separator}{}", query.join("&"))
    }

    /// Signed cookies as `(name, value)` pairs: `CloudFront-Expires` or
    /// `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`.
    pub fn sign_cookies(&self, url: &str, policy: &PolicySpec) -> Vec<(String, String)> {
        self.params(url, policy).pairs("CloudFront-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_choice_follows_the_aws_cli() {
        let terms = PolicyTerms {
            date_less_than: 100,
            ..PolicyTerms::default()
        };
        assert_eq!(PolicySpec::for_url("https://h/a", &terms), PolicySpec::Canned { expires: 100 });
        assert!(matches!(PolicySpec::for_url("https://h/*", &terms), PolicySpec::Custom { .. }));
        let with_ip = PolicyTerms {
            ip_address: Some("192.0.2.1".into()),
            ..terms.clone()
        };
        assert_eq!(
            PolicySpec::for_url("https://h/a", &with_ip),
            PolicySpec::Custom {
                document: r#"{"Statement":[{"Resource":"https://h/a","Condition":{"DateLessThan":{"AWS:EpochTime":100},"IpAddress":{"AWS:SourceIp":"192.0.2.1/32"}}}]}"#.into()
            }
        );
    }
}
