//! Discovery (RFC 6764, RFC 6352 §7, RFC 4791 §6): from the URL's path, or
//! for a bare host the well-known URIs, to the user's principal and its
//! address book and calendar homes; or the one collection the URL names.
//! Where it led is recorded on the account (tag 49), so the next run of the
//! same user and URL lists the homes directly.

use std::collections::BTreeSet;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use lifeboat_engine::source::SourceError;

use super::xml::{Response, CALDAV, CARDDAV, DAV};
use super::{collection_kind, DavSource};

impl DavSource {
    /// The hrefs to list collections in, and the depth to list them at.
    pub(super) fn homes_of(found: &Discovery) -> (Vec<String>, &'static str) {
        if let Some(collection) = &found.collection {
            return (vec![collection.clone()], "0");
        }
        let homes: BTreeSet<String> = found
            .addressbook_homes
            .iter()
            .chain(&found.calendar_homes)
            .cloned()
            .collect();
        (homes.into_iter().collect(), "1")
    }

    /// Discovery from the URL: the collection it names, or the principal's
    /// home sets.
    pub(crate) async fn discover(&self) -> Result<Discovery, SourceError> {
        let starts: Vec<&str> = if self.url.path == "/" {
            vec!["/.well-known/carddav", "/.well-known/caldav", "/"]
        } else {
            vec![self.url.path.as_str()]
        };
        let props = [
            (DAV, "current-user-principal"),
            (DAV, "resourcetype"),
            (CARDDAV, "addressbook-home-set"),
            (CALDAV, "calendar-home-set"),
        ];
        let mut principals = BTreeSet::new();
        let mut found = Discovery::default();
        let mut last_error = None;
        for start in starts {
            // The first start that names a principal or a home is enough:
            // both home sets are asked of the principal.
            if !principals.is_empty()
                || !found.addressbook_homes.is_empty()
                || !found.calendar_homes.is_empty()
            {
                break;
            }
            let (responses, at) = match self.propfind(start, "0", &props).await {
                Ok(found) => found,
                Err(e @ SourceError::Auth(_)) => return Err(e),
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            for r in &responses {
                if let Some(kind) = collection_kind(r) {
                    // The URL names a collection: that one alone.
                    found.collection = Some(self.path_of(&r.href)?);
                    found.collection_kind = Some(kind);
                    return Ok(found);
                }
                self.add_homes(r, &mut found);
                match r
                    .prop("current-user-principal")
                    .and_then(|p| p.child_text("href"))
                {
                    Some(p) => {
                        principals.insert(self.path_of(&p)?);
                    }
                    None if start != "/" && !start.starts_with("/.well-known") => {
                        principals.insert(at.path().to_string());
                    }
                    None => {}
                }
            }
        }
        for principal in principals {
            let (responses, _) = self.propfind(&principal, "0", &props[2..]).await?;
            for r in &responses {
                self.add_homes(r, &mut found);
            }
        }
        if found.addressbook_homes.is_empty() && found.calendar_homes.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                SourceError::Failed(format!(
                    "no address book or calendar found at {}; give the URL of your principal or of a collection",
                    self.url.display()
                ))
            }));
        }
        Ok(found)
    }

    fn add_homes(&self, r: &Response, found: &mut Discovery) {
        found.addressbook_homes.extend(
            hrefs_of(r, "addressbook-home-set")
                .into_iter()
                .flat_map(|h| self.path_of(&h)),
        );
        found.calendar_homes.extend(
            hrefs_of(r, "calendar-home-set")
                .into_iter()
                .flat_map(|h| self.path_of(&h)),
        );
    }
}

impl DavSource {
    /// Who discovered from where: a record made for another user or URL
    /// path is not reused.
    pub(super) fn discovery_start(&self) -> String {
        format!(
            "{} {}",
            utf8_percent_encode(&self.url.user, NON_ALPHANUMERIC),
            self.url.path
        )
    }
}

impl Discovery {
    /// Where discovery led, as recorded on the account's directory (tag 49).
    pub(super) fn record(&self) -> Vec<u8> {
        let mut lines = vec![format!("start {}", self.start)];
        if let Some(c) = &self.collection {
            lines.push(format!(
                "{} {c}",
                self.collection_kind.unwrap_or("collection")
            ));
        }
        lines.extend(
            self.addressbook_homes
                .iter()
                .map(|h| format!("addressbook-home {h}")),
        );
        lines.extend(
            self.calendar_homes
                .iter()
                .map(|h| format!("calendar-home {h}")),
        );
        lines.join("\n").into_bytes()
    }

    /// The record read back; `None` when it names nothing usable.
    pub(super) fn from_record(bytes: &[u8]) -> Option<Discovery> {
        let mut found = Discovery::default();
        for line in std::str::from_utf8(bytes).ok()?.lines() {
            let (kind, href) = line.split_once(' ')?;
            if kind == "start" {
                found.start = href.to_string();
                continue;
            }
            if !href.starts_with('/') {
                return None;
            }
            match kind {
                "addressbook-home" => {
                    found.addressbook_homes.insert(href.to_string());
                }
                "calendar-home" => {
                    found.calendar_homes.insert(href.to_string());
                }
                "addressbook" | "calendar" => {
                    found.collection = Some(href.to_string());
                    found.collection_kind = Some(if kind == "calendar" {
                        "calendar"
                    } else {
                        "addressbook"
                    });
                }
                _ => return None,
            }
        }
        let empty = found.collection.is_none()
            && found.addressbook_homes.is_empty()
            && found.calendar_homes.is_empty();
        (!empty).then_some(found)
    }
}

/// What discovery found.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    /// The user and URL path it started from (`alice /`).
    pub start: String,
    /// The collection the URL names, when it names one.
    pub collection: Option<String>,
    /// Its kind (`addressbook`, `calendar`).
    pub collection_kind: Option<&'static str>,
    /// Where the user's address books live.
    pub addressbook_homes: BTreeSet<String>,
    /// Where the user's calendars live.
    pub calendar_homes: BTreeSet<String>,
}

/// The hrefs of a response's property `name` (a home set).
fn hrefs_of(r: &Response, name: &str) -> Vec<String> {
    r.prop(name)
        .map(|p| {
            p.all("href")
                .map(|h| h.text.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
