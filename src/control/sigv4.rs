//! Checks the signature of a control-plane request, as CloudFront does:
//! SigV4 (HMAC) for the CloudFront API, any region in the credential scope
//! (clients pointed at a custom endpoint sign with their own region);
//! SigV4A (ECDSA P-256, a key derived from the secret) for the key value
//! stores' data plane, as its SDKs sign; the service the path belongs to,
//! the signed headers the client chose, the body's SHA-256, a clock within
//! 15 minutes. aws-sigv4 only signs; this is its other half.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::hmac;
use sha2::{Digest, Sha256};

/// What SigV4 leaves unencoded: RFC 3986's unreserved characters.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How far a request's `x-amz-date` may be from this clock (AWS's own limit).
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// A request as the signature covers it.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoded.
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// Its headers, names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// Seconds since the Unix epoch.
    pub now: i64,
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request's signature is refused, as CloudFront names it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("MissingAuthenticationToken: the request is not signed")]
    Missing,
    #[error("IncompleteSignature: {0}")]
    Incomplete(&'static str),
    #[error("InvalidClientTokenId: the access key is not known")]
    UnknownKey,
    #[error("SignatureDoesNotMatch: the request time is more than 15 minutes from the server's")]
    Skewed,
    #[error("SignatureDoesNotMatch: the signature does not match")]
    Mismatch,
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "MissingAuthenticationToken",
            SignatureError::Incomplete(_) => "IncompleteSignature",
            SignatureError::UnknownKey => "InvalidClientTokenId",
            SignatureError::Skewed | SignatureError::Mismatch => "SignatureDoesNotMatch",
        }
    }
}

const SIGV4: &str = "AWS4-HMAC-SHA256";
const SIGV4A: &str = "AWS4-ECDSA-P256-SHA256";

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` (or
/// `AWS4-ECDSA-P256-SHA256 ...`) header.
struct Authorization<'a> {
    algorithm: &'static str,
    access_key: &'a str,
    date: &'a str,
    /// SigV4's scope names a region; SigV4A's a region set, in a header.
    region: Option<&'a str>,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    let (algorithm, rest) = [SIGV4, SIGV4A]
        .into_iter()
        .find_map(|algorithm| Some((algorithm, value.strip_prefix(algorithm)?.strip_prefix(' ')?)))
        .ok_or(SignatureError::Incomplete("expected AWS4-HMAC-SHA256 or AWS4-ECDSA-P256-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => return Err(SignatureError::Incomplete("unexpected part in Authorization")),
        }
    }
    let credential = credential.ok_or(SignatureError::Incomplete("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let (access_key, date, region, service) = match (algorithm, scope.as_slice()) {
        (SIGV4, [key, date, region, service, "aws4_request"]) => (*key, *date, Some(*region), *service),
        (SIGV4A, [key, date, service, "aws4_request"]) => (*key, *date, None, *service),
        _ => {
            return Err(SignatureError::Incomplete(
                "Credential is not KEY/DATE/(REGION/)SERVICE/aws4_request",
            ));
        }
    };
    Ok(Authorization {
        algorithm,
        access_key,
        date,
        region,
        service,
        signed_headers: signed_headers.ok_or(SignatureError::Incomplete("no SignedHeaders"))?,
        signature: signature.ok_or(SignatureError::Incomplete("no Signature"))?,
    })
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, SIGV4_ENCODE).to_string()
}

/// A query's pairs, decoded (`+` is a space); a key without `=` has an
/// empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |text: &str| percent_decode_str(&text.replace('+', "%20")).decode_utf8_lossy().into_owned();
    query.split('&').filter(|pair| !pair.is_empty()).map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

/// The query as SigV4 canonicalises it: pairs decoded, encoded again, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(query).map(|(key, value)| (encode(&key), encode(&value))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Seconds since the epoch of an `x-amz-date` (`20261127T180000Z`).
fn parse_amz_date(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(|moment| moment.assume_utc().unix_timestamp())
}

/// Checks `request`, for `service`, against the secret `secret_for` gives
/// its access key (`None`: unknown key). `Ok` with the access key when it
/// verifies.
pub fn verify(request: &SignedRequest<'_>, service: &str, secret_for: impl Fn(&str) -> Option<String>) -> Result<String, SignatureError> {
    let authorization = request.header("authorization").ok_or(SignatureError::Missing)?;
    let parsed = parse_authorization(authorization)?;
    if parsed.service != service {
        return Err(SignatureError::Incomplete("the credential scope's service is not this API's"));
    }
    let amz_date = request
        .header("x-amz-date")
        .ok_or(SignatureError::Incomplete("no x-amz-date header"))?;
    let signed_at = parse_amz_date(amz_date).ok_or(SignatureError::Incomplete("x-amz-date is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(parsed.date) || parsed.date.len() != 8 {
        return Err(SignatureError::Incomplete("the credential scope's date is not x-amz-date's"));
    }
    if (signed_at - request.now).abs() > MAX_SKEW_SECONDS {
        return Err(SignatureError::Skewed);
    }
    // An unsigned Host lets a signature made for one endpoint be replayed
    // at another; an unsigned date, at another time.
    let signed: Vec<&str> = parsed.signed_headers.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err(SignatureError::Incomplete("SignedHeaders must include host and x-amz-date"));
    }
    if parsed.algorithm == SIGV4A && !signed.contains(&"x-amz-region-set") {
        return Err(SignatureError::Incomplete("SignedHeaders must include x-amz-region-set"));
    }
    let secret = secret_for(parsed.access_key).ok_or(SignatureError::UnknownKey)?;
    let mut canonical_headers = String::new();
    for name in parsed.signed_headers.split(';') {
        let value = request
            .header(name)
            .ok_or(SignatureError::Incomplete("a signed header is missing"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload_hash = match request.header("x-amz-content-sha256") {
        Some(hash) if hash != "UNSIGNED-PAYLOAD" => {
            let actual = hex::encode(Sha256::digest(request.body));
            if hash != actual {
                return Err(SignatureError::Mismatch);
            }
            actual
        }
        _ => hex::encode(Sha256::digest(request.body)),
    };
    // Services other than S3 encode the (already encoded) path once more.
    let path: String = request.path.split('/').map(encode).collect::<Vec<_>>().join("/");
    let canonical_request = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        request.method,
        canonical_query(request.query),
        parsed.signed_headers
    );
    let scope = match parsed.region {
        Some(region) => format!("{}/{region}/{service}/aws4_request", parsed.date),
        None => format!("{}/{service}/aws4_request", parsed.date),
    };
    let string_to_sign = format!(
        "{}\n{amz_date}\n{scope}\n{}",
        parsed.algorithm,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let Some(region) = parsed.region else {
        return verify_ecdsa(parsed.access_key, &secret, string_to_sign.as_bytes(), parsed.signature)
            .map(|()| parsed.access_key.to_owned());
    };
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [parsed.date, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    let given = Some(parsed.signature)
        .filter(|signature| signature.len() == 64)
        .and_then(|signature| hex::decode(signature).ok())
        .ok_or(SignatureError::Mismatch)?;
    // ring compares in constant time.
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &key), string_to_sign.as_bytes(), &given).map_err(|_| SignatureError::Mismatch)?;
    Ok(parsed.access_key.to_owned())
}

/// The order of P-256, less 2 (FIPS 186-5): a derived key candidate must
/// not exceed it.
const P256_ORDER_MINUS_TWO: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x4f,
];

/// SigV4A's private key for `access_key` and `secret`: NIST SP 800-108's
/// counter-mode KDF over HMAC-SHA256, the first candidate that is at most
/// the curve's order less 2, plus one (as aws-sigv4 and the CRT derive it).
fn sigv4a_private_key(access_key: &str, secret: &str) -> Option<[u8; 32]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4A{secret}").as_bytes());
    for counter in 1..=254u8 {
        let mut input = Vec::with_capacity(4 + SIGV4A.len() + 1 + access_key.len() + 1 + 4);
        input.extend_from_slice(&1u32.to_be_bytes());
        input.extend_from_slice(SIGV4A.as_bytes());
        input.push(0);
        input.extend_from_slice(access_key.as_bytes());
        input.push(counter);
        input.extend_from_slice(&256u32.to_be_bytes());
        let mut candidate = [0u8; 32];
        candidate.copy_from_slice(hmac::sign(&key, &input).as_ref());
        // Big-endian arrays of one length compare as the numbers they are.
        if candidate <= P256_ORDER_MINUS_TWO {
            for byte in candidate.iter_mut().rev() {
                let (sum, carry) = byte.overflowing_add(1);
                *byte = sum;
                if !carry {
                    break;
                }
            }
            return Some(candidate);
        }
    }
    None
}

/// Checks a SigV4A signature (hex DER ECDSA over SHA-256) of `message`
/// with the public half of the key `access_key` and `secret` derive.
fn verify_ecdsa(access_key: &str, secret: &str, message: &[u8], signature: &str) -> Result<(), SignatureError> {
    use p256::ecdsa::signature::Verifier as _;
    let private = sigv4a_private_key(access_key, secret).ok_or(SignatureError::Mismatch)?;
    let signing = p256::ecdsa::SigningKey::from_bytes(&private.into()).map_err(|_| SignatureError::Mismatch)?;
    let signature = hex::decode(signature)
        .ok()
        .and_then(|der| p256::ecdsa::Signature::from_der(&der).ok())
        .ok_or(SignatureError::Mismatch)?;
    signing
        .verifying_key()
        .verify(message, &signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{Credentials, SigV4Request};
    use aws_sigv4::http_request::{SignableBody, SigningSettings};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const SECRET: &str = "control-secret-key";

    /// Headers aws-sigv4 (the SDKs' own signer) puts on a request.
    fn signed(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8], region: &str, at: SystemTime) -> Vec<(String, String)> {
        let credentials = Credentials {
            access_key_id: "AKCONTROL".into(),
            secret_access_key: SECRET.into(),
            session_token: None,
        };
        let request = SigV4Request {
            credentials: &credentials,
            region,
            service: "cloudfront",
            settings: SigningSettings::default(),
            method,
            url: uri,
            headers,
            body: SignableBody::Bytes(body),
        };
        let mut all: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        all.extend(request.sign(at).unwrap());
        all
    }

    fn check(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<String, SignatureError> {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
        let now = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let request = SignedRequest {
            method,
            path,
            query,
            headers: &headers,
            body,
            now,
        };
        verify(&request, "cloudfront", |key| (key == "AKCONTROL").then(|| SECRET.to_owned()))
    }

    /// A request aws-sigv4's own SigV4A signer (its `sigv4a` feature) signed
    /// at Unix time 1,800,000,000, as boto3 signs the key value stores' data
    /// plane: the derived key, then the signature, verify; nothing else does.
    #[test]
    fn the_bound_is_the_curves_order_less_two() {
        use p256::elliptic_curve::Curve as _;
        use p256::elliptic_curve::bigint::{ArrayEncoding as _, U256};
        let bound = U256::from_be_slice(&P256_ORDER_MINUS_TWO).wrapping_add(&U256::from_u8(2));
        assert_eq!(bound.to_be_byte_array(), p256::NistP256::ORDER.to_be_byte_array());
    }

    #[test]
    fn what_the_sdk_signs_with_sigv4a_verifies_and_nothing_else_does() {
        const ACCESS_KEY: &str = "AKIDEXAMPLE";
        const KVS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            hex::encode(sigv4a_private_key(ACCESS_KEY, KVS_SECRET).unwrap()),
            "7efc8c0e65a324242818c5a50c891c6060b6a00717b7ba3cbe3c5d765be9259c",
            "the key aws-sigv4's generate_signing_key derives"
        );
        let authorization = "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20270115/cloudfront-keyvaluestore/aws4_request, \
             SignedHeaders=content-type;host;if-match;x-amz-date;x-amz-region-set, \
             Signature=30450221008ba35cceb0fe29815ff5fac54e81d5e8e30f1c1f887f9ab7aa8cec0a64b9bffe022059c8134b2b94f9611df6704869307758aef92f62c1e9590207f153bfd4f28a81";
        let headers = |authorization: &str, if_match: &str| -> Vec<(String, String)> {
            [
                ("host", "127.0.0.1:9100"),
                ("if-match", if_match),
                ("content-type", "application/json"),
                ("x-amz-date", "20270115T080000Z"),
                ("x-amz-region-set", "*"),
                ("authorization", authorization),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
        };
        let path = "/key-value-stores/arn%3Aaws%3Acloudfront%3A%3A123456789012%3Akey-value-store%2Fabc/keys/greeting";
        let check = |path: &str, headers: &[(String, String)], body: &[u8], service: &str| {
            let request = SignedRequest {
                method: "PUT",
                path,
                query: "",
                headers,
                body,
                now: 1_800_000_000,
            };
            verify(&request, service, |key| (key == ACCESS_KEY).then(|| KVS_SECRET.to_owned()))
        };
        let body = b"{\"Value\":\"hello\"}";
        let good = headers(authorization, "ETVPDKIKX0DER");
        assert_eq!(check(path, &good, body, "cloudfront-keyvaluestore").as_deref(), Ok(ACCESS_KEY));
        assert_eq!(
            check(path, &good, b"{\"Value\":\"hellO\"}", "cloudfront-keyvaluestore"),
            Err(SignatureError::Mismatch),
            "another value"
        );
        assert_eq!(
            check(&path.replace("greeting", "greetings"), &good, body, "cloudfront-keyvaluestore"),
            Err(SignatureError::Mismatch),
            "another key"
        );
        assert_eq!(
            check(path, &headers(authorization, "EOTHER"), body, "cloudfront-keyvaluestore"),
            Err(SignatureError::Mismatch),
            "another If-Match"
        );
        assert!(
            matches!(check(path, &good, body, "cloudfront"), Err(SignatureError::Incomplete(_))),
            "another service's API"
        );
        let tampered = authorization.replace("Signature=3045022100", "Signature=3045022101");
        assert_eq!(
            check(path, &headers(&tampered, "ETVPDKIKX0DER"), body, "cloudfront-keyvaluestore"),
            Err(SignatureError::Mismatch)
        );
        let unset = authorization.replace(";x-amz-region-set", "");
        assert!(matches!(
            check(path, &headers(&unset, "ETVPDKIKX0DER"), body, "cloudfront-keyvaluestore"),
            Err(SignatureError::Incomplete(_))
        ));
    }

    #[test]
    fn what_the_sdk_signer_signs_verifies_in_any_region_and_nothing_else_does() {
        let now = SystemTime::now();
        let uri = "http://127.0.0.1:9100/2020-05-31/tagging?Operation=Tag&Resource=arn%3Aaws%3Acloudfront%3A%3A1%3Adistribution%2FE1";
        let host = [("host", "127.0.0.1:9100")];
        for region in ["us-east-1", "eu-west-1"] {
            let headers = signed("POST", uri, &host, b"<Tags/>", region, now);
            let path = "/2020-05-31/tagging";
            let query = "Operation=Tag&Resource=arn%3Aaws%3Acloudfront%3A%3A1%3Adistribution%2FE1";
            assert_eq!(
                check("POST", path, query, &headers, b"<Tags/>", now).unwrap(),
                "AKCONTROL",
                "{region}"
            );
            assert_eq!(
                check("POST", path, query, &headers, b"<Tags></Tags>", now),
                Err(SignatureError::Mismatch),
                "another body"
            );
            assert_eq!(
                check("PUT", path, query, &headers, b"<Tags/>", now),
                Err(SignatureError::Mismatch),
                "another method"
            );
            let other_query = "Operation=Untag&Resource=arn%3Aaws%3Acloudfront%3A%3A1%3Adistribution%2FE1";
            assert_eq!(
                check("POST", path, other_query, &headers, b"<Tags/>", now),
                Err(SignatureError::Mismatch)
            );
            let later = now + Duration::from_secs(16 * 60);
            assert_eq!(check("POST", path, query, &headers, b"<Tags/>", later), Err(SignatureError::Skewed));
        }
        let boto_style = signed("GET", "http://127.0.0.1:9100/2020-05-31/distribution", &host, b"", "us-east-1", now);
        let foreign: Vec<(String, String)> = boto_style
            .iter()
            .map(|(n, v)| (n.clone(), v.replace("AKCONTROL", "AKOTHER")))
            .collect();
        assert_eq!(
            check("GET", "/2020-05-31/distribution", "", &foreign, b"", now),
            Err(SignatureError::UnknownKey)
        );
        let unsigned = vec![("host".to_owned(), "127.0.0.1:9100".to_owned())];
        assert_eq!(
            check("GET", "/2020-05-31/distribution", "", &unsigned, b"", now),
            Err(SignatureError::Missing)
        );
        let s3: Vec<(String, String)> = boto_style
            .iter()
            .map(|(n, v)| (n.clone(), v.replace("/cloudfront/", "/s3/")))
            .collect();
        assert!(matches!(
            check("GET", "/2020-05-31/distribution", "", &s3, b"", now),
            Err(SignatureError::Incomplete(_))
        ));
    }

    #[test]
    fn a_signature_that_leaves_out_host_or_the_date_is_refused() {
        let now = SystemTime::now();
        let host = [("host", "127.0.0.1:9100")];
        let headers = signed("GET", "http://127.0.0.1:9100/2020-05-31/distribution", &host, b"", "us-east-1", now);
        for signed_headers in ["x-amz-date", "host", "x-amz-content-sha256"] {
            let narrowed: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.replace("SignedHeaders=host;x-amz-date", &format!("SignedHeaders={signed_headers}")),
                    )
                })
                .collect();
            assert_eq!(
                check("GET", "/2020-05-31/distribution", "", &narrowed, b"", now),
                Err(SignatureError::Incomplete("SignedHeaders must include host and x-amz-date")),
                "{signed_headers}"
            );
        }
    }
}
