//! Arguments encrypted at rest: a job that asks ([`crate::Job::encrypt`], or its worker's
//! [`crate::WorkerOptions::encrypt`]) is pushed with its `args` sealed with AES-256-GCM
//! under the newest key of a [`Keyring`], and opened by the server right before `perform`.
//! Redis, the dashboard, the CLI and the logs only ever see the sealed form, shown as
//! `[encrypted]`; retries and the dead set keep the payload as it was pushed.
//!
//! The sealed payload: `"args": ["<base64 of nonce (12 bytes) ‖ ciphertext ‖ tag>"]` and
//! `"psychiq_encrypted": "<key id>"`. The class is bound in as associated data, so sealed
//! arguments moved to another class do not open. Keys rotate: a keyring holds several, new
//! pushes use the newest (the last listed) and older jobs open with the key they name.
//!
//! ```
//! use psychiq::encryption::Keyring;
//! // 32 bytes each, in base64: `head -c 32 /dev/urandom | base64`.
//! let keys = Keyring::parse(
//!     "2024:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,\
//!      2025:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=",
//! )?;
//! assert_eq!(keys.newest(), "2025");
//! let sealed = keys.seal("Billing::Charge", br#"[42,{"card":"4242 4242"}]"#)?;
//! assert!(!sealed.1.contains("4242 4242"));
//! let args = keys.open("Billing::Charge", &sealed.0, &sealed.1)?;
//! assert_eq!(args, br#"[42,{"card":"4242 4242"}]"#);
//! # Ok::<(), psychiq::Error>(())
//! ```

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// The payload field naming the key a job's arguments are sealed with.
pub const ENCRYPTED_FIELD: &str = "psychiq_encrypted";
/// The environment variable [`Keyring::from_env`] reads: `ID:BASE64KEY,ID:BASE64KEY,...`,
/// the newest last.
pub const KEYS_ENV: &str = "PSYCHIQ_ENCRYPTION_KEYS";
/// What the dashboard, the CLI and the logs show in place of sealed arguments.
pub const SHOWN: &str = "[encrypted]";

const NONCE_LEN: usize = 12;
/// Associated data: the format's version and the job's class.
const AAD_PREFIX: &[u8] = b"psychiq-args-v1:";

/// Keys by id, the newest last. Its `Debug` shows the ids only: a key is never printed.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

impl Keyring {
    /// Reads `ID:BASE64KEY` entries separated by commas or new lines (`#` starts a
    /// comment), each key 32 bytes; the last is the newest.
    pub fn parse(text: &str) -> Result<Keyring> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for entry in text
            .split([',', '\n'])
            .map(|e| e.split('#').next().unwrap_or("").trim())
            .filter(|e| !e.is_empty())
        {
            let (id, key) = entry
                .split_once(':')
                .or_else(|| entry.split_once(char::is_whitespace))
                .ok_or_else(|| {
                    Error::Config(
                        "an encryption key entry is not ID:BASE64KEY (make a key with `head -c 32 /dev/urandom | base64`)"
                            .into(),
                    )
                })?;
            let (id, key) = (id.trim(), key.trim());
            // The key's bytes are never echoed, whatever went wrong.
            let bytes = STANDARD.decode(key).map_err(|_| {
                Error::Config(format!(
                    "encryption key {id:?} is not base64 (make one with `head -c 32 /dev/urandom | base64`)"
                ))
            })?;
            if id.is_empty() || id.contains(['"', '\\']) {
                return Err(Error::Config(
                    "an encryption key id is empty or has a quote or backslash; use letters, digits, '-' or '.'".into(),
                ));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
                Error::Config(format!(
                    "encryption key {id:?} is {} bytes; AES-256 needs 32 (`head -c 32 /dev/urandom | base64`)",
                    bytes.len()
                ))
            })?;
            if keys.iter().any(|(known, _)| known == id) {
                return Err(Error::Config(format!(
                    "encryption key {id:?} is listed twice; give each key its own id"
                )));
            }
            keys.push((id.to_string(), cipher));
        }
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "no encryption key given; set {KEYS_ENV} to ID:BASE64KEY (make a key with `head -c 32 /dev/urandom | base64`)"
            )));
        }
        Ok(Keyring { keys })
    }

    /// The keyring in [`KEYS_ENV`], or `None` when it is unset.
    pub fn from_env() -> Result<Option<Keyring>> {
        match std::env::var(KEYS_ENV) {
            Ok(text) => Keyring::parse(&text)
                .map(Some)
                .map_err(|e| Error::Config(format!("{KEYS_ENV}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!(
                "{KEYS_ENV} is not UTF-8; write ID:BASE64KEY entries"
            ))),
        }
    }

    /// The keyring in a file (the same form as [`Keyring::parse`], one entry a line).
    pub fn from_file(path: &Path) -> Result<Keyring> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read encryption keys from {}: {e}",
                path.display()
            ))
        })?;
        Keyring::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The id new pushes seal with.
    pub fn newest(&self) -> &str {
        self.keys.last().map_or("", |(id, _)| id.as_str())
    }

    /// Seals the JSON text of `args` for a job of `class`: the key id and the sealed text
    /// (base64).
    pub fn seal(&self, class: &str, args: &[u8]) -> Result<(String, String)> {
        let (id, cipher) = self.keys.last().expect("a keyring has a key");
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = [AAD_PREFIX, class.as_bytes()].concat();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: args,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Payload("encrypting a job's arguments failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((id.clone(), STANDARD.encode(out)))
    }

    /// Opens what [`Keyring::seal`] made with key `id` for a job of `class`: the arguments'
    /// JSON text. Fails, saying what to do, for a key this keyring lacks and for a text
    /// that was changed, sealed for another class, or is not sealed.
    pub fn open(&self, class: &str, id: &str, sealed: &str) -> Result<Vec<u8>> {
        let Some((_, cipher)) = self.keys.iter().find(|(known, _)| known == id) else {
            return Err(Error::Config(format!(
                "the arguments are sealed with encryption key {id:?}, which this process does not have; add it to {KEYS_ENV} (keys: {:?}), then retry the job from the dead set",
                self.keys
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
            )));
        };
        let bytes = STANDARD
            .decode(sealed)
            .ok()
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| {
                Error::Payload("sealed arguments are not base64 of a nonce and a ciphertext".into())
            })?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = [AAD_PREFIX, class.as_bytes()].concat();
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                Error::Payload(format!(
                    "sealed arguments do not open with key {id:?}: changed, sealed for another class than {class:?}, or sealed with another key of that id"
                ))
            })
    }
}

/// The sealed text of a sealed job's `args` (`["..."]`), if it has that form.
pub(crate) fn sealed_text(args: &str) -> Option<String> {
    let values: Vec<String> = serde_json::from_str(args).ok()?;
    match <[String; 1]>::try_from(values) {
        Ok([text]) => Some(text),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn old_keys_still_open_and_tampering_or_another_class_does_not() {
        let old = Keyring::parse(&format!("k1:{A}")).unwrap();
        let (id, sealed) = old.seal("Pay", b"[1,\"secret\"]").unwrap();
        assert_eq!(id, "k1");
        let rotated = Keyring::parse(&format!("k1:{A}\n# newest last\nk2:{B}\n")).unwrap();
        assert_eq!(rotated.newest(), "k2");
        assert_eq!(
            rotated.open("Pay", "k1", &sealed).unwrap(),
            b"[1,\"secret\"]"
        );
        assert_eq!(rotated.seal("Pay", b"[]").unwrap().0, "k2");
        assert!(rotated.open("Other", "k1", &sealed).is_err());
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        bytes[20] ^= 1;
        assert!(rotated.open("Pay", "k1", &STANDARD.encode(bytes)).is_err());
        let missing = Keyring::parse(&format!("k2:{B}")).unwrap();
        let error = missing.open("Pay", "k1", &sealed).unwrap_err().to_string();
        assert!(error.contains("k1") && error.contains(KEYS_ENV), "{error}");
    }

    #[test]
    fn bad_keys_are_refused_without_being_echoed() {
        for (text, says) in [
            ("", "no encryption key"),
            ("k1", "ID:BASE64KEY"),
            ("k1:not base64!", "not base64"),
            ("k1:AAAA", "32"),
            (&format!("k1:{A},k1:{B}") as &str, "twice"),
        ] {
            let error = Keyring::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains(A) && !error.contains("AAAA"), "{error}");
        }
        let keys = Keyring::parse(&format!("k1:{A}")).unwrap();
        assert!(!format!("{keys:?}").contains(A));
    }
}
