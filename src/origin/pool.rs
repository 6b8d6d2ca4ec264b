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
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// This thread's most recently kept connection to `peer` (pingora's
/// `reuse_hash`) that is younger than `idle_timeout`, still open and quiet.
/// Others met on the way are closed.
pub fn take(peer: u64, idle_timeout: Duration) -> Option<Stream> {
    loop {
        let idle = IDLE.with_borrow_mut(|kept| {
            let newest = kept.iter().rposition(|idle| idle.peer == peer)?;
            Some(kept.remove(newest))
        })?;
        let mut stream = idle.stream;
        if idle.since.elapsed() < idle_timeout && open_and_quiet(&mut stream) {
            return Some(stream);
        }
    }
}

/// Keeps `stream`, whose last response was read to its end, for `peer`.
pub fn keep(peer: u64, stream: Stream, idle_timeout: Duration) {
    let closed = IDLE.with_borrow_mut(|kept| {
        let mut closed: Vec<Idle> = kept.extract_if(.., |idle| idle.since.elapsed() >= idle_timeout).collect();
        if kept.len() >= KEPT_PER_THREAD {
            closed.push(kept.remove(0));
        }
        kept.push(Idle {
            peer,
            stream,
            since: Instant::now(),
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
