//! What a viewer's request target means, decided once at the start of the
//! request: the canonical path that every later stage uses (behavior
//! matching, the signed-resource check, the cache key, the origin key, the
//! access log), and the bounds that apply before any decoding.
//!
//! Pure and a leaf: it imports nothing of keyfront's.

mod path;
mod query;
mod values;

pub use path::{PathRefusal, canonical_path, canonical_pattern, canonical_resource};
pub use query::{NameChoice, with_query};
pub use values::RequestValues;

/// The `name=value` pairs of `Cookie` header values, in order, trimmed;
/// pairs with no `=` are skipped.
pub fn cookie_pairs<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    cookie_headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}

/// CloudFront's URL length limit: longer targets are refused (414) before any
/// percent-decoding, base64 or signature work.
pub const MAX_URL_BYTES: usize = 8192;

/// CloudFront's limit on a request's headers (names, values and the request
/// line together); larger requests get 413 before anything reads a header.
pub const MAX_REQUEST_BYTES: usize = 20480;

/// Why a request target is refused before anything else looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    #[error("the URL is {bytes} bytes, over the limit of {MAX_URL_BYTES}")]
    TooLong { bytes: usize },
    #[error("{0}")]
    Path(#[from] PathRefusal),
}

impl TargetRefusal {
    /// 414 for a URL over the limit, 400 for a path with no canonical form.
    pub fn status(self) -> u16 {
        match self {
            Self::TooLong { .. } => 414,
            Self::Path(_) => 400,
        }
    }
}
