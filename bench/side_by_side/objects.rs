//! The test objects: their keys, sizes and bytes, the same for the origin
//! (seeded over S3) and the ceiling (held in memory).

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// Scenario 1: small objects, hit again and again.
pub const HOT_SIZE: u64 = 4 * KIB;
pub const HOT_COUNT: usize = 16;
/// Scenario 2: random 1 MiB ranges of one object.
pub const RANGES_KEY: &str = "/ranges/256m";
pub const RANGES_SIZE: u64 = 256 * MIB;
pub const RANGE_LENGTH: u64 = MIB;
/// Scenario 3: one object per round, cold for every server.
pub const COLD_SIZE: u64 = 64 * MIB;
pub const COLD_CLIENTS: usize = 50;
/// Scenario 4: streamed by many connections at once.
pub const STREAM_KEY: &str = "/stream/1g";
pub const STREAM_SIZE: u64 = 1024 * MIB;
pub const STREAM_CONNECTIONS: usize = 200;

/// Scenario 8: per round, one object sought deep into and small ones, all cold.
pub const SEEK_SIZE: u64 = 16 * MIB;

pub fn seek_key(round: usize) -> String {
    format!("/seek/{round}")
}

pub fn small_key(round: usize, index: usize) -> String {
    format!("/small/{round}-{index}")
}

pub fn hot_key(index: usize) -> String {
    format!("/hot/{index}")
}

pub fn cold_key(round: usize) -> String {
    format!("/cold/{round}")
}

/// Every object's keys and sizes, for seeding.
pub fn all(rounds: usize) -> Vec<(String, u64)> {
    let mut objects: Vec<(String, u64)> = (0..HOT_COUNT).map(|i| (hot_key(i), HOT_SIZE)).collect();
    objects.push((RANGES_KEY.to_owned(), RANGES_SIZE));
    objects.extend((0..rounds).map(|round| (cold_key(round), COLD_SIZE)));
    objects.push((STREAM_KEY.to_owned(), STREAM_SIZE));
    for round in 0..rounds {
        objects.push((seek_key(round), SEEK_SIZE));
        objects.extend((0..crate::first_byte::PER_ROUND).map(|index| (small_key(round, index), HOT_SIZE)));
    }
    objects
}

/// The bytes of the object at `key`: a pattern that differs at every offset
/// within 251 bytes and between objects, so a misplaced range shows.
pub fn content(key: &str, length: u64) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(0usize, |sum, byte| sum.wrapping_mul(31).wrapping_add(byte as usize));
    (0..length as usize).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}
