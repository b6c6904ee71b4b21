//! Fetching jobs: which queue to take from next, and the blocking pop that takes it.
//!
//! Queues are given as `NAME[,WEIGHT]`. With no weights the order is strict: a job is
//! taken from the first queue that has one, so higher queues can starve lower ones.
//! With weights, every fetch shuffles a list holding each queue `weight` times and keeps
//! the first occurrence of each, so a queue comes first with probability proportional to
//! its weight (Sidekiq's algorithm).
//!
//! Reliable fetch (the default) moves up to as many jobs as there are free slots, in that
//! order, from the queues into this process's in-progress hashes with one Lua call (one
//! `RPOP key count` and one `HSET` per queue), and when they are empty waits for a push with
//! a `BLMOVE` that leaves the queue as it was; a job stays in the in-progress hash, under a
//! slot number unique in this process, until it is acknowledged. Basic fetch is Sidekiq OSS's `BRPOP`. Both use a connection of their own,
//! so a blocking wait never holds up other commands.
//!
//! Both skip paused queues (the `paused` set): reliable fetch in the same Lua step that
//! takes, basic fetch from a look at the set at most every half second.
//!
//! Reliable fetch takes a queue's priority lists (`prio:9:QUEUE` down to `prio:1:QUEUE`,
//! for the queues in the `prioritized` set) before its own list; basic fetch knows none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::store::connection::Connection;
use crate::store::scripts::FETCH;
use rand::seq::SliceRandom;
use redis::Script;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::server::work::UnitOfWork;
use crate::store::keys::Keys;

/// How long one `BRPOP` (basic fetch) waits for a job before returning empty (and checking
/// for shutdown): it pops, so it cannot be abandoned.
const BRPOP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long reliable fetch waits for a push to an empty queue, as Sidekiq's `BRPOP` does; it
/// takes nothing, so a quiet abandons it at once. Idle, that is one command every 2 s.
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a fetch command may block: the fetch connection's reply timeout adds it.
pub(crate) const FETCH_TIMEOUT: Duration = WAIT_TIMEOUT;

/// Queues one reliable fetch call looks at: a server with more asks window by window, in
/// its order, until one has work (with as many queues as most servers have, one call).
const FETCH_WINDOW: usize = 64;

/// How soon a server looks again while jobs wait in groups of its queues.
const GROUP_LOOK: Duration = Duration::from_millis(50);

/// How often a server whose queues are all paused looks again (a resume takes effect within
/// it), and how often basic fetch reads the paused set.
const PAUSE_LOOK: Duration = Duration::from_millis(500);

/// A queue to serve and its weight (0 = no weight given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub(crate) name: String,
    pub(crate) weight: u32,
}

impl QueueSpec {
    /// The queue name, without the `queue:` prefix.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its weight; when every queue has 0 the order is strict.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Parses `NAME` or `NAME,WEIGHT`, as the `-q` flag takes it.
    ///
    /// ```
    /// use psychiq::QueueSpec;
    /// assert_eq!(QueueSpec::parse("critical,3").unwrap().weight(), 3);
    /// assert_eq!(QueueSpec::parse("default").unwrap().weight(), 0);
    /// assert!(QueueSpec::parse("low,x").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<QueueSpec> {
        let (name, weight) = match spec.rsplit_once(',') {
            Some((name, weight)) => {
                let weight = weight.trim().parse::<u32>().map_err(|_| {
                    Error::Other(format!(
                        "queue {spec:?}: the weight after the comma must be a whole number, e.g. {name},2"
                    ))
                })?;
                (name, weight)
            }
            None => (spec, 0),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Other(format!(
                "queue {spec:?}: the queue name is empty"
            )));
        }
        Ok(QueueSpec {
            name: name.to_string(),
            weight,
        })
    }
}

/// How jobs are taken from their queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FetchMode {
    /// Crash-safe (the default): a job moves atomically from its queue into this process's
    /// in-progress hash and leaves it only when it has finished, failed into `retry` or
    /// died into `dead`. If the process dies, live processes put its jobs back.
    #[default]
    Reliable,
    /// Sidekiq OSS's `BRPOP`: a job in flight is lost if the process dies.
    Basic,
}

/// One queue as the fetcher sees it.
struct Source {
    name: Arc<str>,
    key: String,
    /// The set of paused queue names the fetch script reads for it (all share one in
    /// Sidekiq's layout; each queue has its own in the cluster layout).
    paused_key: String,
    /// This process's in-progress hash for the queue.
    inprogress: Arc<str>,
}

/// Takes jobs from the configured queues.
pub(crate) struct Fetcher {
    conn: Connection,
    mode: FetchMode,
    /// The queues in configured order, de-duplicated.
    sources: Vec<Source>,
    /// Indexes into `sources`, each repeated by weight; `None` when the order is strict.
    weighted: Option<Vec<usize>>,
    /// The last fetch found nothing: with a single queue, go straight back to blocking.
    idle: AtomicBool,
    /// The next in-progress slot number; each fetch reserves as many as it asks for.
    next_slot: AtomicU64,
    /// The set of paused queue names.
    paused_key: String,
    /// Whether each of `sources` was paused when last looked (by the last reliable fetch,
    /// or by basic fetch's look at most every [`PAUSE_LOOK`]).
    paused: Vec<AtomicBool>,
    /// When basic fetch last read the paused set.
    paused_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// Turns true when the server goes quiet: a wait for work ends then.
    quiet: watch::Receiver<bool>,
    /// The last fetch saw jobs waiting in groups: look again soon instead of blocking.
    groups_waiting: AtomicBool,
    /// Told when a job of this process gives up its group's slot.
    group_freed: Arc<tokio::sync::Notify>,
    /// Cluster layout: each queue is in its own slot, so a fetch takes queue by queue.
    per_queue: bool,
    /// The key prefix the fetch script finds priority lists under (`""` for bare keys);
    /// `None` in the cluster layout, which has none.
    prefix: Option<String>,
}

impl Fetcher {
    pub fn new(
        conn: Connection,
        keys: &Keys,
        specs: &[QueueSpec],
        mode: FetchMode,
        identity: &str,
        quiet: watch::Receiver<bool>,
    ) -> Fetcher {
        let mut sources: Vec<Source> = Vec::new();
        let mut weights: Vec<u32> = Vec::new();
        for spec in specs {
            match sources.iter().position(|s| *s.name == *spec.name) {
                Some(i) => weights[i] = weights[i].max(spec.weight),
                None => {
                    sources.push(Source {
                        name: Arc::from(spec.name.as_str()),
                        key: keys.queue(&spec.name),
                        paused_key: keys.paused_of(&spec.name),
                        inprogress: Arc::from(keys.inprogress(identity, &spec.name)),
                    });
                    weights.push(spec.weight);
                }
            }
        }
        let weighted = weights.iter().any(|&w| w > 0).then(|| {
            weights
                .iter()
                .enumerate()
                .flat_map(|(i, &w)| std::iter::repeat_n(i, w.max(1) as usize))
                .collect()
        });
        Fetcher {
            conn,
            mode,
            paused: sources.iter().map(|_| AtomicBool::new(false)).collect(),
            sources,
            weighted,
            idle: AtomicBool::new(false),
            next_slot: AtomicU64::new(1),
            paused_key: keys.paused(),
            paused_read: std::sync::Mutex::new(None),
            quiet,
            per_queue: keys.is_cluster(),
            groups_waiting: AtomicBool::new(false),
            group_freed: Arc::default(),
            prefix: (!keys.is_cluster()).then(|| keys.prefix().to_string()),
        }
    }

    /// Looks again at once when `freed` is told a group's slot was given up (instead of
    /// after [`GROUP_LOOK`]).
    pub fn waking_on(mut self, freed: Arc<tokio::sync::Notify>) -> Fetcher {
        self.group_freed = freed;
        self
    }

    /// The queues, as indexes into `sources`, in the order this fetch should try them.
    fn order(&self) -> Vec<usize> {
        match &self.weighted {
            None => (0..self.sources.len()).collect(),
            Some(expanded) => {
                let mut shuffled = expanded.clone();
                shuffled.shuffle(&mut rand::rng());
                let mut seen = vec![false; self.sources.len()];
                shuffled
                    .into_iter()
                    .filter(|&i| !std::mem::replace(&mut seen[i], true))
                    .collect()
            }
        }
    }

    /// (queue name, this process's in-progress hash) for each queue; empty for basic fetch.
    pub fn inprogress_hashes(&self) -> Vec<(Arc<str>, Arc<str>)> {
        if self.mode != FetchMode::Reliable {
            return Vec::new();
        }
        self.sources
            .iter()
            .map(|s| (Arc::clone(&s.name), Arc::clone(&s.inprogress)))
            .collect()
    }

    /// Whether fetches may run side by side on the fetch connection (reliable fetch never
    /// blocks while another fetch is in flight; `BRPOP` always may).
    pub fn can_overlap(&self) -> bool {
        self.mode == FetchMode::Reliable
    }

    /// Takes up to `max` jobs. When every queue is empty it waits up to about
    /// [`FETCH_TIMEOUT`] if `may_block` (less if the server goes quiet), else returns at
    /// once with none.
    pub async fn fetch(&self, max: usize, may_block: bool) -> redis::RedisResult<Vec<UnitOfWork>> {
        let order = self.order();
        match self.mode {
            FetchMode::Basic => self.pop_one(&order).await,
            FetchMode::Reliable => {
                let single = self.sources.len() == 1;
                if may_block && single && self.idle.load(Ordering::Relaxed) {
                    // Nothing was there last time: wait first, then take.
                    if !self.wait_for_work(&order).await? {
                        return Ok(Vec::new());
                    }
                    return self.take(&order, max).await;
                }
                let jobs = self.take(&order, max).await?;
                if !jobs.is_empty() || !may_block {
                    return Ok(jobs);
                }
                // Nothing waiting: block on the first open queue of this round, then take.
                if self.wait_for_work(&order).await? {
                    self.take(&order, max).await
                } else {
                    Ok(Vec::new())
                }
            }
        }
    }

    /// Basic fetch: one `BRPOP` over the queues in order that are not paused.
    async fn pop_one(&self, order: &[usize]) -> redis::RedisResult<Vec<UnitOfWork>> {
        self.read_paused().await?;
        let open: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| !self.paused[i].load(Ordering::Relaxed))
            .collect();
        if open.is_empty() {
            self.nap().await;
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("BRPOP");
        for &i in &open {
            cmd.arg(&self.sources[i].key);
        }
        cmd.arg(BRPOP_TIMEOUT.as_secs());
        let popped: Option<(Vec<u8>, Vec<u8>)> = cmd.query_async(&mut self.conn.clone()).await?;
        Ok(popped
            .map(|(key, raw)| {
                let index = self
                    .sources
                    .iter()
                    .position(|s| s.key.as_bytes() == key)
                    .unwrap_or(0);
                let queue = Arc::clone(&self.sources[index].name);
                UnitOfWork::unheld(queue, Arc::from(raw))
            })
            .into_iter()
            .collect())
    }

    /// Reliable fetch: moves up to `max` jobs into the in-progress hashes, one Lua call per
    /// [`FETCH_WINDOW`] queues, in order, until a call takes some (in the cluster layout,
    /// one call per queue until it has `max`). A call names each of its queues twice (list and in-progress hash) and looks
    /// in each; with 10,000 queues one call for all of them made every fetch touch 20,000
    /// keys, and the drain ran 66 times slower than on one queue.
    async fn take(&self, order: &[usize], max: usize) -> redis::RedisResult<Vec<UnitOfWork>> {
        let window = if self.per_queue { 1 } else { FETCH_WINDOW };
        if order.len() <= window {
            return self.take_from(order, max).await;
        }
        let mut jobs = Vec::new();
        let mut groups_waiting = false;
        for queues in order.chunks(window) {
            let taken = self.take_from(queues, max - jobs.len()).await?;
            groups_waiting |= self.groups_waiting.load(Ordering::Relaxed);
            // A recovered suspect taken first is run alone, as with one call (in the cluster
            // layout one found in a later queue's call may join the jobs taken before it).
            let alone = taken.len() == 1 && taken[0].is_suspect();
            jobs.extend(taken);
            // Windows: the batch is one call's, so a suspect (which a call takes only as its
            // first job) never joins jobs another call took.
            if jobs.len() >= max || alone || (!self.per_queue && !jobs.is_empty()) {
                break;
            }
        }
        // Any window with a group waiting for room counts (each call says for its own).
        self.groups_waiting.store(groups_waiting, Ordering::Relaxed);
        Ok(jobs)
    }

    /// One fetch script call over the queues `order` (all in one slot unless the layout
    /// is Sidekiq's).
    async fn take_from(&self, order: &[usize], max: usize) -> redis::RedisResult<Vec<UnitOfWork>> {
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FETCH));
        // Slots are reserved before the call, so fetches side by side never share one.
        let first = self.next_slot.fetch_add(max as u64, Ordering::Relaxed);
        let mut invocation = SCRIPT.prepare_invoke();
        invocation.key(&self.sources[order[0]].paused_key);
        for &i in order {
            invocation
                .key(&self.sources[i].key)
                .key(&*self.sources[i].inprogress);
        }
        invocation.arg(max).arg(first);
        for &i in order {
            invocation.arg(&*self.sources[i].name);
        }
        if let Some(prefix) = &self.prefix {
            invocation.arg(prefix);
        }
        // Positions are ASCII; jobs are whatever bytes the queue held (UTF-8 or not: a
        // payload that is not is a bad job for the processor to report, never a fetch error).
        let flat: Vec<Vec<u8>> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let mut jobs = Vec::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        if let Some(skipped) = items.next() {
            self.note_paused(order, &skipped);
        }
        let mut slot = first;
        while let (Some(position), Some(raw)) = (items.next(), items.next()) {
            let position: usize = std::str::from_utf8(&position)
                .ok()
                .and_then(|p| p.trim_start_matches('s').parse().ok())
                .unwrap_or(0);
            let source = &self.sources[order[position]];
            jobs.push(UnitOfWork::held(
                Arc::clone(&source.name),
                Arc::from(raw),
                Arc::clone(&source.inprogress),
                slot,
            ));
            slot += 1;
        }
        Ok(jobs)
    }

    /// Records which queues of `order` the fetch script found paused (`skipped`: their
    /// positions in `order`, comma-separated).
    fn note_paused(&self, order: &[usize], skipped: &[u8]) {
        let waiting = skipped.ends_with(b"|g");
        self.groups_waiting.store(waiting, Ordering::Relaxed);
        let skipped = skipped.strip_suffix(b"|g").unwrap_or(skipped);
        let mut paused = vec![false; order.len()];
        for position in skipped.split(|&b| b == b',') {
            if let Some(p) = std::str::from_utf8(position)
                .ok()
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|&p| p < order.len())
            {
                paused[p] = true;
            }
        }
        for (position, &index) in order.iter().enumerate() {
            self.paused[index].store(paused[position], Ordering::Relaxed);
        }
    }

    /// Basic fetch: reads the paused set, at most every [`PAUSE_LOOK`].
    async fn read_paused(&self) -> redis::RedisResult<()> {
        {
            let mut read = self.paused_read.lock().expect("paused lock");
            if read.is_some_and(|at| at.elapsed() < PAUSE_LOOK) {
                return Ok(());
            }
            *read = Some(std::time::Instant::now());
        }
        let names: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
            .arg(&self.paused_key)
            .query_async(&mut self.conn.clone())
            .await?;
        for (source, paused) in self.sources.iter().zip(&self.paused) {
            let is_paused = names.iter().any(|n| n.as_slice() == source.name.as_bytes());
            paused.store(is_paused, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Waits [`PAUSE_LOOK`] (less if the server goes quiet): every queue is paused.
    async fn nap(&self) {
        let mut quiet = self.quiet.clone();
        tokio::select! {
            _ = tokio::time::sleep(PAUSE_LOOK) => {}
            _ = quiet.wait_for(|quiet| *quiet) => {}
        }
    }

    /// Blocks until the first queue of `order` that is not paused has a job, without
    /// taking it: `BLMOVE` from the tail to the tail of the same list changes nothing but
    /// wakes on a push. Returns whether to take now. With several queues the wait is
    /// shorter, so the others are looked at again soon; with every queue paused it naps for
    /// [`PAUSE_LOOK`] and says to take, which looks at the pauses again. Going quiet ends
    /// the wait: nothing was taken, and the fetch connection is not used again.
    async fn wait_for_work(&self, order: &[usize]) -> redis::RedisResult<bool> {
        let Some(index) = order
            .iter()
            .copied()
            .find(|&i| !self.paused[i].load(Ordering::Relaxed))
        else {
            self.nap().await;
            return Ok(!*self.quiet.borrow());
        };
        if self.groups_waiting.load(Ordering::Relaxed) {
            // Grouped jobs wait for a slot or their turn, which a release gives without a
            // push to the queue's list: look again soon.
            let mut quiet = self.quiet.clone();
            tokio::select! {
                _ = tokio::time::sleep(GROUP_LOOK) => {}
                _ = self.group_freed.notified() => {}
                _ = quiet.wait_for(|quiet| *quiet) => return Ok(false),
            }
            self.idle.store(false, Ordering::Relaxed);
            return Ok(true);
        }
        let wait = if self.sources.len() == 1 {
            WAIT_TIMEOUT
        } else {
            BRPOP_TIMEOUT / 2
        };
        let source = &self.sources[index];
        let mut conn = self.conn.clone();
        let mut blmove = redis::cmd("BLMOVE");
        blmove
            .arg(&source.key)
            .arg(&source.key)
            .arg("RIGHT")
            .arg("RIGHT")
            .arg(wait.as_secs_f64());
        let mut quiet = self.quiet.clone();
        let seen: Option<redis::Value> = tokio::select! {
            seen = blmove.query_async(&mut conn) => seen?,
            _ = quiet.wait_for(|quiet| *quiet) => return Ok(false),
        };
        self.idle.store(seen.is_none(), Ordering::Relaxed);
        Ok(seen.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fetch script sent twice with the same slots (a cluster client's resend after a
    /// lost reply) answers the second time with what the first took, and takes nothing more.
    #[tokio::test]
    async fn a_fetch_sent_twice_takes_once() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ns = format!("psychiq-unit-{}", crate::job::payload::new_jid());
        let (paused, queue, hash) = (
            format!("{ns}:paused"),
            format!("{ns}:queue:a"),
            format!("{ns}:inprogress:a"),
        );
        let _: () = redis::cmd("LPUSH")
            .arg(&queue)
            .arg(&["j1", "j2", "j3", "j4", "j5"][..])
            .query_async(&mut conn)
            .await
            .unwrap();
        let script = Script::new(FETCH);
        let fetch = || {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&paused)
                .key(&queue)
                .key(&hash)
                .arg(3)
                .arg(100)
                .arg("a");
            invocation
        };
        let first: Vec<String> = fetch().invoke_async(&mut conn).await.unwrap();
        let again: Vec<String> = fetch().invoke_async(&mut conn).await.unwrap();
        assert_eq!(first, ["", "0", "j1", "0", "j2", "0", "j3"]);
        assert_eq!(again, first);
        let left: Vec<String> = redis::cmd("LRANGE")
            .arg(&queue)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, ["j5", "j4"]);
        let held: Vec<String> = redis::cmd("HVALS")
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(held.len(), 3);
        let _: () = redis::cmd("DEL")
            .arg(&queue)
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// With bare keys (Sidekiq's default, an empty prefix) priority lists are taken too,
    /// before the queue's own, higher first; the queue leaves `prioritized` once they are
    /// empty.
    #[tokio::test]
    async fn priority_lists_are_taken_first_with_bare_keys_too() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // Bare keys, under a queue name of its own.
        let name = format!("psychiq-unit-{}", crate::job::payload::new_jid());
        let (queue, hash) = (format!("queue:{name}"), format!("inprogress:{name}"));
        let (p9, p3) = (format!("prio:9:{name}"), format!("prio:3:{name}"));
        let mut pipe = redis::pipe();
        pipe.lpush(&queue, "plain").ignore();
        pipe.lpush(&p3, "three").ignore();
        pipe.lpush(&p9, "nine").ignore();
        pipe.sadd("prioritized", &name).ignore();
        let () = pipe.query_async(&mut conn).await.unwrap();
        let taken: Vec<String> = Script::new(FETCH)
            .key("paused")
            .key(&queue)
            .key(&hash)
            .arg(10)
            .arg(1)
            .arg(&name)
            .arg("")
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(taken, ["", "0", "nine", "0", "three", "0", "plain"]);
        let still: bool = redis::cmd("SISMEMBER")
            .arg("prioritized")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!still, "the queue has no priority list left");
        let _: () = redis::cmd("DEL")
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[test]
    fn queue_specs_split_at_the_last_comma() {
        let spec = QueueSpec::parse("a,b,2").unwrap();
        assert_eq!((spec.name.as_str(), spec.weight), ("a,b", 2));
        assert!(QueueSpec::parse(",2").is_err());
    }
}
