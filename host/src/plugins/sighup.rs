//! SIGHUP reloads the plugins (the operator's `kill -HUP`), like `POST /admin/reload`
//! (`crate::admin`) but without credentials: whoever may signal the process may reload it.

use super::gate::PluginGate;
use std::sync::Arc;

/// Reload the plugins on every SIGHUP until the returned task is aborted.
pub fn spawn_sighup_reload(gate: Arc<PluginGate>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading plugins");
            // Success and failure are logged by the gate; a failure keeps the old plugins.
            let _ = gate.reload().await;
        }
    }))
}
