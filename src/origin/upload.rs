//! A small blocking SigV4 PUT, for seeding a bucket (the demo, tests). The
//! edge's own origin traffic goes through pingora, not through here.

use std::time::SystemTime;

use super::Origin;

/// Uploads `body` as `key` (a viewer path such as `/videos/a.mp4`) with
/// `headers` (such as `content-type`, `cache-control`) over plain HTTP, and
/// returns the status code.
pub fn put_object(origin: &Origin, key: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<u16> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if origin.tls {
        return Err(invalid("put_object speaks plain HTTP only".to_owned()));
    }
    let path = origin
        .key_path(key)
        .ok_or_else(|| invalid(format!("{key:?} is not an object key")))?;
    let length = body.len().to_string();
    let mut signed_headers = headers.to_vec();
    signed_headers.push(("content-length", &length));
    let signature = origin
        .sign("PUT", &path, &signed_headers, SystemTime::now())
        .map_err(|e| invalid(e.to_string()))?;
    let mut head = format!("PUT {path} HTTP/1.1\r\nhost: {}", origin.host);
    for (name, value) in headers
        .iter()
        .copied()
        .chain(signature.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        head.push_str(&format!("\r\n{name}: {value}"));
    }
    crate::plain_http::exchange(&origin.address, &head, body).map(|answer| answer.status)
}
