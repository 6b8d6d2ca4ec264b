//! One blocking HTTP/1.1 exchange over plain TCP, for the command line's own
//! small requests (seeding a bucket, asking the admin listener to invalidate).
//! The edge's traffic never goes through here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `head` (request line and headers, without the final blank line;
/// `Connection: close` and `Content-Length` are added) and `body` to
/// `address`, and returns the status and the response body.
pub fn exchange(address: &str, head: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} from {address}"));
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("an incomplete response"))?;
    let status = String::from_utf8_lossy(&response[..split.min(64)])
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status"))?;
    Ok((status, response[split + 4..].to_vec()))
}
