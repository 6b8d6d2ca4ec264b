//! Small requests to a bucket for the fleet's control log: listing the keys
//! under a prefix (ListObjectsV2), and reading or writing a small object.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use quick_xml::events::Event;

use super::{FetchError, OriginClient, OriginResponse, S3Origin};

/// The largest listing or control object read (a listing of 1,000 keys is
/// about 300 KB).
const MAX_SMALL_BODY_BYTES: usize = 1 << 20;

/// What S3 leaves unescaped in a query value; everything else is `%XX`, as
/// SigV4's canonical query string has it.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl OriginResponse<'_> {
    /// The whole body, refused past `limit` bytes.
    pub async fn read_small_body(&mut self, limit: usize) -> Result<Vec<u8>, FetchError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::Failed(format!("a body over {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl OriginClient {
    /// Up to 1,000 keys under the bucket-relative `prefix` that sort after
    /// `after`, in order.
    pub async fn list_keys(&self, origin: &S3Origin, prefix: &str, after: &str) -> Result<Vec<String>, FetchError> {
        let root = if origin.path_style {
            format!("/{}", origin.bucket)
        } else {
            String::new()
        };
        let path = format!(
            "{root}/?list-type=2&prefix={}&start-after={}",
            utf8_percent_encode(prefix, QUERY_VALUE),
            utf8_percent_encode(after, QUERY_VALUE)
        );
        let mut response = self.send(origin, "GET", &path, &[]).await?;
        let body = response.read_small_body(MAX_SMALL_BODY_BYTES).await?;
        match response.status() {
            200 => parse_keys(&body),
            status => Err(FetchError::Failed(format!("listing {prefix} answered {status}"))),
        }
    }

    /// The bytes of the object at bucket-relative `key`.
    pub async fn get_small(&self, origin: &S3Origin, key: &str) -> Result<Vec<u8>, FetchError> {
        let path = object_path(origin, key)?;
        let mut response = self.send(origin, "GET", &path, &[]).await?;
        let body = response.read_small_body(MAX_SMALL_BODY_BYTES).await?;
        match response.status() {
            200 => Ok(body),
            status => Err(FetchError::Failed(format!("reading {key} answered {status}"))),
        }
    }

    /// Writes `body` as the object at bucket-relative `key`.
    pub async fn put_small(&self, origin: &S3Origin, key: &str, content_type: &str, body: Bytes) -> Result<(), FetchError> {
        let path = object_path(origin, key)?;
        let mut response = self.put(origin, &path, &[("content-type", content_type)], body).await?;
        let _ = response.read_small_body(MAX_SMALL_BODY_BYTES).await;
        match response.status() {
            200 => Ok(()),
            status => Err(FetchError::Failed(format!("writing {key} answered {status}"))),
        }
    }
}

fn object_path(origin: &S3Origin, key: &str) -> Result<String, FetchError> {
    origin
        .key_path(&format!("/{key}"))
        .ok_or_else(|| FetchError::Failed(format!("{key:?} is not an object key")))
}

/// The `<Key>` of every `<Contents>` in a ListObjectsV2 answer.
fn parse_keys(xml: &[u8]) -> Result<Vec<String>, FetchError> {
    let malformed = |error: &dyn std::fmt::Display| FetchError::Failed(format!("a listing: {error}"));
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut keys = Vec::new();
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) if start.name().as_ref() == b"Key" => {
                let text = reader.read_text(start.name()).map_err(|e| malformed(&e))?;
                let text = text.decode().map_err(|e| malformed(&e))?;
                keys.push(quick_xml::escape::unescape(&text).map_err(|e| malformed(&e))?.into_owned());
            }
            Event::Eof => return Ok(keys),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_keys;

    #[test]
    fn keys_come_from_contents_in_order() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>media</Name><Prefix>_keyfront/control/</Prefix><KeyCount>2</KeyCount><Contents><Key>_keyfront/control/1-a.json</Key><Size>10</Size></Contents><Contents><Key>_keyfront/control/2-b&amp;c.json</Key></Contents><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(
            parse_keys(xml).unwrap(),
            vec!["_keyfront/control/1-a.json".to_owned(), "_keyfront/control/2-b&c.json".to_owned()]
        );
        assert!(parse_keys(b"<a><Key>x</b>").is_err());
    }
}
