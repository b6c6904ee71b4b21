//! A unit of work: one fetched job, holding the exact bytes read and knowing how to leave
//! Redis's bookkeeping when it is done. With reliable fetch it sits in this process's
//! in-progress hash under a slot number of its own until then; with basic fetch (`BRPOP`)
//! nothing holds it. That choice is made once, at fetch, and the rest of the server only
//! asks the unit.

use std::sync::Arc;

use crate::server::acks::Acks;

/// One fetched job.
#[derive(Debug, Clone)]
pub(crate) struct UnitOfWork {
    /// The queue it was taken from.
    pub queue: Arc<str>,
    /// The exact bytes read (UTF-8 or not).
    pub raw: Arc<[u8]>,
    /// The in-progress hash holding it and its field there (reliable fetch), if any.
    held_in: Option<Held>,
    /// Recovered from a dead process (it carries `recovery_count`): it runs alone.
    suspect: bool,
}

/// Where reliable fetch keeps a job until it is done: `HSET hash slot payload`.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The in-progress hash (`inprogress:IDENTITY:QUEUE`).
    pub hash: Arc<str>,
    /// The job's field in it: a number unique in this process.
    pub slot: u64,
}

/// Whether a payload was recovered from a dead process (see [`crate::server::recovery`]); the fetch
/// script looks for the same text.
fn is_suspect(raw: &[u8]) -> bool {
    const MARK: &[u8] = b"\"recovery_count\":";
    memchr_find(raw, MARK)
}

/// Whether `needle` occurs in `haystack` (a first-byte scan, then a compare).
fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(offset) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + offset + 1;
        if haystack[start..].starts_with(rest) {
            return true;
        }
        at = start;
    }
    false
}

impl UnitOfWork {
    /// A job held in the in-progress hash `hash` under `slot` until it is done.
    pub fn held(queue: Arc<str>, raw: Arc<[u8]>, hash: Arc<str>, slot: u64) -> UnitOfWork {
        UnitOfWork {
            suspect: is_suspect(&raw),
            queue,
            raw,
            held_in: Some(Held { hash, slot }),
        }
    }

    /// A job nothing holds (basic fetch): it exists only in this process until done.
    pub fn unheld(queue: Arc<str>, raw: Arc<[u8]>) -> UnitOfWork {
        UnitOfWork {
            suspect: is_suspect(&raw),
            queue,
            raw,
            held_in: None,
        }
    }

    /// Whether it was recovered from a dead process (looked for once, at fetch).
    pub fn is_suspect(&self) -> bool {
        self.suspect
    }

    /// Whether an in-progress hash holds it (so a crash cannot lose it).
    pub fn is_held(&self) -> bool {
        self.held_in.is_some()
    }

    /// Where it is held, if anywhere.
    pub fn held_in(&self) -> Option<&Held> {
        self.held_in.as_ref()
    }

    /// Finished: queue its removal from the in-progress hash (written in batches).
    pub fn acknowledge(&self, acks: &Acks) {
        if let Some(held) = &self.held_in {
            acks.send(&held.hash, held.slot);
        }
    }

    /// Finished, to be acknowledged once something else is written first (a tracked job's
    /// status): counted as pending now.
    pub fn acknowledge_later(&self, acks: &Acks) -> Option<crate::server::acks::LaterAck> {
        self.held_in
            .as_ref()
            .map(|held| acks.later(&held.hash, held.slot))
    }

    /// Adds its return to the in-progress hash to `pipe` (after a transaction removed it
    /// but failed to write what replaces it).
    pub fn keep_in(&self, pipe: &mut redis::Pipeline) {
        if let Some(held) = &self.held_in {
            pipe.hset(&*held.hash, held.slot, &*self.raw).ignore();
        }
    }

    /// Adds its removal from the in-progress hash to `pipe` (in the same transaction as
    /// what replaces it: a retry, a death, a snooze).
    pub fn remove_in(&self, pipe: &mut redis::Pipeline) {
        if let Some(held) = &self.held_in {
            pipe.hdel(&*held.hash, held.slot).ignore();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspects_are_found_anywhere_in_the_payload() {
        assert!(is_suspect(br#"{"a":1,"recovery_count":2}"#));
        assert!(is_suspect(br#""recovery_count":"#));
        assert!(!is_suspect(br#"{"recovery_count":}"#.split_at(10).0));
        assert!(!is_suspect(br#"{"recovery":1,"count":2}"#));
        assert!(!is_suspect(b""));
    }
}
