//! Scenario 8: a cold miss's first byte through keyfront against the
//! origin's own first byte for the request keyfront makes (SigV4-signed,
//! with keyfront's Range), through the same counting relay (keyfront's path
//! to its origin): a seek deep into a large object, and the start of a
//! small one. Every request is for bytes keyfront has never seen.

use std::net::SocketAddr;
use std::time::Duration;

use crate::load::timed_get;
use crate::objects::*;
use crate::report::Samples;
use crate::servers::{self, BUCKET, Server};
use crate::{Failure, Settings};

pub const SEEK: &str = "first byte, deep seek";
pub const SMALL: &str = "first byte, small object";
pub const ORIGIN: &str = "origin";

/// Requests per round and kind; the round's figure is their median.
pub const PER_ROUND: usize = 9;
/// The range a seek asks for.
const SEEK_LENGTH: u64 = 64 * KIB;

fn first_byte(address: SocketAddr, target: &str, headers: &[(&str, &str)], status: u16, length: u64) -> Result<Duration, Failure> {
    timed_get(address, target, headers, status, length).map(|fetch| fetch.first_byte)
}

/// The origin's first byte for the request keyfront makes for `key`:
/// SigV4-signed (S3 checks every signature of a private bucket), with `range`.
fn origin_first_byte(relay: SocketAddr, key: &str, range: &str, length: u64) -> Result<Duration, Failure> {
    let signature = servers::origin_signature(relay, key)?;
    let mut headers: Vec<(&str, &str)> = signature.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    headers.push(("Range", range));
    first_byte(relay, &format!("/{BUCKET}{key}"), &headers, 206, length)
}

pub fn first_bytes(settings: &Settings, keyfront: &Server, samples: &mut Samples) -> Result<(), Failure> {
    let relay = keyfront.relay.as_ref().ok_or("keyfront's origin relay")?.address;
    for round in 0..settings.rounds {
        let (mut edge_seek, mut origin_seek, mut edge_small, mut origin_small) = (vec![], vec![], vec![], vec![]);
        for request in 0..PER_ROUND {
            // Deep inside a slice no earlier request touched.
            let start = (request as u64 + 2) * MIB + 700 * KIB;
            let range = format!("bytes={start}-{}", start + SEEK_LENGTH - 1);
            let key = seek_key(round);
            std::thread::sleep(settings.settle);
            origin_seek.push(origin_first_byte(relay, &key, &range, SEEK_LENGTH)?);
            std::thread::sleep(settings.settle);
            edge_seek.push(first_byte(
                keyfront.address,
                &keyfront.target(&key),
                &[("Range", &range)],
                206,
                SEEK_LENGTH,
            )?);
            // keyfront asks for the whole first slice; a 4 KiB object answers with its 4 KiB.
            let key = small_key(round, request);
            std::thread::sleep(settings.settle);
            origin_small.push(origin_first_byte(relay, &key, &format!("bytes=0-{}", MIB - 1), HOT_SIZE)?);
            std::thread::sleep(settings.settle);
            edge_small.push(first_byte(keyfront.address, &keyfront.target(&key), &[], 200, HOT_SIZE)?);
        }
        let millis = |mut times: Vec<Duration>| {
            times.sort();
            times[times.len() / 2].as_secs_f64() * 1e3
        };
        let figures = [
            (SEEK, keyfront.name, millis(edge_seek)),
            (SEEK, ORIGIN, millis(origin_seek)),
            (SMALL, keyfront.name, millis(edge_small)),
            (SMALL, ORIGIN, millis(origin_small)),
        ];
        for (measure, server, value) in figures {
            println!("{measure:<26} round {} {server:>8}: {value:.3} ms", round + 1);
            samples.add(measure, server, value);
        }
    }
    Ok(())
}
