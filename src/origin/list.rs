//! Small requests to a bucket for the fleet's control log: listing the keys
//! under a prefix (ListObjectsV2), and reading or writing a small object.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use quick_xml::events::Event;

use super::{FetchError, Origin, OriginClient, OriginResponse};

/// The largest listing or control object read (a listing of 1,000 keys is
/// about 300 KB).
const MAX_SMALL_BODY_BYTES: usize = 1 << 20;

/// What S3 leaves unescaped in a query value; everything else is `%XX`, as
/// SigV4's canonical query string has it.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The answer to reading a small object.
#[derive(Debug, PartialEq, Eq)]
pub enum SmallObject {
    /// Its bytes.
    Found(Vec<u8>),
    /// A definite answer that is not the object (it is gone, refused, or
    /// larger than a small object may be): reading it again will not help.
    Unusable(String),
}

/// One page of a listing: its keys in order, and the token of the next
/// page when there is one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

impl OriginResponse<'_> {
    /// The whole body; `None` past `limit` bytes.
    pub async fn read_small_body(&mut self, limit: usize) -> Result<Option<Vec<u8>>, FetchError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

impl OriginClient {
    /// A page (up to 1,000) of the keys under the bucket-relative `prefix`
    /// that sort after `after`, in order; `continuation` is the previous
    /// page's `next`.
    pub async fn list_keys(&self, origin: &Origin, prefix: &str, after: &str, continuation: Option<&str>) -> Result<KeyPage, FetchError> {
        let root = if origin.path_style {
            format!("/{}", origin.bucket)
        } else {
            String::new()
        };
        // In SigV4's order of query names.
        let token = continuation.map_or(String::new(), |token| {
            format!("continuation-token={}&", utf8_percent_encode(token, QUERY_VALUE))
        });
        let path = format!(
            "{root}/?{token}list-type=2&prefix={}&start-after={}",
            utf8_percent_encode(prefix, QUERY_VALUE),
            utf8_percent_encode(after, QUERY_VALUE)
        );
        let mut response = self.send(origin, "GET", &path, &[]).await?;
        let body = response.read_small_body(MAX_SMALL_BODY_BYTES).await?;
        match (response.status(), body) {
            (200, Some(body)) => parse_keys(&body),
            (status, _) => Err(FetchError::Failed(format!("listing {prefix} answered {status}"))),
        }
    }

    /// The object at bucket-relative `key`, if it is there and small.
    pub async fn get_small(&self, origin: &Origin, key: &str) -> Result<SmallObject, FetchError> {
        let path = object_path(origin, key)?;
        let mut response = self.send(origin, "GET", &path, &[]).await?;
        let body = response.read_small_body(MAX_SMALL_BODY_BYTES).await?;
        Ok(match (response.status(), body) {
            (200, Some(body)) => SmallObject::Found(body),
            (200, None) => SmallObject::Unusable(format!("larger than {MAX_SMALL_BODY_BYTES} bytes")),
            (status, _) if status < 500 => SmallObject::Unusable(format!("answered {status}")),
            (status, _) => return Err(FetchError::Failed(format!("reading {key} answered {status}"))),
        })
    }

    /// Writes `body` as the object at bucket-relative `key`.
    pub async fn put_small(&self, origin: &Origin, key: &str, content_type: &str, body: Bytes) -> Result<(), FetchError> {
        let path = object_path(origin, key)?;
        let mut response = self.put(origin, &path, &[("content-type", content_type)], body).await?;
        let _ = response.read_small_body(MAX_SMALL_BODY_BYTES).await;
        match response.status() {
            200 => Ok(()),
            status => Err(FetchError::Failed(format!("writing {key} answered {status}"))),
        }
    }
}

fn object_path(origin: &Origin, key: &str) -> Result<String, FetchError> {
    origin
        .key_path(&format!("/{key}"))
        .ok_or_else(|| FetchError::Failed(format!("{key:?} is not an object key")))
}

/// The `<Key>` of every `<Contents>` in a ListObjectsV2 answer, and its
/// `<NextContinuationToken>` when `<IsTruncated>` says there is more.
fn parse_keys(xml: &[u8]) -> Result<KeyPage, FetchError> {
    let malformed = |error: &dyn std::fmt::Display| FetchError::Failed(format!("a listing: {error}"));
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut page = KeyPage::default();
    let mut truncated = false;
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) if matches!(start.name().as_ref(), b"Key" | b"NextContinuationToken" | b"IsTruncated") => {
                let text = reader.read_text(start.name()).map_err(|e| malformed(&e))?;
                let text = text.decode().map_err(|e| malformed(&e))?;
                let text = quick_xml::escape::unescape(&text).map_err(|e| malformed(&e))?.into_owned();
                match start.name().as_ref() {
                    b"Key" => page.keys.push(text),
                    b"IsTruncated" => truncated = text == "true",
                    _ => page.next = Some(text),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !truncated {
        page.next = None;
    } else if page.next.as_deref().is_none_or(str::is_empty) {
        return Err(malformed(&"truncated without a continuation token"));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::parse_keys;

    #[test]
    fn keys_come_from_contents_in_order() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>media</Name><Prefix>_keyfront/control/</Prefix><KeyCount>2</KeyCount><Contents><Key>_keyfront/control/1-a.json</Key><Size>10</Size></Contents><Contents><Key>_keyfront/control/2-b&amp;c.json</Key></Contents><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(
            parse_keys(xml).unwrap().keys,
            vec!["_keyfront/control/1-a.json".to_owned(), "_keyfront/control/2-b&c.json".to_owned()]
        );
        assert_eq!(parse_keys(xml).unwrap().next, None);
        assert!(parse_keys(b"<a><Key>x</b>").is_err());
        let truncated = b"<ListBucketResult><Contents><Key>k</Key></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>t+1/=</NextContinuationToken></ListBucketResult>";
        assert_eq!(parse_keys(truncated).unwrap().next.as_deref(), Some("t+1/="));
        let endless = b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(parse_keys(endless).is_err(), "a truncated page with no token would repeat forever");
    }
}
