//! A TCP relay between one server and the origin that counts what passes:
//! requests (GETs and HEADs, so one head each) and the bytes the origin sent.
//! Both servers reach the origin through a relay of their own, so origin
//! traffic is measured the same way for each.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

pub struct CountingRelay {
    pub address: SocketAddr,
    counts: Arc<Counts>,
}

/// Origin traffic so far, or between two readings.
#[derive(Clone, Copy, Debug, Default)]
pub struct OriginTraffic {
    pub requests: u64,
    pub bytes: u64,
}

impl std::ops::Sub for OriginTraffic {
    type Output = OriginTraffic;
    fn sub(self, earlier: OriginTraffic) -> OriginTraffic {
        OriginTraffic {
            requests: self.requests - earlier.requests,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

impl CountingRelay {
    pub fn start(origin: SocketAddr) -> std::io::Result<CountingRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let relay_counts = counts.clone();
        std::thread::spawn(move || {
            for server in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(origin) else { continue };
                let _ = (server.set_nodelay(true), upstream.set_nodelay(true));
                let (Ok(server_reader), Ok(upstream_reader)) = (server.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                let (requests, responses) = (relay_counts.clone(), relay_counts.clone());
                std::thread::spawn(move || copy(server_reader, upstream, |chunk, tail| requests.count_heads(chunk, tail)));
                std::thread::spawn(move || copy(upstream_reader, server, |chunk, _| responses.count_bytes(chunk)));
            }
        });
        Ok(CountingRelay { address, counts })
    }

    pub fn traffic(&self) -> OriginTraffic {
        OriginTraffic {
            requests: self.counts.requests.load(Ordering::SeqCst),
            bytes: self.counts.bytes.load(Ordering::SeqCst),
        }
    }
}

impl Counts {
    /// Counts request heads ending in this chunk; `tail` holds the last three
    /// bytes before it, as a head's blank line may straddle two reads.
    fn count_heads(&self, chunk: &[u8], tail: &[u8]) {
        let mut joined = tail.to_vec();
        joined.extend_from_slice(chunk);
        let heads = joined.windows(4).filter(|w| w == b"\r\n\r\n").count();
        self.requests.fetch_add(heads as u64, Ordering::SeqCst);
    }

    fn count_bytes(&self, chunk: &[u8]) {
        self.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
}

/// Copies until either side closes, showing each chunk to `observe` with
/// the last three bytes of the one before.
fn copy(mut from: TcpStream, mut to: TcpStream, observe: impl Fn(&[u8], &[u8])) {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    while let Ok(read) = from.read(&mut buffer) {
        if read == 0 {
            break;
        }
        let chunk = &buffer[..read];
        observe(chunk, &tail);
        if to.write_all(chunk).is_err() {
            break;
        }
        if chunk.len() >= 3 {
            tail.clear();
        }
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(3)..]);
        tail.drain(..tail.len().saturating_sub(3));
    }
    let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
}
