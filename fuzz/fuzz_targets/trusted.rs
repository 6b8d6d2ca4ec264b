//! The key the AWS vectors in the corpora were signed with, and a verifier.

use std::sync::OnceLock;

use keyfront::auth::{PublicKey, TrustedKeys, Verifier};

pub fn keys() -> &'static (TrustedKeys, Verifier) {
    static KEYS: OnceLock<(TrustedKeys, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = include_str!("../../tests/vectors/keys/rsa_public.pem");
        let trusted = TrustedKeys::new([("K2JCJMDEHXQW5F".to_owned(), PublicKey::from_pem(pem).unwrap())]);
        (trusted, Verifier::new(1 << 20))
    })
}
