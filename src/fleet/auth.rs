//! Node-to-node authentication: an HMAC-SHA256, under the fleet's shared
//! secret, over what a request asks for (method, the routing table it is
//! served from, the object's origin key, path, range), who asks (node) and
//! when (Unix seconds), valid for a short window. A viewer cannot produce
//! one; a captured one expires with its window and names one slice of one
//! object only: the receiver routes it by the table it names (never by its
//! `Host`) and recomputes the origin key, so a replay with another Host,
//! table, path, range or method does not verify. Node requests are GET and
//! HEAD only: replaying the identical request changes nothing, so no nonce
//! is kept.

use ring::hmac;

use crate::config::{MIN_SECRET_BYTES, valid_node_name};
use crate::routing::FILE_TABLE;

/// The asking node's name.
pub const NODE_HEADER: &str = "x-keyfront-fleet-node";
/// When the request was signed, Unix seconds.
pub const TIME_HEADER: &str = "x-keyfront-fleet-time";
/// The signature, lower-case hex.
pub const SIGNATURE_HEADER: &str = "x-keyfront-fleet-signature";
/// Unix milliseconds: answer from nothing fetched before (the asking node
/// invalidated the object then); absent or 0 for no such bound.
pub const NOT_BEFORE_HEADER: &str = "x-keyfront-fleet-not-before";
/// The routing table the object is served from: a control-plane
/// distribution's id, or `-` for the config file's behaviors.
pub const TABLE_HEADER: &str = "x-keyfront-fleet-table";
/// `site` when the asker is a node of the receiver's site asking the
/// slice's owner (who must not ask its site peers in turn), `parent` when
/// it is a child asking its parent.
pub const HOP_HEADER: &str = "x-keyfront-fleet-hop";

/// How far a fleet request's time may be from the receiver's clock, either
/// way (seconds): node clocks are NTP-synchronised, requests are answered
/// within a timeout of this order.
pub const VALIDITY_SECONDS: u64 = 30;

/// The fleet's shared secret.
#[derive(Clone)]
pub struct FleetSecret(hmac::Key);

impl std::fmt::Debug for FleetSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FleetSecret(..)")
    }
}

/// Why a fleet request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetAuthError {
    #[error("a fleet header is missing or malformed")]
    Malformed,
    #[error("the fleet request's time is outside the validity window")]
    Expired,
    #[error("the fleet signature does not verify")]
    BadSignature,
    #[error("the fleet request names a distribution this node does not serve")]
    UnknownTable,
}

/// What a fleet signature covers.
#[derive(Clone, Copy, Debug)]
pub struct FleetRequest<'a> {
    pub method: &'a str,
    /// See `TABLE_HEADER`.
    pub table: &'a str,
    /// The object's cache key (origin name and origin path) in that table.
    pub object: &'a str,
    /// The canonical path, no query.
    pub path: &'a str,
    /// The `Range` header, or empty.
    pub range: &'a str,
    pub node: &'a str,
    pub time: u64,
    /// See `NOT_BEFORE_HEADER`.
    pub not_before: u64,
    /// See `HOP_HEADER`.
    pub site_hop: bool,
}

impl FleetRequest<'_> {
    fn message(&self) -> String {
        let FleetRequest {
            method,
            table,
            object,
            path,
            range,
            node,
            time,
            not_before,
            site_hop,
        } = self;
        let hop = if *site_hop { "site" } else { "parent" };
        // Lengths first: an object key holds a newline of its own, and no
        // two tuples of fields may make one message.
        let field = |text: &str| format!("{}:{text}", text.len());
        format!(
            "keyfront-fleet-v2\n{method}\n{}\n{}\n{}\n{}\n{node}\n{time}\n{not_before}\n{hop}",
            field(table),
            field(object),
            field(path),
            field(range)
        )
    }
}

/// What a verified fleet request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'h> {
    pub node: &'h str,
    pub not_before: u64,
    pub site_hop: bool,
}

impl FleetSecret {
    /// The secret from its bytes; `None` if shorter than `MIN_SECRET_BYTES`.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_BYTES).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The HMAC key, for the control log's entries.
    pub(super) fn key(&self) -> &hmac::Key {
        &self.0
    }

    /// The six headers that authenticate `request`.
    pub fn sign(&self, request: &FleetRequest) -> [(&'static str, String); 6] {
        let tag = hmac::sign(&self.0, request.message().as_bytes());
        let hex = hex::encode(tag.as_ref());
        [
            (NODE_HEADER, request.node.to_owned()),
            (TABLE_HEADER, request.table.to_owned()),
            (TIME_HEADER, request.time.to_string()),
            (NOT_BEFORE_HEADER, request.not_before.to_string()),
            (HOP_HEADER, if request.site_hop { "site" } else { "parent" }.to_owned()),
            (SIGNATURE_HEADER, hex),
        ]
    }

    /// Checks a request's fleet headers (`header` looks one up) at `now`,
    /// for the object `object` of the table the request named (see
    /// `table_named`); returns what they carry.
    pub fn verify<'h>(
        &self,
        method: &str,
        object: &str,
        path: &str,
        range: &str,
        header: impl Fn(&str) -> Option<&'h str>,
        now: u64,
    ) -> Result<Verified<'h>, FleetAuthError> {
        let table = table_named(&header)?;
        let node = header(NODE_HEADER)
            .filter(|n| valid_node_name(n))
            .ok_or(FleetAuthError::Malformed)?;
        let time: u64 = header(TIME_HEADER)
            .filter(|t| t.len() <= 20)
            .and_then(|t| t.parse().ok())
            .ok_or(FleetAuthError::Malformed)?;
        let signature = header(SIGNATURE_HEADER)
            .filter(|s| s.len() == 64)
            .and_then(|s| hex::decode(s).ok())
            .ok_or(FleetAuthError::Malformed)?;
        let not_before: u64 = match header(NOT_BEFORE_HEADER) {
            None => 0,
            Some(text) => text.parse().ok().filter(|_| text.len() <= 20).ok_or(FleetAuthError::Malformed)?,
        };
        let site_hop = match header(HOP_HEADER) {
            None | Some("parent") => false,
            Some("site") => true,
            Some(_) => return Err(FleetAuthError::Malformed),
        };
        if time.abs_diff(now) > VALIDITY_SECONDS {
            return Err(FleetAuthError::Expired);
        }
        let request = FleetRequest {
            method,
            table,
            object,
            path,
            range,
            node,
            time,
            not_before,
            site_hop,
        };
        hmac::verify(&self.0, request.message().as_bytes(), &signature).map_err(|_| FleetAuthError::BadSignature)?;
        Ok(Verified {
            node,
            not_before,
            site_hop,
        })
    }
}

/// The table a fleet request names (`TABLE_HEADER`): what the receiver
/// routes it by, before its signature is checked over the object found there.
pub fn table_named<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Result<&'h str, FleetAuthError> {
    header(TABLE_HEADER)
        .filter(|table| *table == FILE_TABLE || valid_node_name(table))
        .ok_or(FleetAuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const OBJECT: &str = "store\n/media/videos/a.mp4";

    fn secret(fill: u8) -> FleetSecret {
        FleetSecret::new(&[fill; 32]).unwrap()
    }

    fn request(range: &str) -> FleetRequest<'_> {
        FleetRequest {
            method: "GET",
            table: FILE_TABLE,
            object: "store\n/media/videos/a.mp4",
            path: "/videos/a.mp4",
            range,
            node: "fra-1",
            time: NOW,
            not_before: 0,
            site_hop: false,
        }
    }

    fn check(
        signed_with: &FleetSecret,
        signed: &FleetRequest,
        method: &str,
        path: &str,
        range: &str,
        now: u64,
    ) -> Result<String, FleetAuthError> {
        let headers = signed_with.sign(signed);
        let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        secret(7)
            .verify(method, OBJECT, path, range, lookup, now)
            .map(|verified| verified.node.to_owned())
    }

    #[test]
    fn a_signed_request_verifies_within_its_window_only() {
        let range = "bytes=0-1048575";
        let at = |now| check(&secret(7), &request(range), "GET", "/videos/a.mp4", range, now);
        assert_eq!(at(NOW).as_deref(), Ok("fra-1"));
        assert!(at(NOW + VALIDITY_SECONDS).is_ok());
        assert_eq!(at(NOW + VALIDITY_SECONDS + 1), Err(FleetAuthError::Expired));
        assert_eq!(at(NOW - VALIDITY_SECONDS - 1), Err(FleetAuthError::Expired));
    }

    #[test]
    fn every_covered_part_and_the_secret_matter() {
        let range = "bytes=0-1048575";
        let refused = Err(FleetAuthError::BadSignature);
        assert_eq!(check(&secret(8), &request(range), "GET", "/videos/a.mp4", range, NOW), refused);
        assert_eq!(check(&secret(7), &request(range), "HEAD", "/videos/a.mp4", range, NOW), refused);
        assert_eq!(check(&secret(7), &request(range), "GET", "/videos/b.mp4", range, NOW), refused);
        assert_eq!(check(&secret(7), &request(range), "GET", "/videos/a.mp4", "bytes=0-", NOW), refused);
        assert_eq!(check(&secret(7), &request(""), "GET", "/videos/a.mp4", range, NOW), refused);
        let headers = secret(7).sign(&request(range));
        let raised = |name: &str| match name {
            NOT_BEFORE_HEADER => Some("1"),
            HOP_HEADER => Some("parent"),
            _ => headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
        };
        let verdict = secret(7).verify("GET", OBJECT, "/videos/a.mp4", range, raised, NOW);
        assert_eq!(verdict, Err(FleetAuthError::BadSignature), "the not-before bound is signed too");
        let hopped = |name: &str| match name {
            HOP_HEADER => Some("site"),
            _ => headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
        };
        let verdict = secret(7).verify("GET", OBJECT, "/videos/a.mp4", range, hopped, NOW);
        assert_eq!(verdict, Err(FleetAuthError::BadSignature), "so is the hop");
        let moved = |name: &str| match name {
            TABLE_HEADER => Some("E2ABCDEF"),
            _ => headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
        };
        let verdict = secret(7).verify("GET", OBJECT, "/videos/a.mp4", range, moved, NOW);
        assert_eq!(verdict, Err(FleetAuthError::BadSignature), "so is the table");
        let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let verdict = secret(7).verify("GET", "other\n/media/videos/a.mp4", "/videos/a.mp4", range, lookup, NOW);
        assert_eq!(verdict, Err(FleetAuthError::BadSignature), "and the object's origin key");
    }

    #[test]
    fn malformed_headers_are_refused_before_any_hmac() {
        let good = secret(7).sign(&request(""));
        let variants: [(&str, &str); 10] = [
            (TABLE_HEADER, ""),
            (TABLE_HEADER, "a b"),
            (HOP_HEADER, "sideways"),
            (NOT_BEFORE_HEADER, "yesterday"),
            (NODE_HEADER, ""),
            (NODE_HEADER, "fra 1"),
            (TIME_HEADER, "soon"),
            (TIME_HEADER, "999999999999999999999999"),
            (SIGNATURE_HEADER, "abc"),
            (SIGNATURE_HEADER, &"zz".repeat(32)),
        ];
        for (name, value) in variants {
            let lookup = |wanted: &str| {
                if wanted == name {
                    Some(value)
                } else {
                    good.iter().find(|(n, _)| *n == wanted).map(|(_, v)| v.as_str())
                }
            };
            assert_eq!(
                secret(7).verify("GET", OBJECT, "/videos/a.mp4", "", lookup, NOW),
                Err(FleetAuthError::Malformed),
                "{name}: {value:?}"
            );
        }
        assert_eq!(
            secret(7).verify("GET", OBJECT, "/", "", |_| None, NOW),
            Err(FleetAuthError::Malformed)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(FleetSecret::new(&[1; MIN_SECRET_BYTES - 1]).is_none());
        assert!(format!("{:?}", secret(7)).contains(".."), "never printed");
    }
}
