//! Deciding whether a request may pass: the signature first (once per distinct
//! URL/policy, then from the memo), the policy's conditions on every request.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use moka::sync::Cache;

use super::encoding::{JsonEscape, cloudfront_base64_decode};
use super::keys::{HashAlgorithm, PublicKey, TrustedKeys};
use super::policy::{MAX_EPOCH, Policy, canned_policy_document, parse_custom_policy};
use super::rejection::DenyReason;
use super::request::{CredentialSource, Credentials, MAX_COOKIE_BYTES, SignedTarget, choose_credentials};

/// One viewer request, as much of it as verification needs.
#[derive(Clone, Copy, Debug)]
pub struct ViewerRequest<'a> {
    /// Scheme and host the viewer used (or the configured public base URL),
    /// without a trailing slash, e.g. `https://cdn.example.com`.
    pub base_url: &'a str,
    /// The request target split by [`super::split_target`].
    pub target: &'a SignedTarget<'a>,
    /// The values of the request's `Cookie` headers.
    pub cookie_headers: &'a [&'a str],
    /// The viewer's address, for `AWS:SourceIp`.
    pub client_ip: Option<IpAddr>,
    /// The current Unix time in seconds.
    pub now: u64,
}

/// A request that proved itself.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Whether a signed URL or signed cookies proved it.
    pub source: CredentialSource,
    /// The key that signed it.
    pub key_pair_id: Arc<str>,
    /// The digest the signature covers.
    pub hash_algorithm: HashAlgorithm,
    /// The policy it satisfies.
    pub policy: Arc<Policy>,
    /// Whether the signature check was answered from the memo.
    pub memo_hit: bool,
}

/// A refused request: the reason, and the key it named, when it named one.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub reason: DenyReason,
    pub key_pair_id: Option<String>,
    /// The policy, when it was read and validly signed but its conditions failed.
    pub policy: Option<Arc<Policy>>,
}

impl From<DenyReason> for Rejection {
    fn from(reason: DenyReason) -> Self {
        Self {
            reason,
            key_pair_id: None,
            policy: None,
        }
    }
}

/// Checks signed requests and remembers signatures already proven good.
///
/// The memo key holds, byte for byte, the hash algorithm, the key's
/// fingerprint, what the signature covers (for a canned policy the URL and
/// expiry the document is built from, for a custom one the policy parameter
/// as sent) and the signature as sent; a different URL, policy, key or
/// algorithm is a different key and cannot hit. A hit builds no document
/// and allocates no key. Only the RSA/ECDSA operation is skipped on a hit:
/// time, IP and Resource are checked on every request.
#[derive(Clone)]
pub struct Verifier {
    memo: Cache<Box<[u8]>, Arc<Policy>, foldhash::quality::RandomState>,
    /// This memo's name in each thread's `RECENT_PROOFS`; clones share it,
    /// as they share the memo.
    memo_id: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier(memo entries: {})", self.memo.entry_count())
    }
}

/// A generous default: some 100,000 hot URLs.
pub const DEFAULT_MEMO_BYTES: u64 = 64 * 1024 * 1024;

impl Default for Verifier {
    fn default() -> Self {
        Self::new(DEFAULT_MEMO_BYTES)
    }
}

enum PolicyMaterial<'a> {
    /// The URL and expiry CloudFront builds the canned document from.
    Canned { url: &'a str, expires: u64 },
    /// The `Policy` parameter as sent (CloudFront base64).
    Custom { encoded: &'a str },
}

thread_local! {
    /// Each thread's buffer for memo keys: a hit looks its key up by borrowed
    /// bytes; only a miss copies it into the memo.
    static MEMO_KEY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    /// Each thread's buffer for the canonical URL a request is judged on:
    /// no allocation per request.
    static CANONICAL_URL: RefCell<String> = const { RefCell::new(String::new()) };
    /// Each thread's last proofs, in front of the shared memo.
    static RECENT_PROOFS: RefCell<RecentProofs> = RefCell::new(RecentProofs::default());
}

/// How many proofs a thread keeps in front of the shared memo.
const RECENT_PROOF_SLOTS: usize = 64;

/// A thread's last proven signatures, each in the slot its memo key hashes
/// to: a URL repeated on a thread is found with one hash and one comparison
/// of its key, without the shared memo's bookkeeping (its map's epoch, its
/// clock read and its access queue), which cost more than the rest of a
/// memo hit. What a key proves holds for as long as the key exists: the
/// key's fingerprint, what the signature covers and the signature are all
/// in it, and time, IP and Resource are checked on every request after it.
/// Bounded: `RECENT_PROOF_SLOTS` keys per thread, each at most a URL's and
/// its cookies' length (about 600 bytes for a canned URL), and only keys
/// whose signature verified, so only a key holder can make one large.
struct RecentProofs {
    hasher: foldhash::quality::RandomState,
    slots: Vec<RecentProof>,
}

#[derive(Default)]
struct RecentProof {
    memo_id: u64,
    hash: u64,
    /// Reused from one proof to the next: keeping a proof allocates only
    /// when a longer key arrives.
    memo_key: Vec<u8>,
    policy: Option<Arc<Policy>>,
}

impl Default for RecentProofs {
    fn default() -> Self {
        Self {
            hasher: foldhash::quality::RandomState::default(),
            slots: std::iter::repeat_with(RecentProof::default).take(RECENT_PROOF_SLOTS).collect(),
        }
    }
}

impl RecentProofs {
    fn slot(&mut self, memo_id: u64, memo_key: &[u8]) -> (u64, &mut RecentProof) {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, (memo_id, memo_key));
        (hash, &mut self.slots[(hash % RECENT_PROOF_SLOTS as u64) as usize])
    }

    /// The policy `memo_key` proved in `memo_id`'s memo, if this thread keeps it.
    fn get(&mut self, memo_id: u64, memo_key: &[u8]) -> Option<Arc<Policy>> {
        let (hash, slot) = self.slot(memo_id, memo_key);
        let found = slot.hash == hash && slot.memo_id == memo_id && slot.memo_key == memo_key;
        found.then(|| slot.policy.clone()).flatten()
    }

    /// Keeps `policy` as what `memo_key` proves, in place of its slot's last.
    fn keep(&mut self, memo_id: u64, memo_key: &[u8], policy: &Arc<Policy>) {
        let (hash, slot) = self.slot(memo_id, memo_key);
        (slot.memo_id, slot.hash, slot.policy) = (memo_id, hash, Some(policy.clone()));
        slot.memo_key.clear();
        slot.memo_key.extend_from_slice(memo_key);
    }
}

/// Names each memo, for `RecentProofs`.
static NEXT_MEMO_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Verifier {
    /// A verifier whose memo holds at most `memo_bytes` of keys and policies.
    #[allow(clippy::borrowed_box)] // moka's weigher receives `&K`, and K is Box<[u8]>.
    pub fn new(memo_bytes: u64) -> Self {
        Self {
            memo: Cache::builder()
                .max_capacity(memo_bytes)
                .weigher(|key: &Box<[u8]>, policy: &Arc<Policy>| {
                    let policy_bytes = policy.resource.as_ref().map_or(0, String::len) + 96;
                    u32::try_from(key.len() + policy_bytes).unwrap_or(u32::MAX)
                })
                // Keys are ~400 bytes of signature and policy: SipHash took
                // longer over them than the rest of a memo hit.
                .build_with_hasher(foldhash::quality::RandomState::default()),
            memo_id: NEXT_MEMO_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Verifies `request` against the keys the behavior trusts.
    pub fn verify(&self, request: &ViewerRequest<'_>, trusted: &TrustedKeys) -> Result<Grant, Rejection> {
        CANONICAL_URL.with_borrow_mut(|url| {
            url.clear();
            url.push_str(request.base_url);
            url.push_str(&request.target.canonical);
            self.verify_at(request, url, trusted)
        })
    }

    /// `verify`, for the request's canonical URL `url`.
    fn verify_at(&self, request: &ViewerRequest<'_>, url: &str, trusted: &TrustedKeys) -> Result<Grant, Rejection> {
        let cookie_bytes: usize = request.cookie_headers.iter().map(|h| h.len()).sum();
        if cookie_bytes > MAX_COOKIE_BYTES {
            return Err(DenyReason::CookiesTooLarge { bytes: cookie_bytes }.into());
        }
        let (source, credentials) = choose_credentials(request.target.url_credentials.clone(), request.cookie_headers);
        // A Resource is judged on the canonical URL; a canned signature covers
        // the URL as the viewer sent it (which canonicalises to the same).
        let sent_url = (request.target.stripped != request.target.canonical).then(|| [request.base_url, &request.target.stripped].concat());

        let key_pair_id = credentials
            .key_pair_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or(DenyReason::MissingKeyPairId)?;
        let with_key = |reason: DenyReason| Rejection {
            reason,
            key_pair_id: Some(key_pair_id.to_owned()),
            policy: None,
        };
        let (key_id, key) = trusted.get(key_pair_id).ok_or_else(|| {
            with_key(DenyReason::UnknownKey {
                key_pair_id: key_pair_id.to_owned(),
            })
        })?;
        if let Some(name) = credentials.duplicated {
            return Err(with_key(DenyReason::DuplicateParameter { name }));
        }
        let hash_algorithm = match credentials.hash_algorithm.as_deref() {
            None => HashAlgorithm::Sha1,
            Some(value) => HashAlgorithm::from_param(value).ok_or_else(|| {
                with_key(DenyReason::UnsupportedHashAlgorithm {
                    value: value.chars().take(32).collect(),
                })
            })?,
        };
        let material = policy_material(&credentials, sent_url.as_deref().unwrap_or(url)).map_err(with_key)?;
        let signature = credentials
            .signature
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| with_key(DenyReason::MissingSignature))?;

        let (policy, memo_hit) = MEMO_KEY.with_borrow_mut(|memo_key| {
            write_memo_key(memo_key, hash_algorithm, key, &material, signature);
            if let Some(policy) = RECENT_PROOFS.with_borrow_mut(|recent| recent.get(self.memo_id, memo_key)) {
                return Ok::<_, Rejection>((policy, true));
            }
            let found = match self.memo.get(memo_key.as_slice()) {
                Some(policy) => (policy, true),
                None => {
                    let policy = Arc::new(check_signature(key, key_pair_id, hash_algorithm, &material, signature, url).map_err(with_key)?);
                    self.memo.insert(memo_key.as_slice().into(), policy.clone());
                    (policy, false)
                }
            };
            RECENT_PROOFS.with_borrow_mut(|recent| recent.keep(self.memo_id, memo_key, &found.0));
            Ok(found)
        })?;
        if let Err(failure) = policy.check(url, request.now, request.client_ip) {
            return Err(Rejection {
                reason: DenyReason::Condition(failure),
                key_pair_id: Some(key_pair_id.to_owned()),
                policy: Some(policy),
            });
        }
        Ok(Grant {
            source,
            key_pair_id: key_id.clone(),
            hash_algorithm,
            policy,
            memo_hit,
        })
    }
}

fn policy_material<'a>(credentials: &'a Credentials<'a>, url: &'a str) -> Result<PolicyMaterial<'a>, DenyReason> {
    let malformed = |detail: &str| DenyReason::MalformedPolicy { detail: detail.to_owned() };
    match (credentials.expires.as_deref(), credentials.policy.as_deref()) {
        (Some(expires), None) => {
            let seconds =
                parse_epoch_param(expires).ok_or_else(|| malformed("Expires is not a whole number of seconds up to 2147483647"))?;
            Ok(PolicyMaterial::Canned { url, expires: seconds })
        }
        (None, Some(encoded)) => Ok(PolicyMaterial::Custom { encoded }),
        (Some(_), Some(_)) => Err(malformed("both Expires and Policy are present")),
        (None, None) => Err(malformed("neither Expires nor Policy is present")),
    }
}

fn parse_epoch_param(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&seconds| seconds <= MAX_EPOCH)
}

/// Writes the memo key into `memo_key` (cleared first): algorithm,
/// fingerprint, the kind of policy, what it covers length-prefixed (a
/// canned one's URL then its expiry), the signature.
fn write_memo_key(memo_key: &mut Vec<u8>, algorithm: HashAlgorithm, key: &PublicKey, material: &PolicyMaterial<'_>, signature: &str) {
    memo_key.clear();
    memo_key.push(algorithm as u8);
    memo_key.extend_from_slice(key.fingerprint());
    let (kind, covered, expires) = match material {
        PolicyMaterial::Canned { url, expires } => (0, url.as_bytes(), *expires),
        PolicyMaterial::Custom { encoded } => (1, encoded.as_bytes(), 0),
    };
    memo_key.push(kind);
    memo_key.extend_from_slice(&(covered.len() as u32).to_le_bytes());
    memo_key.extend_from_slice(covered);
    memo_key.extend_from_slice(&expires.to_le_bytes());
    memo_key.extend_from_slice(signature.as_bytes());
}

fn check_signature(
    key: &PublicKey,
    key_pair_id: &str,
    algorithm: HashAlgorithm,
    material: &PolicyMaterial<'_>,
    signature: &str,
    url: &str,
) -> Result<Policy, DenyReason> {
    let signature = cloudfront_base64_decode(signature).ok_or(DenyReason::UndecodableSignature)?;
    let (document, policy) = match material {
        PolicyMaterial::Canned { url: signed_url, expires } => (
            canned_policy_document(signed_url, *expires, JsonEscape::Required).into_bytes(),
            Policy::canned(url, *expires),
        ),
        PolicyMaterial::Custom { encoded } => {
            let document = cloudfront_base64_decode(encoded).ok_or_else(|| DenyReason::MalformedPolicy {
                detail: "Policy is not CloudFront base64".to_owned(),
            })?;
            let policy = parse_custom_policy(&document).map_err(|e| DenyReason::MalformedPolicy { detail: e.to_string() })?;
            (document, policy)
        }
    };
    if !key.verify(algorithm, &document, &signature) {
        return Err(DenyReason::BadSignature {
            key_pair_id: key_pair_id.to_owned(),
        });
    }
    Ok(policy)
}
