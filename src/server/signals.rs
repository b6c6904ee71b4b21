//! Turning process signals into a shutdown future.

/// Completes on SIGINT (Ctrl-C), SIGTERM or SIGHUP (a closed terminal), having logged
/// which: the first asks for a graceful stop, a second for a stop at once.
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                let name = tokio::select! {
                    _ = tokio::signal::ctrl_c() => "INT",
                    _ = term.recv() => "TERM",
                    _ = hup.recv() => "HUP (the terminal closed)",
                };
                tracing::info!("SIG{name} received");
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Quiets the server on SIGTSTP and logs its running jobs on SIGTTIN.
pub(crate) async fn quiet_and_dump(
    control: crate::server::control::Control,
    running: crate::server::running::Running,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // The platform's numbers: 20 is SIGTSTP on Linux but SIGCHLD on macOS.
        let (Ok(mut tstp), Ok(mut ttin)) = (
            signal(SignalKind::from_raw(libc::SIGTSTP)),
            signal(SignalKind::from_raw(libc::SIGTTIN)),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = tstp.recv() => control.quiet(),
                _ = ttin.recv() => crate::server::running::log_running(&running),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (control, running);
}
