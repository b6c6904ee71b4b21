//! Psychiq inside an existing web service: an axum app that enqueues from an HTTP handler,
//! mounts the dashboard under `/jobs`, runs the job server in the same process with a
//! worker holding shared state, and stops everything cleanly on Ctrl-C (or TERM).
//!
//! ```sh
//! cargo run --example axum_app -- --bind 127.0.0.1:3000
//! curl -X POST 'http://127.0.0.1:3000/signup?email=ada@example.com'
//! curl http://127.0.0.1:3000/sent          # what the worker did
//! open http://127.0.0.1:3000/jobs           # the dashboard
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use clap::Parser;
use psychiq::events::Event;
use psychiq::{Client, JobResult, RedisConfig, Registry, Server, ServerConfig, Worker};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Stands for the app's database pool: shared by the HTTP handlers and the worker.
#[derive(Clone)]
struct Db {
    /// At most this many "connections" at once.
    connections: Arc<Semaphore>,
    /// What the worker has done, as the database would record it.
    sent: Arc<AtomicU64>,
}

/// Sends the welcome mail for a new user. Class name `SendWelcome`.
struct SendWelcome {
    db: Db,
}

impl Worker for SendWelcome {
    type Args = (String,);
    async fn perform(&self, (email,): Self::Args) -> JobResult {
        let _connection = self.db.connections.acquire().await?;
        let job = psychiq::context::current().expect("inside a job");
        tracing::info!(email, jid = job.jid(), "welcome mail sent");
        self.db.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Parser)]
struct Args {
    /// Address for the app
    #[arg(long, default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Redis URL
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Key namespace (none: Sidekiq's bare keys)
    #[arg(short = 'n', long, default_value = "")]
    namespace: String,
}

#[derive(Clone)]
struct App {
    client: Client,
    db: Db,
}

#[derive(Deserialize)]
struct Signup {
    email: String,
}

async fn signup(State(app): State<App>, Query(form): Query<Signup>) -> Json<Value> {
    match app.client.enqueue::<SendWelcome>((form.email,)).await {
        Ok(jid) => Json(json!({ "jid": jid })),
        Err(e) => Json(json!({ "error": e.to_string() })),
    }
}

async fn sent(State(app): State<App>) -> Json<Value> {
    Json(json!({ "sent": app.db.sent.load(Ordering::SeqCst) }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> psychiq::Result<()> {
    let redis = RedisConfig::from_url(args.redis_url)?;
    let db = Db {
        connections: Arc::new(Semaphore::new(5)),
        sent: Arc::default(),
    };

    // The job server, in this process, with the shared pool.
    let mut registry = Registry::new();
    registry.register(SendWelcome { db: db.clone() });
    let config = ServerConfig::default()
        .redis(redis.clone())
        .namespace(args.namespace.clone())
        .concurrency(5);
    let mut server = Server::new(config, registry);
    for event in [
        Event::Startup,
        Event::Quiet,
        Event::Shutdown,
        Event::Stopped,
    ] {
        server.on(event, move || async move {
            tracing::info!("job server: {event:?}")
        });
    }
    server.on_death(|job| async move {
        tracing::error!(class = job.class(), jid = job.jid(), error = %job.error, "a job died");
    });
    let jobs = server.start().await?;

    // The web app: its own routes, and the dashboard under /jobs.
    let client = Client::connect(&redis, &args.namespace).await?;
    let api = psychiq::api::Api::connect(&redis, &args.namespace).await?;
    let app = axum::Router::new()
        .route("/signup", post(signup))
        .route("/sent", get(sent))
        .with_state(App { client, db })
        .nest("/jobs", psychiq::web::router(api, Default::default()));
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| psychiq::Error::Other(format!("cannot listen on {}: {e}", args.bind)))?;
    tracing::info!("listening on http://{}/ (dashboard at /jobs)", args.bind);

    // Ctrl-C or TERM: stop taking requests, then stop the job server gracefully.
    let stopping = jobs.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            psychiq::shutdown_signal().await;
            tracing::info!("shutting down");
            stopping.stop();
        })
        .await;
    // Stopped either way, even if the web side failed.
    jobs.stop();
    jobs.stopped().await;
    served.map_err(|e| psychiq::Error::Other(e.to_string()))?;
    tracing::info!("stopped cleanly");
    Ok(())
}
