//! Finding the signing parameters in a viewer request: the query string of a
//! signed URL, or the `CloudFront-*` cookies, and the URL the policy covers.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::request::{MAX_URL_BYTES, TargetRefusal, canonical_path};

/// CloudFront's limit on a whole request's headers, which bounds the cookies.
pub const MAX_COOKIE_BYTES: usize = 20480;

/// The query parameters that sign a URL. Names are case-sensitive.
pub const SIGNING_PARAMS: [&str; 5] = ["Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"];

/// Whether the signing parameters came from the URL or from cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    SignedUrl,
    SignedCookies,
    /// Neither the URL nor the cookies carry any signing parameter.
    None,
}

/// The signing parameters of one request, percent-decoded, not yet checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub expires: Option<Cow<'a, str>>,
    pub policy: Option<Cow<'a, str>>,
    pub signature: Option<Cow<'a, str>>,
    pub key_pair_id: Option<Cow<'a, str>>,
    pub hash_algorithm: Option<Cow<'a, str>>,
    /// A signing parameter appeared twice, so which one was signed is ambiguous.
    pub duplicated: Option<&'static str>,
}

impl<'a> Credentials<'a> {
    fn slot(&mut self, name: &str) -> Option<(&'static str, &mut Option<Cow<'a, str>>)> {
        Some(match name {
            "Expires" | "CloudFront-Expires" => ("Expires", &mut self.expires),
            "Policy" | "CloudFront-Policy" => ("Policy", &mut self.policy),
            "Signature" | "CloudFront-Signature" => ("Signature", &mut self.signature),
            "Key-Pair-Id" | "CloudFront-Key-Pair-Id" => ("Key-Pair-Id", &mut self.key_pair_id),
            "Hash-Algorithm" | "CloudFront-Hash-Algorithm" => ("Hash-Algorithm", &mut self.hash_algorithm),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: Cow<'a, str>) -> bool {
        let Some((canonical, slot)) = self.slot(name) else {
            return false;
        };
        if slot.is_some() {
            self.duplicated.get_or_insert(canonical);
        } else {
            *slot = Some(value);
        }
        true
    }

    /// Whether any of the parameters that make a signed URL are present
    /// (`Hash-Algorithm` alone does not).
    fn marks_signed_url(&self) -> bool {
        self.expires.is_some() || self.policy.is_some() || self.signature.is_some() || self.key_pair_id.is_some()
    }
}

/// A request's target split into what the policy covers and what signs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTarget<'a> {
    /// The path and the viewer's own query string, signing parameters removed,
    /// raw as received (no decoding, no re-encoding): the URL a canned policy
    /// was signed over.
    pub stripped: Cow<'a, str>,
    /// The canonical path ([`crate::request::canonical_path`]) and the viewer's
    /// own query string as received: what a Resource grants, and the only
    /// spelling of the path any later stage sees.
    pub canonical: Cow<'a, str>,
    /// The signing parameters from the URL.
    pub url_credentials: Credentials<'a>,
}

impl SignedTarget<'_> {
    /// The canonical path, without the query (a canonical path holds no `?`).
    pub fn path(&self) -> &str {
        self.canonical.split_once('?').map_or(&self.canonical, |(path, _)| path)
    }

    /// The viewer's own query string (signing parameters removed), if any.
    pub fn query(&self) -> Option<&str> {
        self.canonical.split_once('?').map(|(_, query)| query)
    }
}

/// Splits `target` (path and query as received) into the stripped target,
/// its canonical form and the signing parameters. The viewer's own
/// parameters keep their order. Refused, before any decoding, when longer
/// than CloudFront's URL limit, and when the path has no canonical form.
pub fn split_target(target: &str) -> Result<SignedTarget<'_>, TargetRefusal> {
    if target.len() > MAX_URL_BYTES {
        return Err(TargetRefusal::TooLong { bytes: target.len() });
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let canonical_path = canonical_path(path)?;
    let mut credentials = Credentials::default();
    let mut own: Vec<&str> = Vec::new();
    let mut signing_seen = false;
    for pair in query.into_iter().flat_map(|query| query.split('&')) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if credentials.set(name, percent_decode(value)) {
            signing_seen = true;
        } else if !pair.is_empty() {
            own.push(pair);
        }
    }
    let stripped = if !signing_seen {
        Cow::Borrowed(target)
    } else if own.is_empty() {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{path}?{}", own.join("&")))
    };
    let canonical = match canonical_path {
        Cow::Borrowed(_) => stripped.clone(),
        Cow::Owned(canonical_path) => match stripped.split_once('?') {
            Some((_, own_query)) => Cow::Owned(format!("{canonical_path}?{own_query}")),
            None => Cow::Owned(canonical_path),
        },
    };
    Ok(SignedTarget {
        stripped,
        canonical,
        url_credentials: credentials,
    })
}

fn percent_decode(value: &str) -> Cow<'_, str> {
    // Signatures are CloudFront base64, which needs no escaping: a memchr
    // over the value instead of decoding it byte by byte.
    if !value.contains('%') {
        return Cow::Borrowed(value);
    }
    percent_decode_str(value).decode_utf8().unwrap_or(Cow::Borrowed(value))
}

/// Reads the `CloudFront-*` signing cookies from the `Cookie` header values.
/// The first occurrence of a name wins, as browsers send the most specific
/// path first; quoted values are unquoted.
pub fn cookie_credentials<'a>(cookie_headers: &[&'a str]) -> Credentials<'a> {
    let mut credentials = Credentials::default();
    for (name, value) in crate::request::cookie_pairs(cookie_headers.iter().copied()) {
        if !name.starts_with("CloudFront-") {
            continue;
        }
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        if let Some((_, slot)) = credentials.slot(name)
            && slot.is_none()
        {
            *slot = Some(percent_decode(value));
        }
    }
    credentials
}

/// Picks the credentials that judge the request: the URL's if it carries any
/// of `Expires`, `Policy`, `Signature`, `Key-Pair-Id` (cookies are then not
/// looked at), else the cookies'.
pub fn choose_credentials<'a>(url: Credentials<'a>, cookie_headers: &[&'a str]) -> (CredentialSource, Credentials<'a>) {
    if url.marks_signed_url() {
        return (CredentialSource::SignedUrl, url);
    }
    let cookies = cookie_credentials(cookie_headers);
    if cookies.marks_signed_url() {
        (CredentialSource::SignedCookies, cookies)
    } else {
        (CredentialSource::None, cookies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_parameters_are_removed_and_own_ones_kept_in_order() {
        let target = split_target("/a/b.mp4?z=1&a=2&Expires=100&Signature=S%7E&Key-Pair-Id=K1").unwrap();
        assert_eq!(target.stripped, "/a/b.mp4?z=1&a=2");
        assert_eq!(target.url_credentials.expires.as_deref(), Some("100"));
        assert_eq!(target.url_credentials.signature.as_deref(), Some("S~"));
        assert_eq!(target.url_credentials.key_pair_id.as_deref(), Some("K1"));
        assert_eq!(split_target("/a?Policy=P&Signature=S&Key-Pair-Id=K").unwrap().stripped, "/a");
        assert_eq!(split_target("/a?x=%41").unwrap().stripped, "/a?x=%41");
    }

    #[test]
    fn names_are_case_sensitive() {
        let target = split_target("/a?Expires=1&signature=S&Key-Pair-Id=K").unwrap();
        assert_eq!(target.url_credentials.signature, None);
        assert_eq!(target.stripped, "/a?signature=S");
    }

    #[test]
    fn duplicates_are_flagged() {
        let target = split_target("/a?Signature=A&Signature=B").unwrap();
        assert_eq!(target.url_credentials.duplicated, Some("Signature"));
        assert_eq!(target.url_credentials.signature.as_deref(), Some("A"));
    }

    #[test]
    fn cookies_parse_with_spaces_quotes_and_other_cookies() {
        let headers = [
            "session=abc; CloudFront-Policy=\"P_\"",
            "CloudFront-Signature=S;CloudFront-Key-Pair-Id=K; cloudfront-expires=9",
        ];
        let credentials = cookie_credentials(&headers);
        assert_eq!(credentials.policy.as_deref(), Some("P_"));
        assert_eq!(credentials.signature.as_deref(), Some("S"));
        assert_eq!(credentials.key_pair_id.as_deref(), Some("K"));
        assert_eq!(credentials.expires, None, "cookie names are case-sensitive");
    }

    #[test]
    fn url_parameters_take_precedence_over_cookies() {
        let cookies = ["CloudFront-Expires=1; CloudFront-Signature=S; CloudFront-Key-Pair-Id=K"];
        let url = split_target("/a?Key-Pair-Id=URLKEY").unwrap().url_credentials;
        let (source, chosen) = choose_credentials(url, &cookies);
        assert_eq!(source, CredentialSource::SignedUrl);
        assert_eq!(chosen.signature, None);
        let url = split_target("/a?Hash-Algorithm=SHA256").unwrap().url_credentials;
        let (source, chosen) = choose_credentials(url, &cookies);
        assert_eq!(source, CredentialSource::SignedCookies);
        assert_eq!(chosen.key_pair_id.as_deref(), Some("K"));
        let (source, _) = choose_credentials(Credentials::default(), &["a=b"]);
        assert_eq!(source, CredentialSource::None);
    }
}
