//! IMAP's modified UTF-7 for mailbox names (RFC 3501 §5.1.3): `&` starts
//! a run of UTF-16 in modified base64 (`,` for `/`), `-` ends it, `&-` is
//! `&`. Names are shown and stored decoded; the server's own spelling is
//! kept beside them (FORMAT.md §4.10, tag 38).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// `name` decoded; a malformed run is left as written.
pub fn decode(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            match decode_run(run) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&rest[start..start + 1 + end + 1]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn decode_run(run: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut units = Vec::new();
    for byte in run.bytes() {
        let value = ALPHABET.iter().position(|&a| a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 16 {
            count -= 16;
            units.push(((bits >> count) & 0xffff) as u16);
        }
    }
    String::from_utf16(&units).ok()
}

/// `name` encoded for the server.
pub fn encode(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let mut bits = 0u32;
        let mut count = 0;
        for unit in pending.drain(..) {
            bits = (bits << 16) | u32::from(unit);
            count += 16;
            while count >= 6 {
                count -= 6;
                out.push(ALPHABET[((bits >> count) & 63) as usize] as char);
            }
        }
        if count > 0 {
            out.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
        }
        out.push('-');
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_rfc_examples() {
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(decode("Tom &- Jerry"), "Tom & Jerry");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        for name in ["Envoyés", "Корзина", "a&b", "😀 emoji", "plain"] {
            assert_eq!(decode(&encode(name)), name);
        }
        assert_eq!(decode("&!!!-"), "&!!!-", "malformed runs stay as written");
    }
}
