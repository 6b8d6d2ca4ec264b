//! bench/compare counts each server's origin traffic with a relay; its figures
//! are only as good as that count.

#[path = "../bench/side_by_side/relay.rs"]
mod relay;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// An origin that answers every request head on a connection with `ANSWER`.
fn origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let (mut seen, mut buffer) = (Vec::new(), [0u8; 1024]);
                while let Ok(read) = connection.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buffer[..read]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        connection.write_all(ANSWER).unwrap();
                    }
                }
            });
        }
    });
    address
}

#[test]
fn the_relay_counts_request_heads_split_across_writes_and_the_origins_bytes() {
    let relay = relay::CountingRelay::start(origin()).unwrap();
    let mut client = TcpStream::connect(relay.address).unwrap();
    client.set_nodelay(true).unwrap();
    // Three requests on one connection; the second's blank line arrives in two writes.
    for part in [
        "GET /a HTTP/1.1\r\nhost: o\r\n\r\nGET /b HTTP/1.1\r\nhost: o\r\n\r",
        "\n",
        "HEAD /c HTTP/1.1\r\nhost: o\r\n\r\n",
    ] {
        client.write_all(part.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let mut answers = vec![0u8; 3 * ANSWER.len()];
    client.read_exact(&mut answers).unwrap();
    let before = relay.traffic();
    assert_eq!((before.requests, before.bytes), (3, 3 * ANSWER.len() as u64));
    client.write_all(b"GET /d HTTP/1.1\r\nhost: o\r\n\r\n").unwrap();
    client.read_exact(&mut answers[..ANSWER.len()]).unwrap();
    let delta = relay.traffic() - before;
    assert_eq!((delta.requests, delta.bytes), (1, ANSWER.len() as u64));
}
