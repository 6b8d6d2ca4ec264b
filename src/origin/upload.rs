//! A small blocking SigV4 PUT, for seeding a bucket (the demo, tests). The
//! edge's own origin traffic goes through pingora, not through here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use super::S3Origin;

/// Uploads `body` as `key` (a viewer path such as `/videos/a.mp4`) with
/// `headers` (such as `content-type`, `cache-control`) over plain HTTP, and
/// returns the status code.
pub fn put_object(
    origin: &S3Origin,
    key: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<u16> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if origin.tls {
        return Err(invalid("put_object speaks plain HTTP only".to_owned()));
    }
    let path = origin
        .object_path(key)
        .ok_or_else(|| invalid(format!("{key:?} is not an object key")))?;
    let length = body.len().to_string();
    let mut all_headers = headers.to_vec();
    all_headers.push(("content-length", &length));
    let signed = origin
        .sign("PUT", &path, &all_headers, SystemTime::now())
        .map_err(|e| invalid(e.to_string()))?;
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        origin.host
    );
    for (name, value) in all_headers
        .iter()
        .copied()
        .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(&origin.address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let status_line = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            invalid(format!(
                "unexpected answer from the origin: {status_line:?}"
            ))
        })
}
