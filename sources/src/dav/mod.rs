//! CardDAV (RFC 6352) and CalDAV (RFC 4791) accounts as a source.
//!
//! Discovery: the URL's path, or for a bare host the well-known URIs
//! (RFC 6764), gives the user's principal (`current-user-principal`), whose
//! `addressbook-home-set` and `calendar-home-set` list the collections.
//! Listing: one `PROPFIND` (depth 1) per collection for every item's ETag.
//! Fetching: `addressbook-multiget` / `calendar-multiget` reports, a batch of
//! items per request, the bodies taken as served.

mod discover;
pub mod http;
mod push;
pub mod xml;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use lifeboat_engine::format::extra::Extra;
use lifeboat_engine::format::tags;
use lifeboat_engine::source::{
    Collection, FetchedItem, ItemEntry, ItemSource, PreviousState, SourceError, SourceRoot,
    SourceTraffic,
};
use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

use crate::url::SourceUrl;
use discover::Discovery;
use http::Http;
use xml::{Response, APPLE_ICAL, CALDAV, CALENDARSERVER, CARDDAV, DAV};

/// A CardDAV/CalDAV account.
pub struct DavSource {
    url: SourceUrl,
    http: Http,
    /// Where discovery led this run (or the parent's record of it).
    known: std::sync::Mutex<Option<Discovery>>,
}

impl DavSource {
    /// The account's URL.
    pub fn url(&self) -> &SourceUrl {
        &self.url
    }

    /// The account's HTTP client.
    pub(crate) fn http(&self) -> &Http {
        &self.http
    }
}

/// What a collection holds, which decides its multiget and its items' type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CollectionKind {
    AddressBook,
    Calendar,
}

impl CollectionKind {
    pub(crate) fn from_extra(extra: &Extra) -> Self {
        match extra.get(tags::COLLECTION_KIND) {
            Some(b"calendar") => CollectionKind::Calendar,
            _ => CollectionKind::AddressBook,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            CollectionKind::AddressBook => ".vcf",
            CollectionKind::Calendar => ".ics",
        }
    }

    /// True when `body` has the shape of this kind's items.
    fn well_formed(self, body: &[u8]) -> bool {
        let (begin, end): (&[u8], &[u8]) = match self {
            CollectionKind::AddressBook => (b"BEGIN:VCARD", b"END:VCARD"),
            CollectionKind::Calendar => (b"BEGIN:VCALENDAR", b"END:VCALENDAR"),
        };
        let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        let trimmed = text.trim_ascii();
        std::str::from_utf8(trimmed).is_ok()
            && trimmed.len() >= begin.len() + end.len()
            && trimmed[..begin.len()].eq_ignore_ascii_case(begin)
            && trimmed[trimmed.len() - end.len()..].eq_ignore_ascii_case(end)
    }
}

impl DavSource {
    /// A source for `url`, signing in with `password`; `ca_file` adds a
    /// certificate authority to the system's.
    ///
    /// # Errors
    /// As [`Http::new`].
    pub fn new(
        url: SourceUrl,
        password: Zeroizing<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let http = Http::new(&url, password, ca_file)?;
        Ok(DavSource {
            url,
            http,
            known: std::sync::Mutex::new(None),
        })
    }

    async fn propfind(
        &self,
        href: &str,
        depth: &str,
        props: &[(&str, &str)],
    ) -> Result<(Vec<Response>, url::Url), SourceError> {
        let answer = self
            .http
            .dav("PROPFIND", href, depth, &xml::propfind(props))
            .await?;
        let (responses, _) = xml::multistatus(&answer.body)
            .map_err(|e| SourceError::Failed(format!("PROPFIND {href}: {e}")))?;
        Ok((responses, answer.url))
    }

    /// The hrefs whose children are the collections: the home sets found
    /// from the URL, or the URL itself when it names a collection.
    /// The path of `href` on this origin (refusing another origin).
    fn path_of(&self, href: &str) -> Result<String, SourceError> {
        Ok(self.http.resolve(href)?.path().to_string())
    }

    /// Every collection below the homes, with its properties.
    async fn list_collections(
        &self,
        cached: Option<Discovery>,
    ) -> Result<Vec<(String, Extra)>, SourceError> {
        // Where the last run's discovery led, first: one request instead of
        // four when it still holds.
        if let Some(found) = cached {
            match self.list_collections_in(&found).await {
                Ok(listed) => {
                    *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
                    return Ok(listed);
                }
                Err(e @ SourceError::Auth(_)) => return Err(e),
                Err(_) => {}
            }
        }
        let found = self.discover().await?;
        let listed = self.list_collections_in(&found).await?;
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
        Ok(listed)
    }

    /// Every collection in `found`'s homes, with its properties.
    async fn list_collections_in(
        &self,
        found: &Discovery,
    ) -> Result<Vec<(String, Extra)>, SourceError> {
        let props = [
            (DAV, "resourcetype"),
            (DAV, "displayname"),
            (DAV, "sync-token"),
            (CALENDARSERVER, "getctag"),
            (CARDDAV, "addressbook-description"),
            (CALDAV, "calendar-description"),
            (CALDAV, "supported-calendar-component-set"),
            (APPLE_ICAL, "calendar-color"),
        ];
        let mut listed: HashMap<String, Extra> = HashMap::new();
        let (homes, depth) = Self::homes_of(found);
        for home in homes {
            let (responses, _) = self.propfind(&home, depth, &props).await?;
            for r in responses {
                let Some(kind) = collection_kind(&r) else {
                    continue;
                };
                let path = self.path_of(&r.href)?;
                let mut extra = Extra::new();
                extra.set(tags::COLLECTION_KIND, kind.as_bytes().to_vec());
                extra.set(tags::COLLECTION_HREF, path.clone().into_bytes());
                let text = |name| r.prop_text(name).map(String::into_bytes);
                if let Some(v) = text("displayname") {
                    extra.set(tags::COLLECTION_NAME, v);
                }
                if let Some(v) =
                    text("addressbook-description").or_else(|| text("calendar-description"))
                {
                    extra.set(tags::COLLECTION_DESCRIPTION, v);
                }
                if let Some(v) = text("calendar-color") {
                    extra.set(tags::COLLECTION_COLOR, v);
                }
                if let Some(v) = text("sync-token") {
                    extra.set(tags::COLLECTION_SYNC_STATE, v);
                }
                if let Some(v) = text("getctag") {
                    extra.set(tags::COLLECTION_CTAG, v);
                }
                if let Some(set) = r.prop("supported-calendar-component-set") {
                    let comps: Vec<&str> = set
                        .all("comp")
                        .filter_map(|c| c.attribute("name"))
                        .collect();
                    if !comps.is_empty() {
                        extra.set(tags::COLLECTION_COMPONENTS, comps.join(",").into_bytes());
                    }
                }
                listed.insert(path, extra);
            }
        }
        let mut collections: Vec<_> = listed.into_iter().collect();
        collections.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(collections)
    }

    /// The items of the collection at `path`: name, ETag, time, href.
    pub(crate) async fn list_items(
        &self,
        path: &str,
        kind: CollectionKind,
    ) -> Result<Vec<ItemEntry>, SourceError> {
        let props = [
            (DAV, "resourcetype"),
            (DAV, "getetag"),
            (DAV, "getlastmodified"),
            (DAV, "getcontentlength"),
        ];
        let (responses, _) = self.propfind(path, "1", &props).await?;
        let mut items = Vec::new();
        for r in responses {
            let href = self.path_of(&r.href)?;
            let is_collection = r
                .prop("resourcetype")
                .is_some_and(|t| t.child("collection").is_some());
            if href.trim_end_matches('/') == path.trim_end_matches('/')
                || is_collection
                || r.failed()
            {
                continue;
            }
            items.push(item_entry(&r, href, kind));
        }
        Ok(unique_names(items))
    }

    /// The collection at `path` brought up to date from `previous` (its
    /// items at `token`) with a `sync-collection` report (RFC 6578): only
    /// the members changed or removed since come back. The new token too.
    async fn sync_changes(
        &self,
        path: &str,
        token: &str,
        kind: CollectionKind,
        previous: Vec<ItemEntry>,
    ) -> Result<(Vec<ItemEntry>, Option<String>), SourceError> {
        let answer = self
            .http
            .dav("REPORT", path, "0", &xml::sync_collection(token))
            .await?;
        let (responses, new_token) = xml::multistatus(&answer.body)
            .map_err(|e| SourceError::Failed(format!("REPORT {path}: {e}")))?;
        let mut by_href: std::collections::BTreeMap<String, ItemEntry> = previous
            .into_iter()
            .filter_map(|item| {
                let href = String::from_utf8_lossy(item.extra.get(tags::ITEM_HREF)?).into_owned();
                Some((href, item))
            })
            .collect();
        for r in responses {
            let href = self.path_of(&r.href)?;
            if href.trim_end_matches('/') == path.trim_end_matches('/') {
                continue;
            }
            if r.failed() {
                by_href.remove(&href);
            } else {
                by_href.insert(href.clone(), item_entry(&r, href, kind));
            }
        }
        Ok((unique_names(by_href.into_values().collect()), new_token))
    }
}

#[async_trait::async_trait]
impl ItemSource for DavSource {
    fn root(&self) -> SourceRoot {
        self.url.root()
    }

    async fn collections(
        &self,
        previous: &dyn PreviousState,
    ) -> Result<Vec<Collection>, SourceError> {
        let cached = previous
            .account()
            .await
            .and_then(|extra| Discovery::from_record(extra.get(tags::ACCOUNT_HOMES)?))
            // Only a record of the same user and starting point.
            .filter(|found| found.start == self.discovery_start());
        let mut collections = Vec::new();
        for (path, mut extra) in self.list_collections(cached).await? {
            let kind = CollectionKind::from_extra(&extra);
            let components: Vec<Vec<u8>> = path
                .split('/')
                .filter(|c| !c.is_empty())
                .map(|c| percent_decode_str(c).collect::<Vec<u8>>())
                .collect();
            let before = previous.collection(&components).await;
            let old_token = before.as_ref().and_then(|b| {
                b.extra
                    .get(tags::COLLECTION_SYNC_STATE)
                    .map(|t| String::from_utf8_lossy(t).into_owned())
            });
            let items = match (before, old_token) {
                // The token has not moved: nothing changed, nothing to ask.
                (Some(before), _) if unchanged(&before.extra, &extra) => before.items,
                // Only what changed since the parent's token.
                (Some(before), Some(token)) if extra.get(tags::COLLECTION_SYNC_STATE).is_some() => {
                    match self.sync_changes(&path, &token, kind, before.items).await {
                        Ok((items, new_token)) => {
                            if let Some(t) = new_token {
                                extra.set(tags::COLLECTION_SYNC_STATE, t.into_bytes());
                            }
                            items
                        }
                        Err(e @ SourceError::Auth(_)) => return Err(e),
                        // An expired token, or a server that lost its
                        // history: the full listing.
                        Err(_) => self.list_items(&path, kind).await?,
                    }
                }
                _ => self.list_items(&path, kind).await?,
            };
            collections.push(Collection {
                path: components,
                extra,
                items,
            });
        }
        Ok(collections)
    }

    async fn fetch(
        &self,
        collection: &Collection,
        wanted: &[usize],
    ) -> Result<Vec<FetchedItem>, SourceError> {
        let kind = CollectionKind::from_extra(&collection.extra);
        let href_of = |i: usize| {
            collection
                .items
                .get(i)
                .and_then(|item| item.extra.get(tags::ITEM_HREF))
                .and_then(|h| std::str::from_utf8(h).ok())
        };
        let mut by_href: HashMap<&str, usize> = HashMap::new();
        for &i in wanted {
            if let Some(href) = href_of(i) {
                by_href.insert(href, i);
            }
        }
        let hrefs: Vec<&str> = by_href.keys().copied().collect();
        let collection_href = collection
            .extra
            .get(tags::COLLECTION_HREF)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| SourceError::Failed("collection without an href".into()))?;
        let body = xml::multiget(kind == CollectionKind::Calendar, &hrefs);
        let answer = self.http.dav("REPORT", collection_href, "1", &body).await?;
        let (responses, _) = xml::multistatus(&answer.body)
            .map_err(|e| SourceError::Failed(format!("REPORT {collection_href}: {e}")))?;
        let data_name = match kind {
            CollectionKind::AddressBook => "address-data",
            CollectionKind::Calendar => "calendar-data",
        };
        let mut fetched = Vec::new();
        for r in responses {
            let Ok(path) = self.path_of(&r.href) else {
                continue;
            };
            let (Some(&index), Some(data)) = (by_href.get(path.as_str()), r.prop(data_name)) else {
                continue;
            };
            let body = data.text.clone().into_bytes();
            fetched.push(FetchedItem {
                index,
                malformed: !kind.well_formed(&body),
                body,
            });
        }
        Ok(fetched)
    }

    fn traffic(&self) -> SourceTraffic {
        self.http.traffic()
    }

    fn account_extra(&self) -> Extra {
        let mut extra = Extra::new();
        if let Some(found) = &*self.known.lock().unwrap_or_else(|p| p.into_inner()) {
            let found = Discovery {
                start: self.discovery_start(),
                collection: found.collection.clone(),
                collection_kind: found.collection_kind,
                addressbook_homes: found.addressbook_homes.clone(),
                calendar_homes: found.calendar_homes.clone(),
            };
            extra.set(tags::ACCOUNT_HOMES, found.record());
        }
        extra
    }

    fn batch_size(&self) -> usize {
        // Multigets of up to 250 items (the engine caps their listed bytes):
        // four requests in flight move a thousand contacts.
        250
    }
}

/// An item as a listing or a sync report gives it.
fn item_entry(r: &Response, href: String, kind: CollectionKind) -> ItemEntry {
    let mtime = r
        .prop_text("getlastmodified")
        .and_then(|t| httpdate::parse_http_date(&t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let version = match r.prop_text("getetag") {
        Some(etag) => etag.into_bytes(),
        // Without an ETag the item cannot be known unchanged: a version no
        // later run repeats fetches it every time.
        None => format!(
            "no-etag:{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )
        .into_bytes(),
    };
    let mut name = item_name(&href);
    if !name.to_ascii_lowercase().ends_with(kind.extension()) {
        name.push_str(kind.extension());
    }
    let mut extra = Extra::new();
    extra.set(tags::ITEM_HREF, href.into_bytes());
    ItemEntry {
        size: r
            .prop_text("getcontentlength")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        name: name.into_bytes(),
        version,
        mtime,
        extra,
    }
}

/// `items` sorted by name, two hrefs that decode to one name told apart.
fn unique_names(mut items: Vec<ItemEntry>) -> Vec<ItemEntry> {
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let mut names = BTreeSet::new();
    for item in &mut items {
        while !names.insert(item.name.clone()) {
            item.name.insert(0, b'_');
        }
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items
}

/// True when the server's token for a collection equals the one the parent
/// snapshot recorded: nothing in it changed (a sync token, else a CTag).
fn unchanged(previous: &Extra, now: &Extra) -> bool {
    match now.get(tags::COLLECTION_SYNC_STATE) {
        Some(token) => previous.get(tags::COLLECTION_SYNC_STATE) == Some(token),
        None => now
            .get(tags::COLLECTION_CTAG)
            .is_some_and(|ctag| previous.get(tags::COLLECTION_CTAG) == Some(ctag)),
    }
}

/// `addressbook` or `calendar` when the response is such a collection.
fn collection_kind(r: &Response) -> Option<&'static str> {
    let types = r.prop("resourcetype")?;
    if types.child("addressbook").is_some() {
        Some("addressbook")
    } else if types.child("calendar").is_some() {
        Some("calendar")
    } else {
        None
    }
}

/// An item's file name: the last segment of its href, percent-decoded,
/// with anything that cannot be a file name replaced.
fn item_name(href: &str) -> String {
    let last = href.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let decoded = percent_decode_str(last)
        .decode_utf8_lossy()
        .replace(['/', '\0'], "_");
    match decoded.as_str() {
        "" | "." | ".." => format!("_{decoded}"),
        _ => decoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_safe_file_names() {
        assert_eq!(item_name("/alice/contacts/abc.vcf"), "abc.vcf");
        assert_eq!(item_name("/a/b%20c%2Fd.ics"), "b c_d.ics");
        assert_eq!(item_name("/a/%2E%2E"), "_..");
        assert_eq!(item_name("/a/.."), "_..");
    }

    #[test]
    fn discovery_records_round_trip_and_refuse_junk() {
        let mut found = Discovery {
            start: "alice /".into(),
            ..Discovery::default()
        };
        found.addressbook_homes.insert("/alice/".into());
        found.calendar_homes.insert("/cal/alice/".into());
        let back = Discovery::from_record(&found.record()).unwrap();
        assert_eq!(back.start, "alice /");
        assert_eq!(back.addressbook_homes, found.addressbook_homes);
        assert_eq!(back.calendar_homes, found.calendar_homes);
        assert!(
            Discovery::from_record(b"start alice /").is_none(),
            "names nothing"
        );
        assert!(Discovery::from_record(b"calendar-home https://evil/").is_none());
        assert!(Discovery::from_record(b"\xff").is_none());
    }

    #[test]
    fn malformed_items_are_recognized() {
        let card = CollectionKind::AddressBook;
        assert!(card.well_formed(b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n"));
        assert!(!card.well_formed(b"<html>oops</html>"));
        assert!(!card.well_formed(b"BEGIN:VCARD\r\nFN:x\r\n"));
        assert!(!card.well_formed(b"BEGIN:VCARD\xff\xfeEND:VCARD"));
        assert!(CollectionKind::Calendar.well_formed(b"BEGIN:VCALENDAR\nEND:VCALENDAR"));
    }
}
