//! `web`: the dashboard served on its own.

use crate::error::Error;
use crate::web::{WebConfig, router};

use super::*;

/// `psychiq web`: serves the dashboard until TERM or Ctrl-C.
pub async fn serve(args: WebArgs, redis: &RedisArgs) -> crate::Result<()> {
    let api = redis.config().api().await?;
    let credentials = match &args.basic_auth {
        None => None,
        Some(pair) => Some(pair.split_once(':').ok_or_else(|| {
            Error::Other("--basic-auth takes USER:PASSWORD (with a colon)".into())
        })?),
    };
    let open = args.basic_auth.is_none() && args.token.is_none();
    if !args.bind.ip().is_loopback() && open {
        tracing::warn!(
            bind = %args.bind,
            "the dashboard is reachable from the network without authentication; pass --basic-auth USER:PASSWORD or --token"
        );
    }
    let mut allowed_hosts = args.allowed_hosts;
    if !args.bind.ip().is_unspecified() {
        allowed_hosts.push(match args.bind.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    }
    let mut config = WebConfig::default().secure_cookie(args.secure_cookie);
    if let Some((user, password)) = credentials {
        config = config.basic_auth(user, password);
    }
    if let Some(token) = &args.token {
        config = config.token(token.clone());
    }
    for host in allowed_hosts {
        config = config.allow_host(host);
    }
    let app = router(api, config);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| {
            Error::Other(format!(
                "cannot listen on {}: {e}; pick another with --bind ADDR:PORT",
                args.bind
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    tracing::info!(namespace = %redis.namespace, "Psychiq dashboard on http://{address}/");
    println!("Psychiq dashboard on http://{address}/ (Ctrl-C stops it)");
    crate::web::serve(listener, app, crate::server::signals::terminate()).await;
    Ok(())
}
