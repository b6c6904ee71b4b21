//! Bytes read from Redis, shown as text.
//!
//! Redis stores bytes. What Sidekiq and Psychiq write is UTF-8, but anything can be written
//! by hand or by a buggy client, and one odd member must never take a page, a command or a
//! server down. So names (queues, process identities, classes) are read as bytes and shown
//! with [`escape`], which is reversible: [`unescape`] gives back the exact bytes, so a name
//! that is not UTF-8 can still be acted on (`psychiq jobs 'bad\xff' clear`, or its link in
//! the dashboard). Text meant only for a person (error messages, payloads in a terminal)
//! goes through [`printable`], which keeps control characters from reaching the terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// Shows `bytes` as printable text, reversibly: valid UTF-8 stays as it is, except that a
/// backslash becomes `\\` and control characters and bytes that are not UTF-8 become `\xHH`.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.chars().any(|c| c == '\\' || hidden(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if hidden(c) {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// The bytes that [`escape`] showed as `text`. Text holding no backslash, or a backslash
/// that is not part of `\\` or `\xHH`, is taken as it is (a name typed by hand).
#[cfg(feature = "api")]
pub fn unescape(text: &str) -> Cow<'_, [u8]> {
    if !text.contains('\\') {
        return Cow::Borrowed(text.as_bytes());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = bytes
                    .get(i + 2..i + 4)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 4;
                    }
                    None => return Cow::Borrowed(bytes),
                }
            }
            _ => return Cow::Borrowed(bytes),
        }
    }
    Cow::Owned(out)
}

/// `text` with its control characters (ESC, BEL, CR, ...) shown as `\xHH` (or `\u{HHHH}`),
/// so what a job carries cannot move the cursor or rewrite the screen of the operator who
/// prints it. Newlines and tabs are shown as `\n` and `\t`.
pub fn printable(text: &str) -> Cow<'_, str> {
    // Plain printable ASCII (nearly every class, jid and queue) is decided a byte at a
    // time, without decoding characters: it runs on every job's log lines.
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) || !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the invisible ones that reorder or hide text (bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark): what must not
/// reach a terminal or a page as itself.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Bytes as text for a person to read: UTF-8 as it is, anything else escaped (see
/// [`escape`]). For payloads, where a lossy view would hide which bytes are wrong.
pub fn lossless(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => escape(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_round_trips() {
        let samples: [&[u8]; 6] = [
            b"",
            b"\\",
            b"\\x41",
            b"\xff\xfe\x00\x1b",
            "é\u{85}\u{7f}\u{202e}".as_bytes(),
            b"\xe2\x82",
        ];
        for bytes in samples {
            let shown = escape(bytes);
            assert!(!shown.chars().any(hidden), "{shown:?}");
            assert_eq!(&*unescape(&shown), bytes, "{shown:?}");
        }
        for byte in 0..=255u8 {
            assert_eq!(
                &*unescape(&escape(&[byte, b'a', byte])),
                &[byte, b'a', byte]
            );
        }
    }
}

#[cfg(test)]
mod examples {
    // Usage examples of internal helpers (doc examples before these became crate-private).
    #[test]
    #[cfg(feature = "api")]
    fn escape_example() {
        use crate::job::text::{escape, unescape};
        assert_eq!(escape(b"default"), "default");
        assert_eq!(escape(b"caf\xc3\xa9 \xff\x1b"), "café \\xff\\x1b");
        assert_eq!(escape(br"a\b"), r"a\\b");
        assert_eq!(unescape(&escape(b"caf\xff\\")), &b"caf\xff\\"[..]);
    }
    #[test]
    #[cfg(feature = "api")]
    fn unescape_example() {
        use crate::job::text::unescape;
        assert_eq!(unescape("low"), &b"low"[..]);
        assert_eq!(unescape(r"bad\xff"), &b"bad\xff"[..]);
        assert_eq!(unescape(r"C:\temp"), &br"C:\temp"[..]);
    }
    #[test]
    fn printable_example() {
        assert_eq!(
            crate::job::text::printable("ok\x1b[2J\r\n"),
            "ok\\x1b[2J\\x0d\\n"
        );
    }
}
