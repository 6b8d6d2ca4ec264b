//! Public keys that verify, private keys that sign, and the trusted key set of
//! a behavior. RSA (2048 bits and up) and ECDSA P-256, as CloudFront accepts.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// The digest a signature covers: SHA-1 unless `Hash-Algorithm=SHA256` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    #[default]
    Sha1,
    Sha256,
}

impl HashAlgorithm {
    /// Parses the value of `Hash-Algorithm` / `CloudFront-Hash-Algorithm`.
    pub fn from_param(value: &str) -> Option<Self> {
        match value {
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// Parses a command-line spelling: `sha1`, `sha256`, in any case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::from_param(&name.to_ascii_uppercase().replace('-', ""))
    }

    /// The parameter value CloudFront expects for this algorithm.
    pub fn param(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(message).to_vec(),
            Self::Sha256 => Sha256::digest(message).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Self::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
            Self::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        }
    }
}

/// Why a PEM key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM key (expected a -----BEGIN ...----- block)")]
    NotPem,
    #[error("the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    #[error("unsupported PEM block {0:?}")]
    UnsupportedLabel(String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("invalid {label} key: {reason}")]
    Invalid { label: String, reason: String },
}

fn pem_label(pem: &str) -> Result<&str, KeyError> {
    let start = pem.find("-----BEGIN ").ok_or(KeyError::NotPem)? + "-----BEGIN ".len();
    let end = pem[start..].find("-----").ok_or(KeyError::NotPem)?;
    Ok(&pem[start..start + end])
}

fn invalid(label: &str, reason: impl fmt::Display) -> KeyError {
    KeyError::Invalid {
        label: label.to_owned(),
        reason: reason.to_string(),
    }
}

const MIN_RSA_BITS: usize = 2048;

fn check_rsa_size(key: &RsaPublicKey) -> Result<(), KeyError> {
    use rsa::traits::PublicKeyParts;
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(KeyError::Unsupported(format!(
            "RSA key of {bits} bits; CloudFront requires at least {MIN_RSA_BITS}"
        )));
    }
    Ok(())
}

#[derive(Clone)]
enum PublicKeyKind {
    /// The parsed key, and its PKCS#1 DER for ring, whose RSA verification is
    /// about 6x faster than the rsa crate's.
    Rsa(RsaPublicKey, Vec<u8>),
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

fn rsa_kind(key: RsaPublicKey) -> Result<PublicKeyKind, KeyError> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    let der = key.to_pkcs1_der().map_err(|e| invalid("RSA PUBLIC KEY", e))?;
    Ok(PublicKeyKind::Rsa(key, der.into_vec()))
}

/// A public key that checks signatures. Cheap to clone.
#[derive(Clone)]
pub struct PublicKey {
    kind: Arc<PublicKeyKind>,
    fingerprint: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.describe(), self.derived_key_id())
    }
}

impl PublicKey {
    /// Loads a public key from PEM: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`,
    /// RSA or EC P-256) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let label = pem_label(pem)?;
        let kind = match label {
            "PUBLIC KEY" => match RsaPublicKey::from_public_key_pem(pem) {
                Ok(rsa) => rsa_kind(rsa)?,
                Err(rsa_error) => match p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                    Ok(ec) => PublicKeyKind::EcdsaP256(ec),
                    Err(_) => {
                        return Err(invalid(label, format!("neither RSA nor EC P-256 ({rsa_error})")));
                    }
                },
            },
            "RSA PUBLIC KEY" => rsa_kind(RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| invalid(label, e))?)?,
            other => return Err(KeyError::UnsupportedLabel(other.to_owned())),
        };
        Self::from_kind(kind)
    }

    fn from_kind(kind: PublicKeyKind) -> Result<Self, KeyError> {
        if let PublicKeyKind::Rsa(rsa, _) = &kind {
            check_rsa_size(rsa)?;
        }
        let der = match &kind {
            PublicKeyKind::Rsa(k, _) => k.to_public_key_der().map_err(|e| invalid("PUBLIC KEY", e))?,
            PublicKeyKind::EcdsaP256(k) => k.to_public_key_der().map_err(|e| invalid("PUBLIC KEY", e))?,
        };
        Ok(Self {
            fingerprint: Sha256::digest(der.as_bytes()).into(),
            kind: Arc::new(kind),
        })
    }

    /// Whether `signature` is this key's signature of `message` under `algorithm`.
    /// ECDSA signatures are DER-encoded, as CloudFront's are.
    pub fn verify(&self, algorithm: HashAlgorithm, message: &[u8], signature: &[u8]) -> bool {
        match self.kind.as_ref() {
            PublicKeyKind::Rsa(_, pkcs1_der) => {
                let scheme = match algorithm {
                    HashAlgorithm::Sha1 => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    HashAlgorithm::Sha256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                };
                ring::signature::UnparsedPublicKey::new(scheme, pkcs1_der)
                    .verify(message, signature)
                    .is_ok()
            }
            PublicKeyKind::EcdsaP256(key) => {
                p256::ecdsa::Signature::from_der(signature).is_ok_and(|sig| key.verify_prehash(&algorithm.digest(message), &sig).is_ok())
            }
        }
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER: identifies the key material itself.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The key as `BEGIN PUBLIC KEY` PEM, the form CloudFront's console takes.
    pub fn to_pem(&self) -> String {
        let pem = match self.kind.as_ref() {
            PublicKeyKind::Rsa(k, _) => k.to_public_key_pem(LineEnding::LF),
            PublicKeyKind::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF),
        };
        pem.expect("encoding a valid public key to PEM cannot fail")
    }

    /// A CloudFront-shaped key id (`K` and 13 base32 characters) derived from the
    /// fingerprint, so the same key always gets the same id.
    pub fn derived_key_id(&self) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let bits = u128::from_be_bytes(self.fingerprint[..16].try_into().expect("16 bytes"));
        let mut id = String::from("K");
        id.extend((0..13).map(|i| ALPHABET[((bits >> (123 - 5 * i)) & 31) as usize] as char));
        id
    }

    /// A short description such as `RSA-2048` or `ECDSA-P256`.
    pub fn describe(&self) -> String {
        use rsa::traits::PublicKeyParts;
        match self.kind.as_ref() {
            PublicKeyKind::Rsa(k, _) => format!("RSA-{}", k.n().bits()),
            PublicKeyKind::EcdsaP256(_) => "ECDSA-P256".to_owned(),
        }
    }
}

enum PrivateKeyKind {
    Rsa(Box<RsaPrivateKey>),
    EcdsaP256(p256::ecdsa::SigningKey),
}

/// The algorithm of a key pair to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA 2048, CloudFront's usual key.
    Rsa,
    /// ECDSA on the P-256 curve.
    Ecdsa,
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "rsa" => Ok(Self::Rsa),
            "ecdsa" | "ec" => Ok(Self::Ecdsa),
            _ => Err(format!("unknown key algorithm {text:?} (expected rsa or ecdsa)")),
        }
    }
}

/// A private key that signs policies.
pub struct PrivateKey {
    kind: PrivateKeyKind,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({})", self.public_key().describe())
    }
}

impl PrivateKey {
    /// Loads a private key from PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`), PKCS#8
    /// (`BEGIN PRIVATE KEY`, RSA or EC) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let label = pem_label(pem)?;
        let kind = match label {
            "RSA PRIVATE KEY" => PrivateKeyKind::Rsa(Box::new(RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| invalid(label, e))?)),
            "PRIVATE KEY" => match RsaPrivateKey::from_pkcs8_pem(pem) {
                Ok(rsa) => PrivateKeyKind::Rsa(Box::new(rsa)),
                Err(rsa_error) => match p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                    Ok(ec) => PrivateKeyKind::EcdsaP256(ec),
                    Err(_) => {
                        return Err(invalid(label, format!("neither RSA nor EC P-256 ({rsa_error})")));
                    }
                },
            },
            "EC PRIVATE KEY" => {
                let secret = p256::SecretKey::from_sec1_pem(pem).map_err(|e| invalid(label, e))?;
                PrivateKeyKind::EcdsaP256(secret.into())
            }
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            other => return Err(KeyError::UnsupportedLabel(other.to_owned())),
        };
        let key = Self { kind };
        if let PrivateKeyKind::Rsa(rsa) = &key.kind {
            check_rsa_size(&rsa.to_public_key())?;
        }
        Ok(key)
    }

    /// Generates a new key pair.
    pub fn generate(algorithm: KeyAlgorithm) -> Self {
        let mut rng = rand::rngs::OsRng;
        let kind = match algorithm {
            KeyAlgorithm::Rsa => PrivateKeyKind::Rsa(Box::new(
                RsaPrivateKey::new(&mut rng, MIN_RSA_BITS).expect("generating an RSA key with the OS RNG"),
            )),
            KeyAlgorithm::Ecdsa => PrivateKeyKind::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng)),
        };
        Self { kind }
    }

    /// The key as PEM: PKCS#1 for RSA (what every CloudFront signer reads,
    /// including AWS CLI v1), PKCS#8 for EC.
    pub fn to_pem(&self) -> String {
        match &self.kind {
            PrivateKeyKind::Rsa(k) => k.to_pkcs1_pem(LineEnding::LF).expect("encoding RSA key").to_string(),
            PrivateKeyKind::EcdsaP256(k) => k.to_pkcs8_pem(LineEnding::LF).expect("encoding EC key").to_string(),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let kind = match &self.kind {
            PrivateKeyKind::Rsa(k) => rsa_kind(k.to_public_key()).expect("a loaded RSA key encodes to DER"),
            PrivateKeyKind::EcdsaP256(k) => PublicKeyKind::EcdsaP256(*k.verifying_key()),
        };
        PublicKey::from_kind(kind).expect("a loaded private key has a valid public key")
    }

    /// Signs `message`: PKCS#1 v1.5 for RSA (deterministic), DER-encoded ECDSA for EC.
    pub fn sign(&self, algorithm: HashAlgorithm, message: &[u8]) -> Vec<u8> {
        let digest = algorithm.digest(message);
        match &self.kind {
            PrivateKeyKind::Rsa(key) => key.sign(algorithm.pkcs1v15(), &digest).expect("RSA signing of a digest"),
            PrivateKeyKind::EcdsaP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).expect("ECDSA signing of a digest");
                signature.to_der().as_bytes().to_vec()
            }
        }
    }
}

/// The keys one behavior trusts: the union of its trusted key groups, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    /// Ids shared: a request's grant names its key without copying the id.
    by_id: HashMap<Arc<str>, PublicKey>,
}

impl TrustedKeys {
    /// Builds the set from `(key id, key)` pairs. A later pair with an id
    /// already present replaces it; config validation refuses such conflicts.
    pub fn new(keys: impl IntoIterator<Item = (String, PublicKey)>) -> Self {
        Self {
            by_id: keys.into_iter().map(|(id, key)| (Arc::from(id), key)).collect(),
        }
    }

    /// The key with this id, if trusted, with the id as kept.
    pub fn get(&self, key_id: &str) -> Option<(&Arc<str>, &PublicKey)> {
        self.by_id.get_key_value(key_id)
    }

    /// Whether no key is trusted (a public behavior).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_round_trip_in_every_format() {
        let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        let sec1 = match &key.kind {
            PrivateKeyKind::EcdsaP256(k) => p256::SecretKey::from(k).to_sec1_pem(LineEnding::LF).unwrap().to_string(),
            PrivateKeyKind::Rsa(_) => unreachable!(),
        };
        for pem in [key.to_pem(), sec1] {
            let loaded = PrivateKey::from_pem(&pem).unwrap();
            for algorithm in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
                let signature = loaded.sign(algorithm, b"policy");
                assert!(public.verify(algorithm, b"policy", &signature));
                assert!(!public.verify(algorithm, b"policy!", &signature));
            }
        }
        let sha1_signature = key.sign(HashAlgorithm::Sha1, b"policy");
        assert!(!public.verify(HashAlgorithm::Sha256, b"policy", &sha1_signature));
    }

    #[test]
    fn labels_that_are_not_keys_are_refused_by_name() {
        assert!(matches!(PublicKey::from_pem("hello"), Err(KeyError::NotPem)));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(PublicKey::from_pem(cert), Err(KeyError::UnsupportedLabel(l)) if l == "CERTIFICATE"));
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(PrivateKey::from_pem(encrypted), Err(KeyError::Encrypted)));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(PublicKey::from_pem(garbage), Err(KeyError::Invalid { .. })));
    }

    #[test]
    fn derived_key_ids_look_like_cloudfront_ids_and_are_stable() {
        let key = PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key();
        let id = key.derived_key_id();
        assert_eq!(id.len(), 14);
        assert!(id.starts_with('K'));
        assert!(id.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_eq!(PublicKey::from_pem(&key.to_pem()).unwrap().derived_key_id(), id);
    }
}
