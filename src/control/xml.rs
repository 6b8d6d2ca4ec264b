//! CloudFront's REST-XML as a tree of elements: requests are read into it
//! whatever their member order, empty-element spelling or entities, and a
//! stored configuration is written back from it exactly, elements the
//! control plane does not know included (a client that reads back what it
//! wrote must find no difference).

use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// CloudFront's XML namespace, on the root of every body.
pub const NAMESPACE: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";

/// Bodies nest no deeper than this (a DistributionConfig needs about 8).
const MAX_DEPTH: usize = 32;

/// An element: its name, its text (for a leaf) and its child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Element>,
}

/// Why a body is not XML this API reads.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(String);

impl Element {
    pub fn new(name: &str) -> Self {
        Element {
            name: name.to_owned(),
            ..Element::default()
        }
    }

    /// A leaf holding `text`.
    pub fn leaf(name: &str, text: impl Into<String>) -> Self {
        Element {
            name: name.to_owned(),
            text: text.into(),
            children: Vec::new(),
        }
    }

    /// This element with `child` appended.
    pub fn with(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find(|child| child.name == name)
    }

    /// The text of the child named `name`, if there is one.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|child| child.text.as_str())
    }

    /// The element at `path` (child names, one per level).
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |element, name| element.child(name))
    }

    /// The members of a list container (`<Quantity>` and `<Items>`).
    pub fn items(&self) -> impl Iterator<Item = &Element> {
        self.child("Items").into_iter().flat_map(|items| items.children.iter())
    }

    /// Adds `child` unless a child of its name is there already.
    pub fn ensure(&mut self, child: Element) -> &mut Element {
        let index = match self.children.iter().position(|existing| existing.name == child.name) {
            Some(index) => index,
            None => {
                self.children.push(child);
                self.children.len() - 1
            }
        };
        &mut self.children[index]
    }

    /// Parses `body`, whose root must be named `root`.
    pub fn parse(body: &[u8], root: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_reader(body);
        let mut open: Vec<Element> = Vec::new();
        let mut document: Option<Element> = None;
        loop {
            let event = reader.read_event().map_err(|e| XmlError(e.to_string()))?;
            let text = match event {
                Event::Start(_) | Event::Empty(_) if document.is_some() => {
                    return Err(XmlError("a second root element".into()));
                }
                Event::Start(start) | Event::Empty(start) if open.len() >= MAX_DEPTH => {
                    return Err(XmlError(format!(
                        "nested deeper than {MAX_DEPTH} at <{}>",
                        String::from_utf8_lossy(start.name().as_ref())
                    )));
                }
                Event::Start(start) => {
                    open.push(Element::new(element_name(start.local_name().as_ref())?));
                    continue;
                }
                Event::Empty(start) => {
                    let element = Element::new(element_name(start.local_name().as_ref())?);
                    match open.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => document = Some(element),
                    }
                    continue;
                }
                Event::End(_) => {
                    let mut element = open.pop().ok_or_else(|| XmlError("an end tag without a start".into()))?;
                    if !element.children.is_empty() {
                        // Between child elements there is only layout.
                        element.text.clear();
                    }
                    match open.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => document = Some(element),
                    }
                    continue;
                }
                Event::Text(text) => text.xml10_content().map_err(|e| XmlError(e.to_string()))?.into_owned(),
                // Line ends are normalised in CDATA as in text (XML 1.0, 2.11).
                Event::CData(data) => data
                    .decode()
                    .map_err(|e| XmlError(e.to_string()))?
                    .replace("\r\n", "\n")
                    .replace('\r', "\n"),
                Event::GeneralRef(reference) => match reference.resolve_char_ref().map_err(|e| XmlError(e.to_string()))? {
                    Some(character) => character.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| XmlError(e.to_string()))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                },
                Event::Eof => {
                    return match (document, open.is_empty()) {
                        (Some(element), true) => finish(element, root),
                        _ => Err(XmlError("the document ended early".into())),
                    };
                }
                Event::DocType(_) => return Err(XmlError("document types are not accepted".into())),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
            };
            if let Some(bad) = text.chars().find(|c| !allowed_in_xml(*c)) {
                return Err(XmlError(format!("the character U+{:04X} is not allowed in XML", u32::from(bad))));
            }
            if let Some(current) = open.last_mut() {
                current.text.push_str(&text);
            } else if !text.trim().is_empty() {
                return Err(XmlError("text outside the root element".into()));
            }
        }
    }

    /// The document: this element as the root, in CloudFront's namespace.
    pub fn to_document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.write(&mut out, Some(NAMESPACE));
        out
    }

    fn write(&self, out: &mut String, namespace: Option<&str>) {
        out.push('<');
        out.push_str(&self.name);
        if let Some(namespace) = namespace {
            out.push_str(&format!(" xmlns=\"{namespace}\""));
        }
        out.push('>');
        if self.children.is_empty() {
            // A carriage return written as itself would read back as a line feed.
            out.push_str(&escape(self.text.as_str()).replace('\r', "&#13;"));
        }
        for child in &self.children {
            child.write(out, None);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// An element's name, if it is one this API could use: a letter or `_`,
/// then letters, digits, `.`, `-` and `_` (quick-xml reads `<\t/>` as an
/// element with an empty name, which could not be written back).
fn element_name(raw: &[u8]) -> Result<&str, XmlError> {
    let name = std::str::from_utf8(raw).map_err(|_| XmlError("an element name is not UTF-8".into()))?;
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        Ok(name)
    } else {
        Err(XmlError(format!("{name:?} is not an element name")))
    }
}

/// XML 1.0's characters (2.2): no C0 control but tab, line feed and
/// carriage return, no U+FFFE or U+FFFF.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

fn finish(element: Element, root: &str) -> Result<Element, XmlError> {
    if element.name == root {
        Ok(element)
    } else {
        Err(XmlError(format!("expected <{root}>, found <{}>", element.name)))
    }
}

/// A list container: `<name><Quantity>n</Quantity><Items>members</Items></name>`
/// (no `Items` when empty, as CloudFront writes it).
pub fn list(name: &str, members: Vec<Element>) -> Element {
    let mut container = Element::new(name).with(Element::leaf("Quantity", members.len().to_string()));
    if !members.is_empty() {
        container.children.push(Element {
            name: "Items".into(),
            text: String::new(),
            children: members,
        });
    }
    container
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_empty_spellings_entities_and_member_order_read_alike() {
        let boto = br#"<PublicKeyConfig xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><CallerReference>a</CallerReference><Name>k</Name><EncodedKey>-----BEGIN&#xA;x</EncodedKey><Comment /></PublicKeyConfig>"#;
        let go = b"<?xml version=\"1.0\"?>\n<PublicKeyConfig><Comment></Comment><EncodedKey>-----BEGIN\nx</EncodedKey>\n  <Name>k</Name><CallerReference>a</CallerReference></PublicKeyConfig>";
        let (boto, go) = (
            Element::parse(boto, "PublicKeyConfig").unwrap(),
            Element::parse(go, "PublicKeyConfig").unwrap(),
        );
        for name in ["CallerReference", "Name", "EncodedKey", "Comment"] {
            assert_eq!(boto.text_of(name), go.text_of(name), "{name}");
        }
        assert_eq!(boto.text_of("EncodedKey"), Some("-----BEGIN\nx"));
        let round = Element::parse(boto.to_document().as_bytes(), "PublicKeyConfig").unwrap();
        assert_eq!(round, boto, "what is written reads back the same");
    }

    #[test]
    fn hostile_documents_are_refused() {
        let deep = "<A>".repeat(100) + &"</A>".repeat(100);
        for (body, why) in [
            (deep.as_str(), "nested"),
            ("<!DOCTYPE x [<!ENTITY e \"boom\">]><A>&e;</A>", "document types"),
            ("<A>&e;</A>", "unknown entity"),
            ("<A><B></A>", "expected `</B>`, but `</A>` was found"),
            ("<A>", "ended early"),
            ("<B></B>", "expected <A>"),
            ("<A></A>tail", "outside"),
        ] {
            let error = Element::parse(body.as_bytes(), "A").unwrap_err().to_string();
            assert!(error.starts_with("malformed XML: ") && error.contains(why), "{body}: {error}");
        }
        let escaped = Element::leaf("A", "<&>\"'\r\n").to_document();
        assert_eq!(Element::parse(escaped.as_bytes(), "A").unwrap().text, "<&>\"'\r\n");
        for body in [
            "<A>a\u{0}b</A>",
            "<A><![CDATA[\u{1}]]></A>",
            "<A>&#1;</A>",
            "<A><\t/></A>",
            "<A><i/\ton/></A>",
            "<A><1b></1b></A>",
        ] {
            assert!(Element::parse(body.as_bytes(), "A").is_err(), "{body:?}");
        }
        let cdata = Element::parse(b"<A><![CDATA[x\r\ny\rz]]></A>", "A").unwrap();
        assert_eq!(cdata.text, "x\ny\nz", "line ends normalised in CDATA too");
    }
}
