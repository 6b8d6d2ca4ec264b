//! The query string a cache key holds, as a cache policy names its
//! parameters: chosen from the viewer's own parameters (the signing ones
//! are gone before this), in one spelling, so that two spellings of the same
//! parameters are one object and the string forwarded to the origin is
//! exactly the one SigV4 signs.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Which of the viewer's query parameters are in the cache key (and go to
/// the origin): a cache policy's `QueryStringsConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum QueryKey {
    /// The path alone is the key.
    #[default]
    Nothing,
    /// These parameters only (names compared case-sensitively, as CloudFront does).
    Only(Vec<String>),
    /// Every parameter but these.
    AllExcept(Vec<String>),
    All,
}

/// What SigV4 leaves unencoded; everything else is `%XX` (upper case).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Parameters an S3 origin acts on rather than ignores: sub-resources (an
/// object's ACL, tags, another version or part, an upload), `response-*`
/// overrides (a viewer could make a PDF `text/html`), `x-amz-*` and `x-id`.
/// They are neither keyed nor forwarded, whatever a policy names.
const S3_OWN: &[&str] = &[
    "acl",
    "attributes",
    "legal-hold",
    "partNumber",
    "restore",
    "retention",
    "select",
    "select-type",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "x-id",
];

fn s3_own(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    S3_OWN.contains(&name) || lower.starts_with("response-") || lower.starts_with("x-amz-")
}

impl QueryKey {
    /// The key's query string for the viewer's own `query` (raw, `&`
    /// separated): the chosen parameters, percent-decoded once and encoded
    /// as SigV4 encodes them, sorted by name then value; empty when none is
    /// chosen. Applied to its own result it gives the same string (a parent
    /// node recomputes it from the query it is asked with).
    pub fn select(&self, query: Option<&str>) -> String {
        if matches!(self, Self::Nothing) {
            return String::new();
        }
        let mut chosen: Vec<(String, String)> = query
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
                (decoded(name), decoded(value))
            })
            .filter(|(name, _)| !name.is_empty() && !s3_own(name) && self.keeps(name))
            .collect();
        chosen.sort_unstable();
        let encoded = |text: &str| utf8_percent_encode(text, UNRESERVED).to_string();
        chosen
            .iter()
            .map(|(name, value)| format!("{}={}", encoded(name), encoded(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn keeps(&self, name: &str) -> bool {
        match self {
            Self::Nothing => false,
            Self::Only(names) => names.iter().any(|kept| kept == name),
            Self::AllExcept(names) => !names.iter().any(|left| left == name),
            Self::All => true,
        }
    }
}

/// `path` with the key's query string, if it has one (no copy when not).
pub fn with_query(mut path: String, key_query: &str) -> String {
    if !key_query.is_empty() {
        path.push('?');
        path.push_str(key_query);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_keys_its_parameters_in_one_spelling() {
        let only = QueryKey::Only(vec!["w".into(), "lang".into()]);
        assert_eq!(only.select(Some("w=100&x=1&lang=fr")), "lang=fr&w=100");
        assert_eq!(only.select(Some("lang=fr&w=100")), "lang=fr&w=100", "order does not matter");
        assert_eq!(only.select(Some("W=100")), "", "names are case-sensitive");
        assert_eq!(only.select(Some("x=1")), "");
        assert_eq!(only.select(None), "");
        assert_eq!(QueryKey::Nothing.select(Some("w=1")), "");
        let except = QueryKey::AllExcept(vec!["utm_source".into()]);
        assert_eq!(except.select(Some("utm_source=mail&b=2&a")), "a=&b=2");
        // One spelling: percent-encoding decoded once and re-encoded as SigV4
        // does; `+` is a plus, not a space.
        let all = QueryKey::All;
        assert_eq!(all.select(Some("q=a%20b&r=a+b&s=%7e%2F")), "q=a%20b&r=a%2Bb&s=~%2F");
        assert_eq!(all.select(Some("q=caf%C3%A9")), "q=caf%C3%A9");
        for query in ["w=100&lang=fr", "q=a%20b&r=a+b", "z=%FF&&=x"] {
            let once = all.select(Some(query));
            assert_eq!(all.select(Some(&once)), once, "idempotent: {query}");
        }
    }

    #[test]
    fn s3s_own_parameters_are_never_keyed_or_forwarded() {
        let all = QueryKey::All;
        let hostile = "acl&versionId=1&partNumber=2&response-content-type=text/html&X-Amz-Expires=1&x-id=GetObjectAcl&tagging&uploads&w=1";
        assert_eq!(all.select(Some(hostile)), "w=1");
        let named = QueryKey::Only(vec!["versionId".into(), "response-content-type".into()]);
        assert_eq!(
            named.select(Some("versionId=1&response-content-type=text/html")),
            "",
            "not even when named"
        );
    }

    #[test]
    fn a_path_takes_the_query_only_when_there_is_one() {
        assert_eq!(with_query("/a.png".into(), ""), "/a.png");
        assert_eq!(with_query("/a.png".into(), "w=1"), "/a.png?w=1");
    }
}
