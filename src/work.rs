//! A unit of work: one fetched job, holding the exact bytes read and knowing how to leave
//! Redis's bookkeeping when it is done. With reliable fetch it sits in this process's
//! in-progress list until then; with basic fetch (`BRPOP`) nothing holds it. That choice is
//! made once, at fetch, and the rest of the server only asks the unit.

use std::sync::Arc;

use crate::acks::Acks;

/// One fetched job.
#[derive(Debug, Clone)]
pub(crate) struct UnitOfWork {
    /// The queue it was taken from.
    pub queue: Arc<str>,
    /// The exact bytes read (UTF-8 or not).
    pub raw: Arc<[u8]>,
    /// The in-progress list holding it (reliable fetch), if any.
    held_in: Option<Arc<str>>,
    /// Recovered from a dead process (it carries `recovery_count`): it runs alone.
    suspect: bool,
}

/// Whether a payload was recovered from a dead process (see [`crate::recovery`]); the fetch
/// script looks for the same text.
fn is_suspect(raw: &[u8]) -> bool {
    const MARK: &[u8] = b"\"recovery_count\":";
    raw.windows(MARK.len()).any(|window| window == MARK)
}

impl UnitOfWork {
    /// A job held in the in-progress list `list` until it is done.
    pub fn held(queue: Arc<str>, raw: Arc<[u8]>, list: Arc<str>) -> UnitOfWork {
        UnitOfWork {
            suspect: is_suspect(&raw),
            queue,
            raw,
            held_in: Some(list),
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

    /// Whether an in-progress list holds it (so a crash cannot lose it).
    pub fn is_held(&self) -> bool {
        self.held_in.is_some()
    }

    /// Finished: queue its removal from the in-progress list (written in pipelines).
    pub fn acknowledge(&self, acks: &Acks) {
        if let Some(list) = &self.held_in {
            acks.send(list, &self.raw);
        }
    }

    /// Adds its removal from the in-progress list to `pipe` (in the same transaction as
    /// what replaces it: a retry, a death, a snooze).
    pub fn remove_in(&self, pipe: &mut redis::Pipeline) {
        if let Some(list) = &self.held_in {
            // From the oldest end, where a finished job most likely is.
            pipe.lrem(&**list, -1, &*self.raw).ignore();
        }
    }

    /// The in-progress list as the push-back script takes it (`""` when nothing holds it).
    pub fn list_arg(&self) -> &str {
        self.held_in.as_deref().unwrap_or("")
    }
}
