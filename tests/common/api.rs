//! Helpers for tests that call the emulator's control-plane API.

use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PrivateKey, Signer};
use keyfront::emulator::Emulator;
use keyfront::plain_http::Answer;

pub const NS: &str = "xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"";

pub fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// The text of the first `<name>` in `xml`.
pub fn field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{name}> in {xml}")) + open.len();
    xml[start..start + xml[start..].find('<').unwrap()].to_owned()
}

/// A key group of one new EC key, made through the API; its id, and the
/// signer of that key.
pub fn key_group(emulator: &Emulator) -> (String, Signer) {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
    let body = format!(
        "<PublicKeyConfig {NS}><CallerReference>k</CallerReference><Name>k</Name><EncodedKey>{}</EncodedKey></PublicKeyConfig>",
        key.public_key().to_pem()
    );
    let created = emulator.call("POST", "/2020-05-31/public-key", body.as_bytes(), None).unwrap();
    let key_id = field(&text(&created), "Id");
    let group = format!("<KeyGroupConfig {NS}><Name>g</Name><Items><PublicKey>{key_id}</PublicKey></Items></KeyGroupConfig>");
    let created = emulator.call("POST", "/2020-05-31/key-group", group.as_bytes(), None).unwrap();
    (field(&text(&created), "Id"), Signer::new(key_id, key, HashAlgorithm::Sha1))
}
