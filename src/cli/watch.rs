//! `--ui` and `--event-log`: what watches the contexts a command starts (discnn-ui).

use crate::cli::UsageError;
use discnn_engine::cluster::Secret;
use discnn_engine::events::ListenerFactories;
use discnn_ui::{eventlog, Applications, HistoryApps, LiveApps, UiServer};
use std::path::Path;
use std::sync::Arc;

/// The listeners each new context gets, and the UI server that shows them (stopped on drop).
#[derive(Default)]
pub struct Watch {
    pub listeners: ListenerFactories,
    pub ui: Option<UiServer>,
}

/// How a `--ui` value was given.
pub struct UiOption<'a> {
    /// `None` or `off`: no UI.
    pub address: Option<&'a str>,
    /// Given by the user (a bind failure is an error) rather than a default (a warning).
    pub explicit: bool,
    pub secret: Option<Secret>,
    pub insecure: bool,
}

fn start(ui: &UiOption<'_>, apps: Arc<dyn Applications>) -> anyhow::Result<Option<UiServer>> {
    let Some(addr) = ui.address.filter(|a| *a != "off") else {
        return Ok(None);
    };
    match UiServer::start(addr, apps, "discnn", ui.secret.clone(), ui.insecure) {
        Ok(server) => {
            // The server logs its address at info level; below that, say it anyway.
            if !tracing::enabled!(target: "discnn_ui::server", tracing::Level::INFO) {
                eprintln!("UI at http://{}/", server.address());
            }
            Ok(Some(server))
        }
        Err(e @ (discnn_ui::UiError::BadAddress(_) | discnn_ui::UiError::Open(_))) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) if ui.explicit => Err(e.into()),
        Err(e) => {
            tracing::warn!("{e}; going on without a UI");
            Ok(None)
        }
    }
}

/// A live UI (when `ui` names an address) and an event log (when `event_log` is given).
pub fn live(ui: &UiOption<'_>, event_log: Option<&Path>) -> anyhow::Result<Watch> {
    let mut w = Watch::default();
    let apps = Arc::new(LiveApps::default());
    w.ui = start(ui, apps.clone())?;
    if w.ui.is_some() {
        w.listeners.0.extend(apps.factory().0);
    }
    if let Some(dir) = event_log {
        let f = eventlog::factory(dir).map_err(|e| UsageError(format!("--event-log: {e}")))?;
        w.listeners.0.extend(f.0);
    }
    Ok(w)
}

/// `driver history`: the UI over a directory of event logs, until interrupted.
pub fn history(ui: &UiOption<'_>, event_log: &Path) -> anyhow::Result<()> {
    if !event_log.is_dir() {
        return Err(UsageError(format!(
            "--event-log {}: not a directory",
            event_log.display()
        ))
        .into());
    }
    let apps = Arc::new(HistoryApps::new(event_log));
    let _server = start(ui, apps)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
