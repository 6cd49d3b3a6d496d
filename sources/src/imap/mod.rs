//! IMAP accounts (RFC 3501) as a source: every mailbox, or those the URL's
//! `?mailbox=` names, each message stored as `<UIDVALIDITY>-<UID>.eml`.
//!
//! A message's body never changes under its UID (RFC 3501 §2.3.1.1), so its
//! version is `UIDVALIDITY-UID`: a later run lists `UID FLAGS INTERNALDATE
//! RFC822.SIZE` for every message (the flags may change, and are recorded
//! again) and downloads only the UIDs the parent snapshot lacks. A new
//! UIDVALIDITY renames every message, so all are downloaded again.

mod connect;
mod push;
pub mod utf7;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use lifeboat_engine::format::extra::Extra;
use lifeboat_engine::format::tags;
use lifeboat_engine::source::{
    Collection, FetchedItem, ItemEntry, ItemSource, PreviousState, SourceError, SourceRoot,
    SourceTraffic,
};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::url::SourceUrl;
use connect::Session;

/// How long one command may take before the source is given up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes of messages one `UID FETCH` asks for, at most (from their sizes).
const FETCH_BYTES: u64 = 16 << 20;

/// An IMAP account.
pub struct ImapSource {
    url: SourceUrl,
    password: Zeroizing<String>,
    ca_file: Option<PathBuf>,
    state: Mutex<State>,
    requests: AtomicU64,
    received: Arc<AtomicU64>,
}

/// The signed-in session and the mailbox it has open.
#[derive(Default)]
struct State {
    session: Option<Session>,
    examined: Option<String>,
}

impl ImapSource {
    /// A source for `url`; nothing connects until the backup lists it.
    pub fn new(url: SourceUrl, password: Zeroizing<String>, ca_file: Option<&Path>) -> Self {
        ImapSource {
            url,
            password,
            ca_file: ca_file.map(Path::to_path_buf),
            state: Mutex::new(State::default()),
            requests: AtomicU64::new(0),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The session, signed in on first use.
    async fn session<'a>(&self, state: &'a mut State) -> Result<&'a mut Session, SourceError> {
        if state.session.is_none() {
            // LOGIN, CAPABILITY, ENABLE (STARTTLS aside).
            self.requests.fetch_add(3, Ordering::Relaxed);
            let session = connect::sign_in(
                &self.url,
                &self.password,
                self.ca_file.as_deref(),
                self.received.clone(),
            )
            .await?;
            state.session = Some(session);
            state.examined = None;
        }
        state
            .session
            .as_mut()
            .ok_or_else(|| SourceError::Failed("IMAP session lost".into()))
    }

    /// Opens `mailbox` read-only (EXAMINE: flags are never changed).
    async fn examine(
        &self,
        state: &mut State,
        mailbox: &str,
    ) -> Result<async_imap::types::Mailbox, SourceError> {
        let session = self.session(state).await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let opened = timed(session.examine(mailbox), &format!("EXAMINE {mailbox}")).await?;
        state.examined = Some(mailbox.to_string());
        Ok(opened)
    }

    /// The mailboxes to back up: names, delimiter, attributes.
    async fn mailboxes(
        &self,
        state: &mut State,
    ) -> Result<Vec<(String, Option<String>, Vec<String>)>, SourceError> {
        let session = self.session(state).await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let names: Vec<_> = timed(
            async {
                session
                    .list(Some(""), Some("*"))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            "LIST",
        )
        .await?;
        let mut found = Vec::new();
        for name in names {
            let attributes: Vec<String> = name.attributes().iter().map(attribute_text).collect();
            if attributes.iter().any(|a| {
                a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
            }) {
                continue;
            }
            let wanted = self.url.mailboxes.is_empty()
                || self
                    .url
                    .mailboxes
                    .iter()
                    .any(|m| m == name.name() || *m == utf7::decode(name.name()));
            if wanted {
                found.push((
                    name.name().to_string(),
                    name.delimiter().map(str::to_string),
                    attributes,
                ));
            }
        }
        for asked in &self.url.mailboxes {
            if !found
                .iter()
                .any(|(n, _, _)| n == asked || utf7::decode(n) == *asked)
            {
                return Err(SourceError::Failed(format!(
                    "no mailbox {asked:?} on the server; `?mailbox=` names one of its mailboxes"
                )));
            }
        }
        found.sort();
        Ok(found)
    }

    /// One mailbox's messages as listed, and its state (UIDVALIDITY,
    /// UIDNEXT, HIGHESTMODSEQ). With the parent's listing of the same
    /// UIDVALIDITY, only what changed is asked for: nothing when CONDSTORE
    /// (RFC 7162) says no message changed and none came or went; else every
    /// message's flags, and dates and sizes of the new ones only.
    async fn list_messages(
        &self,
        state: &mut State,
        mailbox: &str,
        before: Option<Collection>,
    ) -> Result<(MailboxState, Vec<ItemEntry>), SourceError> {
        let opened = self.examine(state, mailbox).await?;
        let validity = opened.uid_validity.ok_or_else(|| {
            SourceError::Failed(format!(
                "mailbox {mailbox:?} has no UIDVALIDITY; the server does not keep UIDs"
            ))
        })?;
        let now = MailboxState {
            validity,
            next: opened.uid_next,
            modseq: opened.highest_modseq,
        };
        if opened.exists == 0 {
            return Ok((now, Vec::new()));
        }
        let before = before.filter(|b| MailboxState::of(&b.extra).validity == validity);
        if let Some(before) = &before {
            let then = MailboxState::of(&before.extra);
            if now.modseq.is_some()
                && then.modseq == now.modseq
                && then.next == now.next
                && before.items.len() == opened.exists as usize
            {
                return Ok((now, before.items.clone()));
            }
        }
        let query = if before.is_some() {
            "(UID FLAGS)"
        } else {
            "(UID FLAGS INTERNALDATE RFC822.SIZE)"
        };
        let session = self.session(state).await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let fetched: Vec<_> = timed(
            async {
                session
                    .uid_fetch("1:*", query)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            &format!("UID FETCH in {mailbox}"),
        )
        .await?;
        let mut known: HashMap<Vec<u8>, ItemEntry> = before
            .map(|b| {
                b.items
                    .into_iter()
                    .map(|i| (i.version.clone(), i))
                    .collect()
            })
            .unwrap_or_default();
        let mut items = Vec::with_capacity(fetched.len());
        let mut new_uids = Vec::new();
        for message in &fetched {
            let Some(uid) = message.uid else { continue };
            let flags: Vec<String> = message
                .flags()
                .filter(|f| !matches!(f, async_imap::types::Flag::Recent))
                .map(|f| flag_text(&f))
                .collect();
            let version = format!("{validity}-{uid}").into_bytes();
            match known.remove(&version) {
                Some(mut item) => {
                    item.extra
                        .set(tags::ITEM_FLAGS, flags.join(" ").into_bytes());
                    items.push(item);
                }
                None if message.internal_date().is_none() => new_uids.push((uid, flags)),
                None => items.push(message_entry(validity, uid, &flags, message)),
            }
        }
        if !new_uids.is_empty() {
            let uids: Vec<u32> = new_uids.iter().map(|(u, _)| *u).collect();
            let session = self.session(state).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let details: Vec<_> = timed(
                async {
                    session
                        .uid_fetch(uid_set(&uids), "(UID INTERNALDATE RFC822.SIZE)")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                },
                &format!("UID FETCH in {mailbox}"),
            )
            .await?;
            let flags_of: HashMap<u32, Vec<String>> = new_uids.into_iter().collect();
            for message in &details {
                let Some(uid) = message.uid else { continue };
                let flags = flags_of.get(&uid).cloned().unwrap_or_default();
                items.push(message_entry(validity, uid, &flags, message));
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        items.dedup_by(|a, b| a.name == b.name);
        Ok((now, items))
    }
}

#[async_trait::async_trait]
impl ItemSource for ImapSource {
    fn root(&self) -> SourceRoot {
        self.url.root()
    }

    async fn collections(
        &self,
        previous: &dyn PreviousState,
    ) -> Result<Vec<Collection>, SourceError> {
        let mut state = self.state.lock().await;
        let mut collections = Vec::new();
        for (name, delimiter, attributes) in self.mailboxes(&mut state).await? {
            let decoded = utf7::decode(&name);
            let path: Vec<Vec<u8>> = match &delimiter {
                Some(d) if !d.is_empty() => decoded
                    .split(d.as_str())
                    .map(|c| c.as_bytes().to_vec())
                    .collect(),
                _ => vec![decoded.as_bytes().to_vec()],
            };
            let before = previous.collection(&path).await;
            let (mailbox, items) = self.list_messages(&mut state, &name, before).await?;
            let mut extra = Extra::new();
            extra.set(tags::COLLECTION_KIND, b"mailbox".to_vec());
            extra.set(tags::COLLECTION_HREF, name.clone().into_bytes());
            extra.set(tags::COLLECTION_NAME, decoded.clone().into_bytes());
            mailbox.record(&mut extra);
            extra.set(
                tags::COLLECTION_ATTRIBUTES,
                attributes.join(" ").into_bytes(),
            );
            if let Some(d) = delimiter {
                extra.set(tags::COLLECTION_DELIMITER, d.into_bytes());
            }
            collections.push(Collection { path, extra, items });
        }
        Ok(collections)
    }

    async fn fetch(
        &self,
        collection: &Collection,
        wanted: &[usize],
    ) -> Result<Vec<FetchedItem>, SourceError> {
        let mailbox = collection
            .extra
            .get(tags::COLLECTION_HREF)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| SourceError::Failed("mailbox without a name".into()))?
            .to_string();
        let mut by_uid: HashMap<u32, usize> = HashMap::new();
        let mut batches: Vec<Vec<u32>> = vec![Vec::new()];
        let mut bytes = 0u64;
        for &i in wanted {
            let Some(item) = collection.items.get(i) else {
                continue;
            };
            let Some(uid) = uid_of(&item.version) else {
                continue;
            };
            let size = item
                .extra
                .get(tags::ITEM_SIZE)
                .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            if bytes + size > FETCH_BYTES && batches.last().is_some_and(|b| !b.is_empty()) {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            by_uid.insert(uid, i);
            if let Some(batch) = batches.last_mut() {
                batch.push(uid);
            }
        }
        let mut state = self.state.lock().await;
        if state.examined.as_deref() != Some(mailbox.as_str()) {
            self.examine(&mut state, &mailbox).await?;
        }
        let mut fetched = Vec::new();
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            let session = self.session(&mut state).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let messages: Vec<_> = timed(
                async {
                    session
                        .uid_fetch(uid_set(&batch), "(UID BODY.PEEK[])")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                },
                &format!("UID FETCH of messages in {mailbox}"),
            )
            .await?;
            for message in messages {
                let (Some(uid), Some(body)) = (message.uid, message.body()) else {
                    continue;
                };
                if let Some(&index) = by_uid.get(&uid) {
                    fetched.push(FetchedItem {
                        index,
                        malformed: !well_formed(body),
                        body: body.to_vec(),
                    });
                }
            }
        }
        Ok(fetched)
    }

    fn batch_size(&self) -> usize {
        // Many small messages per command, fewer round trips; the engine
        // caps each batch's listed bytes, and a batch is split again here
        // by size (FETCH_BYTES).
        256
    }

    fn traffic(&self) -> SourceTraffic {
        SourceTraffic {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_in: self.received.load(Ordering::Relaxed),
        }
    }
}

/// What tells whether a mailbox changed: UIDVALIDITY, UIDNEXT and, with
/// CONDSTORE, HIGHESTMODSEQ (tags 37, 42, 43).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MailboxState {
    validity: u32,
    next: Option<u32>,
    modseq: Option<u64>,
}

impl MailboxState {
    /// The state the parent recorded on the mailbox's directory.
    fn of(extra: &Extra) -> Self {
        let number = |tag| {
            extra
                .get(tag)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        };
        MailboxState {
            validity: number(tags::COLLECTION_SYNC_STATE).map_or(0, |v| v as u32),
            next: number(tags::COLLECTION_UIDNEXT).map(|v| v as u32),
            modseq: number(tags::COLLECTION_MODSEQ),
        }
    }

    fn record(&self, extra: &mut Extra) {
        extra.set(
            tags::COLLECTION_SYNC_STATE,
            self.validity.to_string().into_bytes(),
        );
        if let Some(next) = self.next {
            extra.set(tags::COLLECTION_UIDNEXT, next.to_string().into_bytes());
        }
        if let Some(modseq) = self.modseq {
            extra.set(tags::COLLECTION_MODSEQ, modseq.to_string().into_bytes());
        }
    }
}

/// A listed message's entry.
fn message_entry(
    validity: u32,
    uid: u32,
    flags: &[String],
    message: &async_imap::types::Fetch,
) -> ItemEntry {
    let date = message.internal_date();
    let mut extra = Extra::new();
    extra.set(tags::ITEM_FLAGS, flags.join(" ").into_bytes());
    if let Some(date) = &date {
        extra.set(
            tags::ITEM_DATE,
            date.format("%d-%b-%Y %H:%M:%S %z").to_string().into_bytes(),
        );
    }
    extra.set(
        tags::ITEM_SIZE,
        message.size.unwrap_or(0).to_string().into_bytes(),
    );
    ItemEntry {
        size: u64::from(message.size.unwrap_or(0)),
        name: format!("{validity}-{uid}.eml").into_bytes(),
        version: format!("{validity}-{uid}").into_bytes(),
        mtime: date.map_or(0, |d| d.timestamp()),
        extra,
    }
}

/// Runs one IMAP exchange within [`COMMAND_TIMEOUT`].
async fn timed<T>(
    work: impl std::future::Future<Output = async_imap::error::Result<T>>,
    what: &str,
) -> Result<T, SourceError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SourceError::Failed(format!(
            "{what}: {}",
            one_line(&e.to_string())
        ))),
        Err(_) => Err(SourceError::Failed(format!(
            "{what}: no answer within {} s",
            COMMAND_TIMEOUT.as_secs()
        ))),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ").trim().to_string()
}

/// The UID in a version `UIDVALIDITY-UID`.
fn uid_of(version: &[u8]) -> Option<u32> {
    std::str::from_utf8(version)
        .ok()?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

/// `1:3,7,9:10` for the UIDs given (sorted here).
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn flag_text(flag: &async_imap::types::Flag<'_>) -> String {
    use async_imap::types::Flag;
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.to_string(),
    }
}

fn attribute_text(attribute: &async_imap::types::NameAttribute<'_>) -> String {
    use async_imap::types::NameAttribute;
    match attribute {
        NameAttribute::Extension(e) => e.to_string(),
        other => format!("\\{other:?}"),
    }
}

/// True when `body` starts like an RFC 5322 message: a header line.
fn well_formed(body: &[u8]) -> bool {
    let first = body.split(|&b| b == b'\n').next().unwrap_or_default();
    match first.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => first[..colon].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10, 7]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_of(b"1700000000-42"), Some(42));
        assert_eq!(uid_of(b"garbage"), None);
    }

    #[test]
    fn messages_start_with_a_header() {
        assert!(well_formed(b"From: a@b\r\nSubject: x\r\n\r\nbody"));
        assert!(well_formed(b"Received: from x\r\n\r\n"));
        assert!(!well_formed(b"<html>oops"));
        assert!(!well_formed(b""));
        assert!(!well_formed(b": no name\r\n"));
    }
}
