//! WebDAV XML: request bodies, and multistatus responses (RFC 4918 §14.16)
//! read into a small element tree.
//!
//! Elements are matched by local name only: the names this client reads
//! (`href`, `getetag`, `address-data`, …) do not collide across the DAV,
//! CardDAV, CalDAV and Apple namespaces. Text is taken as the server sent
//! it, line ends included (no XML end-of-line normalization), so a vCard's
//! CRLFs survive a multiget byte for byte.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One element: its local name, its text, its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (no namespace prefix).
    pub name: String,
    /// Text directly inside it, entity references resolved.
    pub text: String,
    /// Child elements, in document order.
    pub children: Vec<Element>,
    /// Attributes by local name, values unescaped.
    pub attributes: Vec<(String, String)>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The value of the attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the first child named `name`, trimmed.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }
}

/// Parses an XML document into its root element.
///
/// # Errors
/// Malformed XML, as a one-line reason.
pub fn parse(bytes: &[u8]) -> Result<Element, String> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => stack.push(Element {
                name: local(start.local_name().as_ref()),
                attributes: attributes(&start),
                ..Element::default()
            }),
            Event::Empty(empty) => {
                let element = Element {
                    name: local(empty.local_name().as_ref()),
                    attributes: attributes(&empty),
                    ..Element::default()
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(element);
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced XML")?;
                match stack.last_mut() {
                    Some(top) => top.children.push(done),
                    None => return Err("unbalanced XML".into()),
                }
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| format!("XML text: {e}"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| format!("XML CDATA: {e}"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference.decode().map_err(|e| format!("XML entity: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown XML entity &{name};"))?
                            .to_string()
                    }
                    Err(e) => return Err(format!("XML character reference: {e}")),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut document = stack.pop().ok_or("empty XML document")?;
    if !stack.is_empty() {
        return Err("XML document ends inside an element".into());
    }
    match document.children.len() {
        1 => Ok(document.children.remove(0)),
        _ => Err("an XML document has exactly one root element".into()),
    }
}

fn attributes(start: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()?
                .into_owned();
            Some((local(a.key.local_name().as_ref()), value))
        })
        .collect()
}

fn local(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// One `<response>` of a multistatus: its href and the properties that came
/// back with status 200.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The resource's href, as sent (percent-encoded path or absolute URL).
    pub href: String,
    /// The `<prop>` children of every `propstat` whose status is 2xx.
    pub props: Vec<Element>,
    /// The response's own status line, when it has one (a 404 for an item
    /// gone since it was listed).
    pub status: Option<String>,
}

impl Response {
    /// The property named `name`.
    pub fn prop(&self, name: &str) -> Option<&Element> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The trimmed text of the property named `name`, when not empty.
    pub fn prop_text(&self, name: &str) -> Option<String> {
        self.prop(name)
            .map(|p| p.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// True when the response's own status is not 2xx.
    pub fn failed(&self) -> bool {
        self.status.as_deref().is_some_and(|s| !status_ok(s))
    }
}

/// True for an HTTP status line with a 2xx code (`HTTP/1.1 200 OK`).
fn status_ok(line: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
}

/// Reads a `<multistatus>` body.
///
/// # Errors
/// Malformed XML, or a root element that is not `multistatus`.
pub fn multistatus(bytes: &[u8]) -> Result<(Vec<Response>, Option<String>), String> {
    let root = parse(bytes)?;
    if root.name != "multistatus" {
        return Err(format!(
            "expected a multistatus answer, got <{}>",
            root.name
        ));
    }
    let mut responses = Vec::new();
    for r in root.all("response") {
        let Some(href) = r.child_text("href") else {
            continue;
        };
        let mut props = Vec::new();
        for propstat in r.all("propstat") {
            let ok = propstat.child_text("status").is_none_or(|s| status_ok(&s));
            if let (true, Some(prop)) = (ok, propstat.child("prop")) {
                props.extend(prop.children.iter().cloned());
            }
        }
        responses.push(Response {
            href,
            props,
            status: r.child_text("status"),
        });
    }
    Ok((responses, root.child_text("sync-token")))
}

/// The body of a PROPFIND asking for `props`, each `(namespace, name)`.
pub fn propfind(props: &[(&str, &str)]) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>"#,
    );
    for (ns, name) in props {
        body.push_str(&format!(r#"<x:{name} xmlns:x="{ns}"/>"#));
    }
    body.push_str("</d:prop></d:propfind>");
    body
}

/// The body of an `addressbook-multiget` or `calendar-multiget` REPORT for
/// `hrefs`, asking for the ETag and the data.
pub fn multiget(calendar: bool, hrefs: &[&str]) -> String {
    let (ns, report, data) = if calendar {
        (CALDAV, "calendar-multiget", "calendar-data")
    } else {
        (CARDDAV, "addressbook-multiget", "address-data")
    };
    let mut body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><c:{report} xmlns:d="DAV:" xmlns:c="{ns}"><d:prop><d:getetag/><c:{data}/></d:prop>"#
    );
    for href in hrefs {
        body.push_str("<d:href>");
        body.push_str(&quick_xml::escape::escape(*href));
        body.push_str("</d:href>");
    }
    body.push_str(&format!("</c:{report}>"));
    body
}

/// The body of a `sync-collection` REPORT (RFC 6578) from `token`, asking
/// for what a listing gives.
pub fn sync_collection(token: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/><d:getlastmodified/><d:getcontentlength/></d:prop></d:sync-collection>"#,
        quick_xml::escape::escape(token)
    )
}

/// The DAV namespace.
pub const DAV: &str = "DAV:";
/// CardDAV's namespace (RFC 6352).
pub const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
/// CalDAV's namespace (RFC 4791).
pub const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// Apple's iCal namespace (`calendar-color`).
pub const APPLE_ICAL: &str = "http://apple.com/ns/ical/";
/// CalendarServer's namespace (`getctag`).
pub const CALENDARSERVER: &str = "http://calendarserver.org/ns/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistatus_keeps_crlf_and_resolves_references() {
        let body = b"<?xml version=\"1.0\"?>\n<d:multistatus xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:carddav\">\
<d:response><d:href>/a/b%20c.vcf</d:href><d:propstat><d:prop><d:getetag>\"e1\"</d:getetag>\
<c:address-data>BEGIN:VCARD\r\nFN:J&amp;J &#233;\r\nEND:VCARD\r\n</c:address-data></d:prop>\
<d:status>HTTP/1.1 200 OK</d:status></d:propstat><d:propstat><d:prop><d:displayname/></d:prop>\
<d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>\
<d:response><d:href>/a/gone.vcf</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>\
<d:sync-token>http://x/token/2</d:sync-token></d:multistatus>";
        let (responses, token) = multistatus(body).unwrap();
        assert_eq!(token.as_deref(), Some("http://x/token/2"));
        assert_eq!(responses.len(), 2);
        let first = &responses[0];
        assert_eq!(first.href, "/a/b%20c.vcf");
        assert_eq!(first.prop_text("getetag").as_deref(), Some("\"e1\""));
        assert_eq!(
            first.prop("address-data").unwrap().text,
            "BEGIN:VCARD\r\nFN:J&J \u{e9}\r\nEND:VCARD\r\n"
        );
        assert!(first.prop("displayname").is_none(), "404 propstat left out");
        assert!(!first.failed());
        assert!(responses[1].failed());
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(multistatus(b"<d:multistatus xmlns:d=\"DAV:\"><d:response>").is_err());
        assert!(multistatus(b"not xml at all <<<").is_err());
        assert!(multistatus(b"<other/>").is_err());
        assert!(multistatus(b"").is_err());
    }

    #[test]
    fn request_bodies_escape_hrefs() {
        let body = multiget(false, &["/a/x&y.vcf"]);
        assert!(body.contains("<d:href>/a/x&amp;y.vcf</d:href>"), "{body}");
        assert!(body.contains("addressbook-multiget"));
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.name, "addressbook-multiget");
    }
}
