//! Reliable push: writes that could not reach Redis wait in a spool (in memory, bounded,
//! and optionally in a journal in a directory the app names, written and fsynced before
//! the push returns) and are replayed in order once Redis answers again. The caller gets
//! [`crate::Push::Buffered`]: not an error, not yet in Redis.
//!
//! A write is kept as the exact commands the client would have sent (one record per push
//! call, up to 10,000 jobs). Each record is replayed by one Lua step that first sets a
//! marker named after its first jid (`spooled:JID`, kept a day) and writes nothing if the
//! marker was there: a record replayed twice (a crash after the replay, before the journal
//! was cut; the app pushing again a job it had buffered, with the same jid) lands once.
//!
//! A journal is `spool-PID-NANOS.jsonl` in the directory, locked (`flock`) by the process
//! that writes it. A process that opens the directory adopts every journal nobody holds
//! (its writer died): it copies the records into its own journal, fsyncs, removes the old
//! file, and replays them first.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::store::connection::Connection;

/// The marker's life: a record replayed again within it lands once.
pub(crate) const MARKER_SECS: u64 = 86_400;

/// The marker a write named `id` (its first jid) sets when it lands.
pub(crate) fn marker_key(prefix: &str, id: &str) -> String {
    format!("{prefix}spooled:{id}")
}
/// Refusals in a row (out of memory, a login refused, ...) after which a buffered write
/// is set aside rather than tried forever: about an hour at the longest backoff.
const MOST_REFUSALS: u32 = 1_800;
/// Jobs kept in memory unless [`ReliablePush::capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// How a client keeps the writes it could not make (see [`crate::Client::reliable_push`]).
#[derive(Debug, Clone)]
pub struct ReliablePush {
    pub(crate) capacity: usize,
    pub(crate) dir: Option<PathBuf>,
}

impl ReliablePush {
    /// In this process's memory only: lost if the app dies before Redis is back.
    pub fn in_memory() -> ReliablePush {
        ReliablePush {
            capacity: DEFAULT_CAPACITY,
            dir: None,
        }
    }

    /// In memory and in a journal in `dir` (made if missing), fsynced before the push
    /// returns; a journal left by a process that died is pushed by the next to open `dir`.
    pub fn journal(dir: impl Into<PathBuf>) -> ReliablePush {
        ReliablePush {
            capacity: DEFAULT_CAPACITY,
            dir: Some(dir.into()),
        }
    }

    /// Jobs kept at most; a push beyond is refused with Redis's error.
    pub fn capacity(mut self, jobs: usize) -> ReliablePush {
        self.capacity = jobs.max(1);
        self
    }
}

/// One buffered write: the commands of one push call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Names the record's marker (its first jid).
    pub(crate) id: String,
    pub(crate) jobs: usize,
    pub(crate) commands: Vec<Vec<String>>,
}

/// What a spool holds now.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SpoolStatus {
    /// Jobs waiting to be pushed.
    pub jobs: usize,
    /// Push calls they came in.
    pub writes: usize,
    /// The journal, if there is one.
    pub journal: Option<PathBuf>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Record>,
    jobs: usize,
    /// The front record is being replayed: new writes queue behind it.
    replaying: bool,
}

pub(crate) struct Spool {
    state: Mutex<State>,
    capacity: usize,
    journal: Mutex<Option<(PathBuf, File)>>,
    /// Shared with the replayer, which waits on it without keeping the spool alive.
    wake: Arc<Notify>,
    /// Notified whenever the spool empties.
    drained: Notify,
    prefix: String,
}

impl Spool {
    /// Opens the spool (and its directory, adopting what dead writers left) and starts
    /// its replayer on this runtime.
    pub(crate) fn open(
        options: &ReliablePush,
        conn: Connection,
        prefix: String,
    ) -> Result<Arc<Spool>> {
        let mut state = State::default();
        let journal = match &options.dir {
            Some(dir) => Some(open_journal(dir, &mut state)?),
            None => None,
        };
        let spool = Arc::new(Spool {
            state: Mutex::new(state),
            capacity: options.capacity,
            journal: Mutex::new(journal),
            wake: Arc::new(Notify::new()),
            drained: Notify::new(),
            prefix,
        });
        tokio::spawn(replay(
            Arc::downgrade(&spool),
            Arc::clone(&spool.wake),
            conn,
        ));
        spool.wake.notify_one();
        Ok(spool)
    }

    /// Whether a write must queue behind buffered ones (to keep the order).
    pub(crate) fn busy(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !state.pending.is_empty() || state.replaying
    }

    /// Keeps a write for later: journaled and fsynced (if there is a journal) before it
    /// returns. `why` is what sent it here, named in the error if it cannot be kept.
    pub(crate) fn keep(&self, record: Record, why: Error) -> Result<()> {
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.jobs + record.jobs > self.capacity {
                return Err(Error::Other(format!(
                    "{why}; and the reliable-push buffer is full ({} jobs waiting, capacity {}): this push was not kept. Bring Redis back, or raise ReliablePush::capacity",
                    state.jobs, self.capacity
                )));
            }
        }
        // The journal's lock is held until the record is in memory too, so an emptying
        // spool never cuts a record it has not seen (locks: journal, then state).
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((path, file)) = &mut *journal {
            let mut line =
                serde_json::to_vec(&record).map_err(|e| Error::Payload(e.to_string()))?;
            line.push(b'\n');
            let before = file.metadata().map(|m| m.len()).ok();
            if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
                // A part-written line would spoil the next record: cut it off.
                if let Some(before) = before {
                    let _ = file.set_len(before);
                }
                return Err(Error::Other(format!(
                    "{why}; and writing the reliable-push journal {} failed: {e}; this push was not kept",
                    path.display()
                )));
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.jobs += record.jobs;
        state.pending.push_back(record);
        drop(state);
        drop(journal);
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn status(&self) -> SpoolStatus {
        let journal = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(path, _)| path.clone());
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        SpoolStatus {
            jobs: state.jobs,
            writes: state.pending.len(),
            journal,
        }
    }

    /// Waits until every buffered write is in Redis, at most `within`.
    pub(crate) async fn flush(&self, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let drained = self.drained.notified();
            let status = self.status();
            if status.writes == 0 && !self.busy() {
                return Ok(());
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return Err(Error::Other(format!(
                    "{} buffered jobs are still waiting for Redis after {within:?}; they stay in the spool{}",
                    status.jobs,
                    status
                        .journal
                        .map(|p| format!(" (journal {})", p.display()))
                        .unwrap_or_default()
                )));
            }
        }
    }
}

/// Whether an error means Redis could not be reached (the write may be kept), rather than
/// that it refused the write.
pub(crate) fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_connection_dropped()
        || matches!(
            error.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
        )
}

/// Whether Redis refused a replayed write for what it is (a command in it met a key of
/// another type), which waiting will not cure; anything else (out of memory, busy, a
/// login refused during a rotation, a disk error) is waited out like an outage.
fn refused_for_good(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    text.contains("WRONGTYPE") || text.contains("user_script")
}

/// The commands of a pipeline, as text, for a record (`MULTI`, `EXEC` and `WAIT` left
/// out: the replay is one atomic step, and waits for no replica).
pub(crate) fn commands_of(pipe: &redis::Pipeline) -> Result<Vec<Vec<String>>> {
    let mut commands = Vec::new();
    for cmd in pipe.cmd_iter() {
        let mut args = Vec::new();
        for arg in cmd.args_iter() {
            let redis::Arg::Simple(bytes) = arg else {
                continue;
            };
            args.push(String::from_utf8(bytes.to_vec()).map_err(|_| {
                Error::Payload("a buffered push holds bytes that are not UTF-8".into())
            })?);
        }
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        if !matches!(name.as_str(), "MULTI" | "EXEC" | "WAIT" | "") {
            commands.push(args);
        }
    }
    Ok(commands)
}

/// Replays buffered writes in order whenever there are some, backing off while Redis is
/// away; ends when the spool is dropped.
async fn replay(spool: Weak<Spool>, wake: Arc<Notify>, conn: Connection) {
    let script = redis::Script::new(crate::store::scripts::SPOOL_REPLAY);
    let mut backoff = Duration::from_millis(200);
    // Refusals in a row of the front write (not outages): past the limit it is set aside.
    let mut refusals = 0u32;
    loop {
        let Some(spool) = spool.upgrade() else { return };
        let front = {
            let mut state = spool.state.lock().unwrap_or_else(|e| e.into_inner());
            let front = state.pending.front().cloned();
            state.replaying = front.is_some();
            front
        };
        let Some(record) = front else {
            spool.drained.notify_waiters();
            let woken = wake.notified();
            drop(spool);
            // Woken by a new record, or looks again in a while (and ends once the spool
            // is gone).
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            continue;
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(marker_key(&spool.prefix, &record.id))
            .arg(MARKER_SECS);
        for command in &record.commands {
            invocation.arg(command.len()).arg(command);
        }
        let outcome: redis::RedisResult<i64> = invocation.invoke_async(&mut conn.clone()).await;
        match outcome {
            Ok(landed) => {
                backoff = Duration::from_millis(200);
                refusals = 0;
                if landed == 0 {
                    tracing::info!(record = %record.id, "reliable push: a buffered write had landed already; not pushed again");
                }
                spool.done_with_front();
            }
            Err(e) if unreachable(&e) || (!refused_for_good(&e) && refusals < MOST_REFUSALS) => {
                if unreachable(&e) {
                    refusals = 0;
                    tracing::debug!(error = %e, "reliable push: Redis still away");
                } else {
                    refusals += 1;
                    tracing::warn!(error = %e, record = %record.id, "reliable push: Redis refused a buffered write; trying again");
                }
                spool.set_replaying(false);
                drop(spool);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                // Waiting will not cure it: the write is set aside (its file names its
                // jobs), not retried forever, and the rest go on.
                tracing::error!(error = %e, record = %record.id, jobs = record.jobs, "reliable push: Redis refused a buffered write; it is set aside");
                refusals = 0;
                spool.set_aside(&record, &e.to_string());
                spool.done_with_front();
            }
        }
    }
}

impl Drop for Spool {
    /// An empty journal goes with its writer; one still holding writes stays for the next
    /// process (or `psychiq spool push`).
    fn drop(&mut self) {
        let empty = self
            .state
            .get_mut()
            .is_ok_and(|state| state.pending.is_empty());
        if let Some((path, _)) = self.journal.get_mut().ok().and_then(Option::take)
            && empty
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Spool {
    fn set_replaying(&self, on: bool) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replaying = on;
    }

    /// The front record is in Redis: it leaves the spool; an empty spool cuts its journal.
    fn done_with_front(&self) {
        let empty = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = state.pending.pop_front() {
                state.jobs -= record.jobs;
            }
            state.replaying = false;
            state.pending.is_empty()
        };
        if empty {
            let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the journal's lock: a write may have come in between.
            let still_empty = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending
                .is_empty();
            if still_empty
                && let Some((path, file)) = &mut *journal
                && let Err(e) = file.set_len(0).and_then(|()| file.sync_data())
            {
                tracing::warn!(journal = %path.display(), error = %e, "reliable push: could not cut the journal; its records will be replayed (and skipped) again");
            }
            drop(journal);
            self.drained.notify_waiters();
        }
    }

    /// Writes a refused record beside the journal (or to the log alone without one).
    fn set_aside(&self, record: &Record, why: &str) {
        let journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let Some((path, _)) = &*journal else { return };
        let aside = path.with_file_name(format!("refused-{}.json", record.id));
        let body = serde_json::json!({"error": why, "record": record});
        if let Err(e) = std::fs::write(&aside, body.to_string()) {
            tracing::error!(file = %aside.display(), error = %e, "reliable push: could not write a refused write aside");
        }
    }
}

/// Makes this process's journal in `dir`, adopting the records of journals nobody holds.
fn open_journal(dir: &Path, state: &mut State) -> Result<(PathBuf, File)> {
    let fail = |what: &str, e: std::io::Error| {
        Error::Config(format!(
            "reliable push: cannot {what} in {}: {e}; name a directory this process can write",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory", e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("spool-{}-{nanos}.jsonl", std::process::id());
    // Made and locked under a name no one looks for, then renamed: no other process can
    // take a journal for abandoned between its creation and its lock.
    let making = dir.join(format!(".{name}.new"));
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&making)
        .map_err(|e| fail("create a journal", e))?;
    file.try_lock()
        .map_err(|e| fail("lock its journal", std::io::Error::other(e.to_string())))?;
    std::fs::rename(&making, &path).map_err(|e| fail("name its journal", e))?;
    for (orphan, held, records) in orphans(dir, &path)? {
        let mut lines = Vec::new();
        for record in &records {
            lines.extend(serde_json::to_vec(record).map_err(|e| Error::Payload(e.to_string()))?);
            lines.push(b'\n');
        }
        file.write_all(&lines)
            .and_then(|()| file.sync_data())
            .map_err(|e| fail("copy an old journal", e))?;
        std::fs::remove_file(&orphan).map_err(|e| fail("remove an adopted journal", e))?;
        drop(held);
        tracing::warn!(journal = %orphan.display(), writes = records.len(), "reliable push: adopted a journal its writer left; its jobs are pushed first");
        for record in records {
            state.jobs += record.jobs;
            state.pending.push_back(record);
        }
    }
    Ok((path, file))
}

/// The journals in `dir` nobody holds (besides `ours`), each with its file (locked by
/// this process until the caller drops it) and its records, oldest first.
pub(crate) fn orphans(dir: &Path, ours: &Path) -> Result<Vec<(PathBuf, File, Vec<Record>)>> {
    Ok(journals(dir)?
        .into_iter()
        .filter(|(path, _, locked)| path != ours && !locked)
        .map(|(path, file, _)| {
            let records = read_records(&file);
            (path, file, records)
        })
        .collect())
}

/// Every journal in `dir`: its path, its file (locked by this call when nobody else held
/// it), and whether another process holds it.
pub(crate) fn journals(dir: &Path) -> Result<Vec<(PathBuf, File, bool)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("reliable push: cannot read {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("spool-") && name.ends_with(".jsonl")) {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        let locked = file.try_lock().is_err();
        out.push((path, file, locked));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The records of a journal; a last line torn by a crash mid-write is left out (its push
/// never returned).
pub(crate) fn read_records(file: &File) -> Vec<Record> {
    let mut records = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Record>(&line) {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::warn!(error = %e, "reliable push: a journal line does not read (torn by a crash?); left out");
            }
        }
    }
    records
}
