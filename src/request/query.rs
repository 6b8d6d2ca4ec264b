//! The query string a cache key holds, as a cache policy names its
//! parameters: chosen from the viewer's own parameters (the signing ones
//! are gone before this), in one spelling, so that two spellings of the same
//! parameters are one object and the string forwarded to the origin is
//! exactly the one SigV4 signs.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Which of the viewer's query parameters, headers or cookies a policy
/// names (its `QueryStringsConfig`, `HeadersConfig` or `CookiesConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NameChoice {
    /// None.
    #[default]
    Nothing,
    /// These only (query and cookie names compared case-sensitively, as
    /// CloudFront does; header names are lower case).
    Only(Vec<String>),
    /// Every one but these.
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

impl NameChoice {
    /// What either `self` or `other` names: a key's choice and an origin
    /// request policy's make what is sent.
    pub fn union(&self, other: &NameChoice) -> NameChoice {
        use NameChoice::{All, AllExcept, Nothing, Only};
        let without = |names: &[String], taken: &[String]| names.iter().filter(|name| !taken.contains(name)).cloned().collect();
        match (self, other) {
            (All, _) | (_, All) => All,
            (Nothing, choice) | (choice, Nothing) => choice.clone(),
            (Only(a), Only(b)) => {
                let mut names: Vec<String> = a.iter().chain(b).cloned().collect();
                names.sort_unstable();
                names.dedup();
                Only(names)
            }
            (AllExcept(left), Only(taken)) | (Only(taken), AllExcept(left)) => AllExcept(without(left, taken)),
            (AllExcept(a), AllExcept(b)) => AllExcept(a.iter().filter(|name| b.contains(name)).cloned().collect()),
        }
    }

    /// The key's query string for the viewer's own `query` (raw, `&`
    /// separated): the chosen parameters, percent-decoded once and encoded
    /// as SigV4 encodes them, sorted by name then value; empty when none is
    /// chosen. Applied to its own result it gives the same string (a parent
    /// node recomputes it from the query it is asked with).
    pub fn select_query(&self, query: Option<&str>) -> String {
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

    pub fn keeps(&self, name: &str) -> bool {
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
        let only = NameChoice::Only(vec!["w".into(), "lang".into()]);
        assert_eq!(only.select_query(Some("w=100&x=1&lang=fr")), "lang=fr&w=100");
        assert_eq!(only.select_query(Some("lang=fr&w=100")), "lang=fr&w=100", "order does not matter");
        assert_eq!(only.select_query(Some("W=100")), "", "names are case-sensitive");
        assert_eq!(only.select_query(Some("x=1")), "");
        assert_eq!(only.select_query(None), "");
        assert_eq!(NameChoice::Nothing.select_query(Some("w=1")), "");
        let except = NameChoice::AllExcept(vec!["utm_source".into()]);
        assert_eq!(except.select_query(Some("utm_source=mail&b=2&a")), "a=&b=2");
        // One spelling: percent-encoding decoded once and re-encoded as SigV4
        // does; `+` is a plus, not a space.
        let all = NameChoice::All;
        assert_eq!(all.select_query(Some("q=a%20b&r=a+b&s=%7e%2F")), "q=a%20b&r=a%2Bb&s=~%2F");
        assert_eq!(all.select_query(Some("q=caf%C3%A9")), "q=caf%C3%A9");
        for query in ["w=100&lang=fr", "q=a%20b&r=a+b", "z=%FF&&=x"] {
            let once = all.select_query(Some(query));
            assert_eq!(all.select_query(Some(&once)), once, "idempotent: {query}");
        }
    }

    #[test]
    fn s3s_own_parameters_are_never_keyed_or_forwarded() {
        let all = NameChoice::All;
        let hostile = "acl&versionId=1&partNumber=2&response-content-type=text/html&X-Amz-Expires=1&x-id=GetObjectAcl&tagging&uploads&w=1";
        assert_eq!(all.select_query(Some(hostile)), "w=1");
        let named = NameChoice::Only(vec!["versionId".into(), "response-content-type".into()]);
        assert_eq!(
            named.select_query(Some("versionId=1&response-content-type=text/html")),
            "",
            "not even when named"
        );
    }

    #[test]
    fn what_is_sent_is_what_either_policy_names() {
        use NameChoice::{All, AllExcept, Nothing, Only};
        let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        assert_eq!(Nothing.union(&Nothing), Nothing);
        assert_eq!(Only(names(&["b", "a"])).union(&Nothing), Only(names(&["b", "a"])));
        assert_eq!(
            Only(names(&["b", "a"])).union(&Only(names(&["a", "c"]))),
            Only(names(&["a", "b", "c"]))
        );
        assert_eq!(AllExcept(names(&["a", "b"])).union(&Only(names(&["a"]))), AllExcept(names(&["b"])));
        assert_eq!(Only(names(&["b"])).union(&AllExcept(names(&["a", "b"]))), AllExcept(names(&["a"])));
        assert_eq!(
            AllExcept(names(&["a", "b"])).union(&AllExcept(names(&["b", "c"]))),
            AllExcept(names(&["b"]))
        );
        assert_eq!(Only(names(&["a"])).union(&All), All);
        for name in ["a", "b", "c", "d"] {
            let (left, right) = (AllExcept(names(&["a", "b"])), Only(names(&["b", "d"])));
            assert_eq!(left.union(&right).keeps(name), left.keeps(name) || right.keeps(name), "{name}");
        }
    }

    #[test]
    fn a_path_takes_the_query_only_when_there_is_one() {
        assert_eq!(with_query("/a.png".into(), ""), "/a.png");
        assert_eq!(with_query("/a.png".into(), "w=1"), "/a.png?w=1");
    }
}
