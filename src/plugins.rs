//! Plugins: long-running tasks a server supervises, such as the poller that moves due
//! scheduled and retry jobs and the recovery of dead processes' jobs (the two built in).
//!
//! A plugin starts after the server has registered, is told to stop when the server goes
//! quiet or stops ([`PluginContext::stopping`]), and is restarted with backoff (1 s
//! doubling to a minute) if it returns an error or panics; its errors are logged. Periodic
//! jobs, pruning and limits are built this way.
//!
//! ```
//! use psychiq::middleware::BoxFuture;
//! use psychiq::plugins::{Plugin, PluginContext};
//! use std::sync::Arc;
//!
//! /// Logs the size of the default queue every minute.
//! struct QueueWatch;
//!
//! impl Plugin for QueueWatch {
//!     fn name(&self) -> &str { "queue-watch" }
//!     fn run(self: Arc<Self>, mut ctx: PluginContext) -> BoxFuture<'static, Result<(), String>> {
//!         Box::pin(async move {
//!             use redis::AsyncCommands;
//!             let mut conn = ctx.connection();
//!             let key = ctx.keys().queue("default");
//!             while !ctx.is_stopping() {
//!                 let size: u64 = conn.llen(&key).await.map_err(|e| e.to_string())?;
//!                 tracing::info!(size, "default queue");
//!                 ctx.sleep(std::time::Duration::from_secs(60)).await;
//!             }
//!             Ok(())
//!         })
//!     }
//! }
//!
//! let mut server = psychiq::Server::new(Default::default(), psychiq::Registry::new());
//! server.plugin(QueueWatch);
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::job::middleware::BoxFuture;
use crate::store::connection::Connection;
use crate::store::keys::Keys;

/// A long-running task of a server.
pub trait Plugin: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Runs until [`PluginContext::stopping`]; `Err` (or a panic) has it restarted.
    fn run(self: Arc<Self>, ctx: PluginContext) -> BoxFuture<'static, Result<(), String>>;

    /// Whether it goes on while the server is quiet (told to stop only at shutdown). Most
    /// plugins stop on quiet; orphan recovery goes on, so a fleet quieted for a deploy
    /// still puts back a crashed process's jobs.
    fn runs_while_quiet(&self) -> bool {
        false
    }
}

/// What a plugin is given: the server's Redis connection and keys, its identity, and the
/// signal to stop.
#[derive(Clone)]
pub struct PluginContext {
    conn: Connection,
    keys: Keys,
    identity: Arc<str>,
    stop: watch::Receiver<bool>,
}

impl PluginContext {
    /// The server's shared connection (cheap to clone).
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// The server's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The server process's identity (`host:pid:hex`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether the server has gone quiet or is stopping: return soon.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes when the server goes quiet or stops.
    pub async fn stopping(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration`, or less if the server stops meanwhile.
    pub async fn sleep(&mut self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.stopping() => {}
        }
    }
}

/// Runs `plugin` until the server stops, restarting it with backoff when it fails.
pub(crate) async fn supervise(
    plugin: Arc<dyn Plugin>,
    conn: Connection,
    keys: Keys,
    identity: Arc<str>,
    stop: watch::Receiver<bool>,
) {
    let ctx = PluginContext {
        conn,
        keys,
        identity,
        stop,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let (plugin_run, ctx_run) = (Arc::clone(&plugin), ctx.clone());
        // Built inside the catcher: `run` may panic before its future exists.
        let run = Box::pin(async move { plugin_run.run(ctx_run).await });
        let result = crate::job::unwind::CatchUnwind::new(AssertUnwindSafe(run)).await;
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => "it panicked".to_string(),
        };
        if ctx.is_stopping() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1); // it had been healthy for a while
        }
        tracing::error!(
            plugin = plugin.name(),
            error,
            "plugin failed; restarting it in {backoff:?}"
        );
        let mut waiting = ctx.clone();
        waiting.sleep(backoff).await;
        if ctx.is_stopping() {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
