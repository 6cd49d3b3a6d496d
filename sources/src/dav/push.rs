//! The way back for DAV: `restore --to davs://…` recreates each collection
//! (MKCOL with the address book's properties, MKCALENDAR with the
//! calendar's) below the account's home set, or uses the collection the URL
//! names, and PUTs each item. A new item is sent with `If-None-Match: *`, so
//! nothing the server holds is replaced unless `--overwrite` says so; no
//! item is ever deleted.

use std::collections::HashMap;

use lifeboat_engine::format::extra::Extra;
use lifeboat_engine::format::tags;
use lifeboat_engine::restore::Overwrite;
use lifeboat_engine::source::{
    CollectionSink, ItemSink, PushCollection, PushItem, Pushed, SourceError, SourceKind,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::StatusCode;

use super::xml::{APPLE_ICAL, CALDAV, CARDDAV};
use super::{CollectionKind, DavSource};

/// What stays unescaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// A collection on the server, open for PUTs.
struct DavCollection<'a> {
    source: &'a DavSource,
    href: String,
    kind: CollectionKind,
    /// Items already there: name to (href, last modified).
    existing: HashMap<Vec<u8>, (String, i64)>,
}

#[async_trait::async_trait]
impl ItemSink for DavSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Dav
    }

    fn display(&self) -> String {
        self.url().display()
    }

    async fn open_collection(
        &self,
        collection: &PushCollection,
    ) -> Result<Box<dyn CollectionSink + '_>, SourceError> {
        let kind = CollectionKind::from_extra(&collection.extra);
        let wanted = match kind {
            CollectionKind::AddressBook => "addressbook",
            CollectionKind::Calendar => "calendar",
        };
        let found = self.discover().await?;
        let href = match (found.collection, found.collection_kind) {
            (Some(href), Some(k)) if k == wanted => href,
            (Some(href), Some(k)) => {
                return Err(SourceError::Failed(format!(
                    "{href} is a {k}, and this collection is a {wanted}; give the account's URL to create one"
                )))
            }
            _ => {
                let homes = match kind {
                    CollectionKind::AddressBook => &found.addressbook_homes,
                    CollectionKind::Calendar => &found.calendar_homes,
                };
                let home = homes.iter().next().ok_or_else(|| {
                    SourceError::Failed(format!("the server offers no {wanted} home to create one in"))
                })?;
                let name = collection
                    .path
                    .last()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_else(|| wanted.to_string());
                let href = format!(
                    "{}/{}/",
                    home.trim_end_matches('/'),
                    utf8_percent_encode(&name, SEGMENT)
                );
                self.create_if_missing(&href, kind, &collection.extra).await?;
                href
            }
        };
        let existing = self
            .list_items(&href, kind)
            .await?
            .into_iter()
            .filter_map(|item| {
                let at = item.extra.get(tags::ITEM_HREF)?;
                Some((
                    item.name,
                    (String::from_utf8_lossy(at).into_owned(), item.mtime),
                ))
            })
            .collect();
        Ok(Box::new(DavCollection {
            source: self,
            href,
            kind,
            existing,
        }))
    }
}

impl DavSource {
    /// Creates the collection at `href` with its properties unless it is
    /// there.
    async fn create_if_missing(
        &self,
        href: &str,
        kind: CollectionKind,
        extra: &Extra,
    ) -> Result<(), SourceError> {
        let probe = self
            .http()
            .request("PROPFIND", href, &[("Depth", "0")], b"")
            .await?;
        match probe.0 {
            s if s.is_success() => return Ok(()),
            StatusCode::NOT_FOUND => {}
            s => self.http().check("PROPFIND", s, &probe.1.url)?,
        }
        let text = |tag| {
            extra.get(tag).map(|v| {
                quick_xml::escape::escape(String::from_utf8_lossy(v).as_ref()).into_owned()
            })
        };
        let mut props = String::new();
        if let Some(name) = text(tags::COLLECTION_NAME) {
            props.push_str(&format!("<d:displayname>{name}</d:displayname>"));
        }
        let (method, body) = match kind {
            CollectionKind::AddressBook => {
                if let Some(d) = text(tags::COLLECTION_DESCRIPTION) {
                    props.push_str(&format!(
                        "<c:addressbook-description>{d}</c:addressbook-description>"
                    ));
                }
                (
                    "MKCOL",
                    format!(
                        r#"<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="DAV:" xmlns:c="{CARDDAV}"><d:set><d:prop><d:resourcetype><d:collection/><c:addressbook/></d:resourcetype>{props}</d:prop></d:set></d:mkcol>"#
                    ),
                )
            }
            CollectionKind::Calendar => {
                if let Some(d) = text(tags::COLLECTION_DESCRIPTION) {
                    props.push_str(&format!(
                        "<c:calendar-description>{d}</c:calendar-description>"
                    ));
                }
                if let Some(color) = text(tags::COLLECTION_COLOR) {
                    props.push_str(&format!("<a:calendar-color>{color}</a:calendar-color>"));
                }
                if let Some(comps) = text(tags::COLLECTION_COMPONENTS) {
                    props.push_str("<c:supported-calendar-component-set>");
                    for comp in comps.split(',').filter(|c| !c.is_empty()) {
                        props.push_str(&format!(r#"<c:comp name="{comp}"/>"#));
                    }
                    props.push_str("</c:supported-calendar-component-set>");
                }
                (
                    "MKCALENDAR",
                    format!(
                        r#"<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="{CALDAV}" xmlns:a="{APPLE_ICAL}"><d:set><d:prop>{props}</d:prop></d:set></c:mkcalendar>"#
                    ),
                )
            }
        };
        let headers = [("Content-Type", "application/xml; charset=utf-8")];
        let (status, answer) = self
            .http()
            .request(method, href, &headers, body.as_bytes())
            .await?;
        self.http().check(method, status, &answer.url)
    }
}

#[async_trait::async_trait]
impl CollectionSink for DavCollection<'_> {
    fn location(&self) -> String {
        self.href.clone()
    }

    async fn put(
        &self,
        item: PushItem<'_>,
        body: &[u8],
        overwrite: Overwrite,
    ) -> Result<Pushed, SourceError> {
        let http = self.source.http();
        let existing = self.existing.get(item.name);
        let href = match existing {
            Some((href, _)) => href.clone(),
            None => format!(
                "{}{}",
                self.href,
                utf8_percent_encode(&String::from_utf8_lossy(item.name), SEGMENT)
            ),
        };
        let replace = match (existing, overwrite) {
            (None, _) => false,
            (Some(_), Overwrite::Never) => return Ok(Pushed::Kept),
            (Some(_), Overwrite::Always) => true,
            (Some((_, modified)), Overwrite::IfNewer) => {
                if item.mtime <= *modified {
                    return Ok(Pushed::Kept);
                }
                true
            }
            (Some(_), Overwrite::IfChanged) => {
                let (status, answer) = http.request("GET", &href, &[], b"").await?;
                http.check("GET", status, &answer.url)?;
                if answer.body == body {
                    return Ok(Pushed::Kept);
                }
                true
            }
        };
        let content_type = match self.kind {
            CollectionKind::AddressBook => "text/vcard; charset=utf-8",
            CollectionKind::Calendar => "text/calendar; charset=utf-8",
        };
        let mut headers = vec![("Content-Type", content_type)];
        if !replace {
            headers.push(("If-None-Match", "*"));
        }
        let (status, answer) = http.request("PUT", &href, &headers, body).await?;
        match status {
            StatusCode::PRECONDITION_FAILED if !replace => Ok(Pushed::Kept),
            s if s.is_success() => Ok(if replace {
                Pushed::Replaced
            } else {
                Pushed::Created
            }),
            s => {
                http.check("PUT", s, &answer.url)?;
                Err(SourceError::Failed(format!(
                    "PUT {href}: the server answered {s}"
                )))
            }
        }
    }
}
