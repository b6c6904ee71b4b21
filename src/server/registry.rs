//! The registry: the workers a server runs, by class name (typed, raw and iterable
//! workers), and the periodic entries it declares. A server, the test mode and the command
//! line build one; the processor looks classes up in it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::job::worker::{RawWorker, Typed, Worker};

/// The workers a server can run, found by class name (never evaluated: a plain lookup).
///
/// ```
/// use psychiq::{JobResult, NoArgs, Registry, Worker};
/// struct Ping;
/// impl Worker for Ping {
///     type Args = NoArgs;
///     async fn perform(&self, _: NoArgs) -> JobResult { Ok(()) }
/// }
/// let mut registry = Registry::new();
/// registry.register(Ping);
/// assert_eq!(registry.class_names(), vec!["Ping".to_string()]);
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn RawWorker>>,
    /// The Rust type registered for each class, to name both when a class comes twice.
    types: HashMap<String, &'static str>,
    #[cfg(feature = "periodic")]
    periodic: Vec<crate::periodic::PeriodicJob>,
    /// The classes registered with [`Registry::register_iterable`].
    iterable: std::collections::HashSet<String>,
    /// Capsules declared beside the workers (a TOML file's `[capsules.NAME]`).
    capsules: Vec<crate::Capsule>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("classes", &self.class_names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a worker under its class name.
    ///
    /// # Panics
    ///
    /// When the class is registered already (two types named `Greet` in different modules
    /// both default to class `"Greet"`): each class has one worker, and the message names
    /// both types and how to tell them apart, as axum refuses a route given twice.
    pub fn register<W: Worker>(&mut self, worker: W) -> &mut Self {
        self.register_as(W::class_name(), worker)
    }

    /// Adds a worker under a class name of your choosing instead of its own (one worker type
    /// serving several classes, or a name decided at run time). Panics as
    /// [`Registry::register`] does when the class is registered already.
    pub fn register_as<W: Worker>(&mut self, class: impl Into<String>, worker: W) -> &mut Self {
        let handler = Typed {
            worker: Arc::new(worker),
            options: W::options(),
        };
        self.insert(class.into(), std::any::type_name::<W>(), Arc::new(handler));
        self
    }

    /// Adds a [`RawWorker`] (arguments as raw JSON) under `class`. Panics as
    /// [`Registry::register`] does when the class is registered already.
    pub fn register_raw<R: RawWorker>(&mut self, class: impl Into<String>, worker: R) -> &mut Self {
        self.insert(class.into(), std::any::type_name::<R>(), Arc::new(worker));
        self
    }

    /// Adds `handler` for `class`, refusing a second worker for one class.
    fn insert(&mut self, class: String, type_name: &'static str, handler: Arc<dyn RawWorker>) {
        if let Some(existing) = self.handlers.get(&class) {
            if Arc::ptr_eq(existing, &handler) {
                return;
            }
            let first = self.types.get(&class).copied().unwrap_or("another worker");
            panic!(
                "class {class:?} is registered twice, for {first} and for {type_name}; each class has \
                 one worker. Give one of them its own name: `fn class_name() -> String {{ \"Other\".into() }}` \
                 in its `impl Worker`, or `registry.register_as(\"Other\", worker)`"
            );
        }
        self.types.insert(class.clone(), type_name);
        self.handlers.insert(class, handler);
    }

    /// Adds a [`crate::ChunkWorker`] under its class name: its jobs are performed a chunk
    /// at a time, with an outcome each. Panics as [`Registry::register`] does when the
    /// class is registered already.
    pub fn register_chunked<W: crate::ChunkWorker>(&mut self, worker: W) -> &mut Self {
        let runner = crate::server::chunk::ChunkRunner::new(worker);
        self.insert(
            W::class_name(),
            std::any::type_name::<W>(),
            Arc::new(runner),
        );
        self
    }

    /// Adds an [`crate::iteration::IterableWorker`] under its class name: its jobs walk
    /// their collection in steps, resuming from a cursor saved in Redis.
    pub fn register_iterable<W: crate::iteration::IterableWorker>(
        &mut self,
        worker: W,
    ) -> &mut Self {
        let class = W::class_name();
        let handler = crate::iteration::Iterating {
            worker: Arc::new(worker),
            options: W::options(),
        };
        self.insert(class.clone(), std::any::type_name::<W>(), Arc::new(handler));
        self.iterable.insert(class);
        self
    }

    /// The classes whose jobs are iterable.
    pub(crate) fn iterable_classes(&self) -> std::collections::HashSet<String> {
        self.iterable
            .iter()
            .filter(|class| self.handlers.contains_key(*class))
            .cloned()
            .collect()
    }

    /// Adds every worker (and periodic entry, and capsule) of `other`. Panics as [`Registry::register`]
    /// does when both have a worker for one class (the same worker twice is fine).
    pub fn merge(&mut self, other: &Registry) -> &mut Self {
        for (name, handler) in &other.handlers {
            let type_name = other.types.get(name).copied().unwrap_or("a worker");
            self.insert(name.clone(), type_name, Arc::clone(handler));
        }
        self.iterable.extend(other.iterable.iter().cloned());
        for capsule in &other.capsules {
            self.capsule(capsule.clone());
        }
        #[cfg(feature = "periodic")]
        for entry in &other.periodic {
            self.periodic(entry.clone());
        }
        self
    }

    /// Adds a periodic entry (see [`crate::periodic`]): a server running this registry
    /// enqueues its job at each tick, once across every server that declares it. A later
    /// entry of the same name replaces it.
    #[cfg(feature = "periodic")]
    pub fn periodic(&mut self, entry: crate::periodic::PeriodicJob) -> &mut Self {
        self.periodic.retain(|e| e.name() != entry.name());
        self.periodic.push(entry);
        self
    }

    /// The periodic entries, in the order added.
    #[cfg(feature = "periodic")]
    pub fn periodic_jobs(&self) -> &[crate::periodic::PeriodicJob] {
        &self.periodic
    }

    /// Declares a capsule beside the workers (as a TOML file's `[capsules.NAME]` does); a
    /// server runs it as it runs those of [`crate::ServerConfig::capsule`].
    pub fn capsule(&mut self, capsule: crate::Capsule) -> &mut Self {
        self.capsules.retain(|c| c.name() != capsule.name());
        self.capsules.push(capsule);
        self
    }

    /// The capsules declared with [`Registry::capsule`], in the order added.
    pub fn capsules(&self) -> &[crate::Capsule] {
        &self.capsules
    }

    /// The registered class names, sorted.
    pub fn class_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    pub(crate) fn get(&self, class: &str) -> Option<&Arc<dyn RawWorker>> {
        self.handlers.get(class)
    }

    /// Whether a registered worker declares `unique_for` (the server then lets locks go).
    pub(crate) fn declares_unique(&self) -> bool {
        self.handlers
            .values()
            .any(|handler| handler.options().unique_for.is_some())
    }

    /// The limiter of each class whose worker declares `rate_limit`.
    pub(crate) fn rate_limits(&self) -> HashMap<String, crate::job::limit::Limiter> {
        self.handlers
            .iter()
            .filter_map(|(class, handler)| {
                Some((class.clone(), handler.options().rate_limit.clone()?))
            })
            .collect()
    }
}
