//! Middleware: code that runs around every job's `perform` ([`ServerMiddleware`]), or
//! before every push ([`ClientMiddleware`]), in the order registered.
//!
//! ## Server middleware
//!
//! A middleware sees the job ([`JobContext`]: class, jid, queue, args, retry count and every
//! payload field), runs code before and after calling [`Next::run`], and returns the job's
//! [`Outcome`]: the one it got, a changed one, or its own without running the job at all
//! (`Outcome::Skipped` to skip it, `Outcome::Failed` to fail it, `Outcome::Snoozed` to run
//! it later). A middleware that panics fails the job like a job that panics; the server
//! goes on. With no middleware registered, a job costs exactly what it did without them.
//!
//! A middleware is an `async fn`, as a worker's `perform` is:
//!
//! ```
//! use psychiq::middleware::{Next, ServerMiddleware};
//! use psychiq::{context::JobContext, Outcome};
//!
//! /// Logs how long each job took.
//! struct Timing;
//!
//! impl ServerMiddleware for Timing {
//!     async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
//!         let started = std::time::Instant::now();
//!         let outcome = next.run().await;
//!         println!("{} {} took {:?}: {outcome:?}", job.class(), job.jid(), started.elapsed());
//!         outcome
//!     }
//! }
//!
//! let mut server = psychiq::Server::new(Default::default(), psychiq::Registry::new());
//! server.middleware().add(Timing);
//! ```

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::job::builder::Job;
use crate::job::context::JobContext;
use crate::job::failure::{JobError, Wish};

/// A client middleware: sees every job a [`crate::Client`] pushes (single, bulk, scheduled,
/// raw [`crate::Job`]s, and jobs workers push with a client that has the chain), before it
/// is written. It may change it ([`Job::set_option`], [`Job::set_queue`]) or refuse it:
/// `Err(reason)`, and nothing is written ([`crate::Client::try_push`] returns
/// `Push::Refused`, `push` returns [`crate::Error::NotPushed`]).
///
/// Jobs the poller moves from the schedule or retry set to their queues are not passed
/// through it again: they were when first pushed.
///
/// ```
/// use psychiq::middleware::ClientMiddleware;
/// use psychiq::Job;
///
/// /// Stamps every job with the tenant it was pushed for.
/// struct Tenant(&'static str);
///
/// impl ClientMiddleware for Tenant {
///     async fn call(&self, job: &mut Job) -> Result<(), String> {
///         job.set_option("tenant_id", self.0.into());
///         Ok(())
///     }
/// }
/// # async fn demo() -> psychiq::Result<()> {
/// let mut client = psychiq::Client::connect(&Default::default(), "").await?;
/// client.middleware().add(Tenant("acme"));
/// # Ok(()) }
/// ```
pub trait ClientMiddleware: Send + Sync + 'static {
    /// Changes `job` in place, or refuses it with a reason.
    fn call(&self, job: &mut Job) -> impl Future<Output = Result<(), String>> + Send;
}

/// A [`ClientMiddleware`] as a chain holds it, behind a pointer (implemented for every
/// client middleware; nothing to write).
pub trait ErasedClientMiddleware: Send + Sync + 'static {
    /// [`ClientMiddleware::call`], boxed.
    fn call_boxed<'a>(&'a self, job: &'a mut Job) -> BoxFuture<'a, Result<(), String>>;
}

impl<T: ClientMiddleware> ErasedClientMiddleware for T {
    fn call_boxed<'a>(&'a self, job: &'a mut Job) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.call(job))
    }
}

/// The client's chain.
pub type ClientChain = Chain<dyn ErasedClientMiddleware>;

impl Chain<dyn ErasedClientMiddleware> {
    /// Runs every middleware on `job`, in order, until one refuses it. A middleware that
    /// panics refuses the job (the panic is logged).
    pub(crate) async fn admit(&self, job: &mut Job) -> Result<(), String> {
        for entry in &self.entries {
            // Built inside the catcher: `call` may panic before its future exists.
            let middleware = &entry.middleware;
            let job = &mut *job;
            let call =
                std::panic::AssertUnwindSafe(Box::pin(
                    async move { middleware.call_boxed(job).await },
                ));
            match crate::job::unwind::CatchUnwind::new(call).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(reason),
                Err(_) => {
                    tracing::error!("a client middleware panicked; the job was not pushed");
                    return Err("a client middleware panicked".to_string());
                }
            }
        }
        Ok(())
    }
}

/// A boxed, sendable future, as middleware return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a job's run ended, as the server writes it to Redis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded: acknowledged and counted.
    Done,
    /// It failed (also a panic, `Panic`, and a timeout, `Psychiq::JobTimeout`): the retry
    /// rules decide whether it runs again or goes to the dead set.
    Failed(JobError),
    /// Run it again after this long: it goes back to the schedule, not counted as a failure,
    /// its retry count unchanged (what a rate limit answers).
    Snoozed(Duration),
    /// Dropped on purpose, with the reason: acknowledged, counted and logged, never retried
    /// (an expired job, say).
    Discarded(String),
    /// Not run at all, with the reason: acknowledged, counted and logged.
    Skipped(String),
    /// Cancelled (before or while it ran): never retried, pushed back or recovered; a
    /// batch counts it as a death and a unique lock goes.
    Cancelled,
}

impl Outcome {
    /// Whether this is [`Outcome::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }
}

/// A server middleware. `call` (an `async fn`) must call `next.run().await` to run the rest
/// of the chain and the job, or return an outcome of its own instead.
pub trait ServerMiddleware: Send + Sync + 'static {
    /// Runs around the rest of the chain.
    fn call(&self, job: &JobContext, next: Next<'_>) -> impl Future<Output = Outcome> + Send;

    /// Whether it has anything to do for the job whose payload is `payload` (yes, unless
    /// it says otherwise). When no middleware of the chain wants a job, the server runs it
    /// as if the chain were empty, with no boxed future and no dynamic call, so a
    /// middleware that acts only on jobs carrying a field (a batch's `bid`) costs the
    /// others a substring search.
    fn wants(&self, payload: &str) -> bool {
        let _ = payload;
        true
    }
}

/// A [`ServerMiddleware`] as a chain holds it, behind a pointer (implemented for every
/// server middleware; nothing to write).
pub trait ErasedServerMiddleware: Send + Sync + 'static {
    /// [`ServerMiddleware::call`], boxed.
    fn call_boxed<'a>(&'a self, job: &'a JobContext, next: Next<'a>) -> BoxFuture<'a, Outcome>;
    /// [`ServerMiddleware::wants`].
    fn wants_payload(&self, payload: &str) -> bool;
}

impl<T: ServerMiddleware> ErasedServerMiddleware for T {
    fn call_boxed<'a>(&'a self, job: &'a JobContext, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.call(job, next))
    }
    fn wants_payload(&self, payload: &str) -> bool {
        self.wants(payload)
    }
}

/// The rest of the chain, then the job.
pub struct Next<'a> {
    rest: &'a [Entry<dyn ErasedServerMiddleware>],
    job: &'a JobContext,
    perform: BoxFuture<'static, Outcome>,
}

impl<'a> Next<'a> {
    /// The chain before `perform`, the job's own run (its panics and timeout already turned
    /// into outcomes).
    pub(crate) fn new(
        chain: &'a ServerChain,
        job: &'a JobContext,
        perform: BoxFuture<'static, Outcome>,
    ) -> Self {
        Next {
            rest: &chain.entries,
            job,
            perform,
        }
    }

    /// Runs the next middleware, or the job itself after the last one.
    pub fn run(self) -> BoxFuture<'a, Outcome> {
        match self.rest.split_first() {
            None => self.perform,
            Some((first, rest)) => first.middleware.call_boxed(
                self.job,
                Next {
                    rest,
                    job: self.job,
                    perform: self.perform,
                },
            ),
        }
    }
}

impl JobError {
    /// The outcome this means: a failure, or what [`JobError::snooze`] or
    /// [`JobError::discard`] asked for.
    pub fn into_outcome(self) -> Outcome {
        match self.wish {
            Wish::Fail => Outcome::Failed(self),
            Wish::Snooze(delay) => Outcome::Snoozed(delay),
            Wish::Discard => Outcome::Discarded(self.message),
        }
    }
}

impl Outcome {
    /// What a worker's `perform` result means: `JobError::snooze` and `JobError::discard`
    /// ask for those outcomes.
    pub(crate) fn from_result(result: crate::JobResult) -> Outcome {
        match result {
            Ok(()) => Outcome::Done,
            Err(error) => error.into_outcome(),
        }
    }
}

struct Entry<M: ?Sized> {
    type_id: TypeId,
    middleware: Arc<M>,
}

/// An ordered list of middleware, added, inserted and removed by type as Sidekiq's
/// `Middleware::Chain` does by class.
pub struct Chain<M: ?Sized> {
    entries: Vec<Entry<M>>,
}

/// The server's chain.
pub type ServerChain = Chain<dyn ErasedServerMiddleware>;

impl ServerChain {
    /// Whether any of its middleware wants the job whose payload is `payload`.
    pub(crate) fn wanted_by(&self, payload: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.middleware.wants_payload(payload))
    }
}

impl<M: ?Sized> Default for Chain<M> {
    fn default() -> Self {
        Chain {
            entries: Vec::new(),
        }
    }
}

impl<M: ?Sized> Clone for Chain<M> {
    fn clone(&self) -> Self {
        Chain {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    type_id: e.type_id,
                    middleware: Arc::clone(&e.middleware),
                })
                .collect(),
        }
    }
}

impl<M: ?Sized> Chain<M> {
    /// How many middleware are in it.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty (then jobs run with no middleware cost at all).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a middleware of type `T` is in it.
    pub fn contains<T: 'static>(&self) -> bool {
        self.position::<T>().is_some()
    }

    /// Removes every middleware of type `T`.
    pub fn remove<T: 'static>(&mut self) -> &mut Self {
        self.entries.retain(|e| e.type_id != TypeId::of::<T>());
        self
    }

    fn position<T: 'static>(&self) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.type_id == TypeId::of::<T>())
    }

    /// Adds `middleware` last (for the server chain: innermost, nearest the job).
    pub fn add<T: Link<M>>(&mut self, middleware: T) -> &mut Self {
        self.place(middleware, |_| None)
    }

    /// Adds `middleware` first (for the server chain: outermost).
    pub fn prepend<T: Link<M>>(&mut self, middleware: T) -> &mut Self {
        self.place(middleware, |_| Some(0))
    }

    /// Inserts `middleware` just before the one of type `Before` (last if there is none).
    pub fn insert_before<Before: 'static, T: Link<M>>(&mut self, middleware: T) -> &mut Self {
        self.place(middleware, |chain| chain.position::<Before>())
    }

    /// Inserts `middleware` just after the one of type `After` (last if there is none).
    pub fn insert_after<After: 'static, T: Link<M>>(&mut self, middleware: T) -> &mut Self {
        self.place(middleware, |chain| chain.position::<After>().map(|i| i + 1))
    }

    /// Puts `middleware` where `at` says (last when it says nothing). A type appears once,
    /// as in Sidekiq: adding it again moves it, so its old entry goes before `at` looks.
    fn place<T: Link<M>>(
        &mut self,
        middleware: T,
        at: impl FnOnce(&Self) -> Option<usize>,
    ) -> &mut Self {
        let type_id = TypeId::of::<T>();
        self.entries.retain(|e| e.type_id != type_id);
        let at = at(self)
            .unwrap_or(self.entries.len())
            .min(self.entries.len());
        self.entries.insert(
            at,
            Entry {
                type_id,
                middleware: middleware.into_link(),
            },
        );
        self
    }
}

/// What a chain of `M` takes: every [`ServerMiddleware`] for the server's chain, every
/// [`ClientMiddleware`] for a client's. (Implemented for you; it only boxes the value.)
pub trait Link<M: ?Sized>: Send + Sync + 'static {
    /// The middleware as the chain holds it.
    fn into_link(self) -> Arc<M>;
}

impl<T: ServerMiddleware> Link<dyn ErasedServerMiddleware> for T {
    fn into_link(self) -> Arc<dyn ErasedServerMiddleware> {
        Arc::new(self)
    }
}

impl<T: ClientMiddleware> Link<dyn ErasedClientMiddleware> for T {
    fn into_link(self) -> Arc<dyn ErasedClientMiddleware> {
        Arc::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;
    struct C;
    impl ServerMiddleware for A {
        async fn call(&self, _: &JobContext, next: Next<'_>) -> Outcome {
            next.run().await
        }
    }
    impl ServerMiddleware for B {
        async fn call(&self, _: &JobContext, next: Next<'_>) -> Outcome {
            next.run().await
        }
    }
    impl ServerMiddleware for C {
        async fn call(&self, _: &JobContext, next: Next<'_>) -> Outcome {
            next.run().await
        }
    }

    fn order(chain: &ServerChain) -> Vec<TypeId> {
        chain.entries.iter().map(|e| e.type_id).collect()
    }

    #[test]
    fn add_insert_and_remove_by_type() {
        let mut chain = ServerChain::default();
        chain.add(A).add(C).insert_before::<C, _>(B);
        assert_eq!(
            order(&chain),
            [TypeId::of::<A>(), TypeId::of::<B>(), TypeId::of::<C>()]
        );
        chain.insert_after::<C, _>(A);
        assert_eq!(
            order(&chain),
            [TypeId::of::<B>(), TypeId::of::<C>(), TypeId::of::<A>()]
        );
        // Moving an entry next to one after it: [B, C, A] -> insert_before::<A>(B) -> [C, B, A].
        chain.insert_before::<A, _>(B);
        assert_eq!(
            order(&chain),
            [TypeId::of::<C>(), TypeId::of::<B>(), TypeId::of::<A>()]
        );
        chain.insert_after::<C, _>(A);
        assert_eq!(
            order(&chain),
            [TypeId::of::<C>(), TypeId::of::<A>(), TypeId::of::<B>()]
        );
        chain.remove::<C>();
        assert_eq!(order(&chain), [TypeId::of::<A>(), TypeId::of::<B>()]);
        assert!(chain.contains::<A>() && !chain.contains::<C>());
    }
}
