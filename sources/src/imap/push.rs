//! The way back for IMAP: `restore --to imaps://…` creates each mailbox
//! (its name re-encoded for the server's delimiter) and APPENDs every message
//! with its flags and internal date. A message the mailbox already holds
//! (the same Message-ID and size, or the same internal date and size when it
//! has no Message-ID) is skipped, so a second run uploads nothing; IMAP
//! cannot replace a message without deleting one, so nothing is replaced
//! whatever `--overwrite` says, and nothing is ever deleted.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures::TryStreamExt;
use lifeboat_engine::format::tags;
use lifeboat_engine::restore::Overwrite;
use lifeboat_engine::source::{
    CollectionSink, ItemSink, PushCollection, PushItem, Pushed, SourceError, SourceKind,
};
use tokio::sync::Mutex;

use super::{timed, utf7, ImapSource};

/// What tells two copies of a message apart: Message-ID (or internal date)
/// and size.
type MessageKey = (String, usize);

struct Mailbox<'a> {
    source: &'a ImapSource,
    name: String,
    present: Mutex<HashSet<MessageKey>>,
}

#[async_trait::async_trait]
impl ItemSink for ImapSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Imap
    }

    fn display(&self) -> String {
        self.url.display()
    }

    async fn open_collection(
        &self,
        collection: &PushCollection,
    ) -> Result<Box<dyn CollectionSink + '_>, SourceError> {
        let mut state = self.state.lock().await;
        let session = self.session(&mut state).await?;
        // The server's delimiter, to join the backed-up path with.
        self.requests.fetch_add(1, Ordering::Relaxed);
        let root: Vec<_> = timed(
            async {
                session
                    .list(Some(""), Some(""))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            "LIST",
        )
        .await?;
        let delimiter = root
            .first()
            .and_then(|n| n.delimiter().map(str::to_string))
            .unwrap_or_else(|| "/".to_string());
        let decoded: Vec<String> = collection
            .path
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let name = if decoded.len() == 1 && decoded[0].eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            utf7::encode(&decoded.join(&delimiter))
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let exists: Vec<_> = timed(
            async {
                session
                    .list(Some(""), Some(&name))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            "LIST",
        )
        .await?;
        if exists.is_empty() {
            self.requests.fetch_add(1, Ordering::Relaxed);
            timed(session.create(&name), &format!("CREATE {name}")).await?;
        }
        // What the mailbox holds already.
        let opened = self.examine(&mut state, &name).await?;
        let mut present = HashSet::new();
        if opened.exists > 0 {
            let session = self.session(&mut state).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let listed: Vec<_> = timed(
                async {
                    session
                        .uid_fetch(
                            "1:*",
                            "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                        )
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                },
                &format!("UID FETCH in {name}"),
            )
            .await?;
            for message in listed {
                let size = message.size.unwrap_or(0) as usize;
                let id = message.header().and_then(message_id);
                let key = match id {
                    Some(id) => id,
                    None => message
                        .internal_date()
                        .map(|d| d.format("%d-%b-%Y %H:%M:%S %z").to_string())
                        .unwrap_or_default(),
                };
                present.insert((key, size));
            }
        }
        Ok(Box::new(Mailbox {
            source: self,
            name,
            present: Mutex::new(present),
        }))
    }
}

#[async_trait::async_trait]
impl CollectionSink for Mailbox<'_> {
    fn location(&self) -> String {
        self.name.clone()
    }

    async fn put(
        &self,
        item: PushItem<'_>,
        body: &[u8],
        _overwrite: Overwrite,
    ) -> Result<Pushed, SourceError> {
        let text = |tag| {
            item.extra
                .get(tag)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let date = text(tags::ITEM_DATE);
        let key = match message_id(body) {
            Some(id) => (id, body.len()),
            None => (date.clone().unwrap_or_default(), body.len()),
        };
        let mut present = self.present.lock().await;
        if present.contains(&key) {
            return Ok(Pushed::Kept);
        }
        let flags: Vec<String> = text(tags::ITEM_FLAGS)
            .unwrap_or_default()
            .split_whitespace()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && is_atom(f))
            .map(str::to_string)
            .collect();
        let flags = format!("({})", flags.join(" "));
        let date = date.filter(|d| {
            d.chars()
                .all(|c| c.is_ascii_alphanumeric() || " :+-".contains(c))
        });
        let quoted = date.map(|d| format!("\"{d}\""));
        let mut state = self.source.state.lock().await;
        let session = self.source.session(&mut state).await?;
        self.source.requests.fetch_add(1, Ordering::Relaxed);
        timed(
            session.append(&self.name, Some(&flags), quoted.as_deref(), body),
            &format!("APPEND to {}", self.name),
        )
        .await?;
        present.insert(key);
        Ok(Pushed::Created)
    }
}

/// The Message-ID header's value in a message's (or a header block's)
/// bytes, unfolded and trimmed.
fn message_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut value: Option<String> = None;
    for line in &mut lines {
        if line.is_empty() {
            break;
        }
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim()),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("message-id") {
                        value = Some(rest.trim().to_string());
                    }
                }
            }
        }
    }
    value.filter(|v| !v.is_empty())
}

/// True for a flag that can be sent as written (a system flag or a keyword
/// atom), so a stored flag can never inject protocol text.
fn is_atom(flag: &str) -> bool {
    let body = flag.strip_prefix('\\').unwrap_or(flag);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b > b' ' && b < 127 && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_from_headers_only() {
        assert_eq!(
            message_id(b"From: a\r\nMessage-ID:\r\n <x@y>\r\n\r\nMessage-ID: <body@z>\r\n")
                .as_deref(),
            Some("<x@y>")
        );
        assert_eq!(
            message_id(b"message-id: <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(message_id(b"From: a\r\n\r\nMessage-ID: <body@z>\r\n"), None);
    }

    #[test]
    fn only_atoms_pass_as_flags() {
        assert!(is_atom("\\Seen"));
        assert!(is_atom("$Label1"));
        assert!(!is_atom("a) UID STORE"));
        assert!(!is_atom("\\"));
        assert!(!is_atom("x\r\n"));
    }
}
