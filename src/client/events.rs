//! Reading the stream of job events (see [`crate::job_events`]) as it grows.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::client::Client;
use crate::error::Result;
use crate::job::job_events::Event;
use crate::store::config::RedisConfig;
use crate::store::connection::Connection;

/// How long one `XREAD` blocks.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries read at most per round trip.
const PAGE: usize = 500;

/// The events written after a point, read as they come, on a connection of its own.
///
/// ```no_run
/// # async fn demo(client: psychiq::Client) -> psychiq::Result<()> {
/// let mut events = client.events().await?;
/// while let Some(event) = events.next().await {
///     let event = event?;
///     println!("{} {} {}", event.kind, event.class, event.jid);
/// }
/// # Ok(()) }
/// ```
pub struct EventStream {
    config: RedisConfig,
    conn: Option<Connection>,
    key: String,
    /// The last entry read (the stream's end when it was opened).
    last: String,
    buffered: VecDeque<Event>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("key", &self.key)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The events written from now on.
    pub async fn events(&self) -> Result<EventStream> {
        let mut stream = self.events_after("0-0").await?;
        let newest: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(&stream.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(stream.conn.as_mut().expect("just connected"))
            .await
            .map_err(|e| stream.config.redis_error(e))?;
        if let Some((id, _)) = newest.into_iter().next() {
            stream.last = id;
        }
        Ok(stream)
    }

    /// The events written after entry `id` (`"0-0"`: all the stream still holds).
    pub async fn events_after(&self, id: &str) -> Result<EventStream> {
        let (_, config) = self.redis("the event stream")?;
        let conn = config
            .connect_with_timeout(BLOCK + crate::store::config::COMMAND_TIMEOUT)
            .await?;
        Ok(EventStream {
            config: config.clone(),
            conn: Some(conn),
            key: self.keys.events(),
            last: id.to_string(),
            buffered: VecDeque::new(),
        })
    }
}

impl EventStream {
    /// The next event, waiting for it; an error only for one waiting will not cure (a
    /// dropped connection is reopened).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some(Ok(event));
            }
            if let Err(e) = self.read().await {
                if !e.is_retryable() {
                    return Some(Err(e));
                }
                self.conn = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// The entry id of the last event read: open a stream after it to go on from there.
    pub fn last_id(&self) -> &str {
        &self.last
    }

    /// As a [`futures_util::Stream`], for stream combinators.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Event>> + Send {
        futures_util::stream::unfold(self, |mut events| async move {
            let next = events.next().await?;
            Some((next, events))
        })
    }

    /// One blocking read into the buffer.
    async fn read(&mut self) -> Result<()> {
        if self.conn.is_none() {
            let conn = self
                .config
                .connect_with_timeout(BLOCK + crate::store::config::COMMAND_TIMEOUT)
                .await?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        type Entries = Vec<(String, HashMap<String, String>)>;
        let read: Option<Vec<(String, Entries)>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(PAGE)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last)
            .query_async(conn)
            .await
            .map_err(|e| self.config.redis_error(e))?;
        for (_, entries) in read.unwrap_or_default() {
            for (id, fields) in entries {
                self.last.clone_from(&id);
                if let Some(event) = Event::from_entry(id, fields) {
                    self.buffered.push_back(event);
                }
            }
        }
        Ok(())
    }
}
