//! Idle origin connections, each kept by the thread that last used it.
//!
//! pingora's connector pool has a task on a random thread watch each idle
//! connection. Taking one back then waits for that thread to wake, and when
//! the watcher has not quite let go, loses the connection: pingora logs
//! "failed to acquire reusable stream" and dials again (pingora issue 998),
//! which against S3 is a new TLS handshake. Measured through `keyfront
//! serve --threads 2`: 15 of ~600 sequential cold misses. Kept here, a
//! connection stays with the thread whose reactor drives it and is checked
//! for closure, as pingora checks it, when taken; nothing watches it.

use std::cell::RefCell;
use std::future::Future;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

/// Idle connections one thread keeps, to all peers together; the oldest
/// goes (closed) when another comes.
const KEPT_PER_THREAD: usize = 32;

struct Idle {
    peer: u64,
    stream: Stream,
    /// Past this it is closed, never taken: its origin's keep-alive ended.
    until: Instant,
}

thread_local! {
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// This thread's most recently kept connection to `peer` (pingora's
/// `reuse_hash`) whose keep-alive has not ended, still open and quiet.
/// Others met on the way are closed.
pub fn take(peer: u64) -> Option<Stream> {
    loop {
        let idle = IDLE.with_borrow_mut(|kept| {
            let newest = kept.iter().rposition(|idle| idle.peer == peer)?;
            Some(kept.remove(newest))
        })?;
        let mut stream = idle.stream;
        if Instant::now() < idle.until && open_and_quiet(&mut stream) {
            return Some(stream);
        }
    }
}

/// Keeps `stream`, whose last response was read to its end, for `peer`,
/// for at most `idle_timeout`.
pub fn keep(peer: u64, stream: Stream, idle_timeout: Duration) {
    let now = Instant::now();
    let closed = IDLE.with_borrow_mut(|kept| {
        let mut closed: Vec<Idle> = kept.extract_if(.., |idle| now >= idle.until).collect();
        if kept.len() >= KEPT_PER_THREAD {
            closed.push(kept.remove(0));
        }
        kept.push(Idle {
            peer,
            stream,
            until: now + idle_timeout,
        });
        closed
    });
    // Closed outside the borrow: a stream's drop may flush.
    drop(closed);
}

/// An idle connection is reusable only if reading it would wait: a read
/// that returns means the peer closed it, broke it, or sent what no request
/// asked for.
fn open_and_quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // Unconstrained: tokio's cooperative budget must not make a ready read look pending.
    let read = std::pin::pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    read.poll(&mut Context::from_waker(Waker::noop())).is_pending()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each connection keeps its own origin's keep-alive: one past it is
    /// closed, never taken, while another peer's longer one is taken (once).
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_is_taken_back_only_within_its_own_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut streams = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            streams.push(Box::new(pingora::protocols::l4::stream::Stream::from(tcp)) as Stream);
            accepted.push(listener.accept().await.unwrap());
        }
        let (long, short) = (streams.pop().unwrap(), streams.pop().unwrap());
        keep(1, short, Duration::from_millis(50));
        keep(2, long, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(take(1).is_none(), "past its keep-alive");
        assert!(take(2).is_some(), "within its own keep-alive, whatever another's");
        assert!(take(2).is_none(), "taken once");
    }
}
