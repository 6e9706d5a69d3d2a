//! Wiring: config -> admission -> SFU -> HTTP, and an orderly shutdown.

use crate::admin::AdminState;
use crate::auth::Gatekeeper;
use crate::config::Config;
use crate::events::EventBus;
use crate::events::outbox::Outbox;
use crate::events::route::WebhookPolicy;
use crate::plugins::PluginGate;
use crate::sfu::Sfu;
use crate::signalling::{self, AppState};
use crate::store::Store;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running Switchboard: HTTP server plus SFU.
pub struct Server {
    addr: SocketAddr,
    sfu: Arc<Sfu>,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    http: JoinHandle<()>,
    plugins: Arc<PluginGate>,
    metrics: Arc<crate::metrics::Metrics>,
    checks: Arc<crate::health::Checks>,
    outbox: Option<Arc<Outbox>>,
    recordings: Arc<crate::recording::service::RecordingService>,
    tls: Option<Arc<crate::signalling::tls::TlsCertificates>>,
}

impl Server {
    /// Start serving on `config.http.bind` (port 0 picks a free one; see [`Server::http_addr`]).
    pub async fn start(mut config: Config) -> anyhow::Result<Server> {
        crate::ice::public::settle(&mut config.webrtc).await?;
        let tls = config
            .http
            .tls
            .as_ref()
            .map(crate::signalling::tls::TlsCertificates::load)
            .transpose()?;
        let plugins = build_gate(&config).await?;
        check_exposure(&config, plugins.as_ref())?;
        let gate: Arc<dyn Gatekeeper> = plugins.clone();

        let events = EventBus::default();
        // One file for the webhook outbox and the upload queue, opened if either is used.
        let store = (!config.webhooks.is_empty() || !config.recording.storage.is_empty())
            .then(|| Store::open(&config.store.path).context("store.path"))
            .transpose()?
            .map(Arc::new);
        // Before the plugins announce themselves, so the outbox has those events too.
        let outbox = start_outbox(&config, store.clone(), plugins.clone(), &events)?;
        let uploads = match &store {
            Some(store) if !config.recording.storage.is_empty() => Some(
                crate::recording::upload::Uploads::start(
                    store.clone(),
                    config.recording.storage.clone(),
                    events.clone(),
                )
                .context("recording upload queue")?,
            ),
            _ => None,
        };
        plugins.publish_events_to(events.clone());
        let sfu = Sfu::new(&config, gate, events.clone());
        sfu.start_shared_ports()?;
        let trigger: Arc<dyn crate::recording::trigger::RecordingTrigger> = plugins.clone();
        let recordings = crate::recording::service::RecordingService::start(
            sfu.clone(),
            trigger,
            &events,
            config.recording.clone(),
            uploads.clone(),
        );
        let ready = Arc::new(AtomicBool::new(false));
        let state = AppState::new(&config, sfu.clone(), ready.clone());
        let metrics = crate::metrics::Metrics::new();
        metrics.watch_sfu(&sfu);
        metrics.watch_plugins(&plugins);
        let checks = crate::health::Checks::new(ready.clone());
        checks.add(Arc::new(crate::health::Plugins(Arc::downgrade(&plugins))));
        if let Some(uploads) = &uploads {
            metrics.watch_uploads(uploads.clone());
        }
        if let Some(outbox) = &outbox {
            metrics.watch_webhooks(outbox.clone());
            checks.add(Arc::new(crate::health::Webhooks(Arc::downgrade(outbox))));
        }
        // Readiness, metrics and the public room list answer only for hosts we are.
        let mut observe = crate::health::routes(checks.clone()).merge(crate::admin::public_router(
            sfu.clone(),
            &config.public_api,
            &config.http.cors_origins,
        ));
        if config.metrics.enabled {
            observe = observe.merge(crate::metrics::routes(
                metrics.clone(),
                &config.metrics.token,
            ));
        }
        let hosts = Arc::new(crate::signalling::host_check::HostCheck::new(
            &config.http.public_url,
            &config.http.allowed_hosts,
        ));
        let observe = observe.layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::signalling::host_check::check_host,
        ));
        // Admin routes answer 404 unless `admin.token` is set.
        let admin = crate::admin::router(
            AdminState::new(sfu.clone(), plugins.clone())
                .with_outbox(outbox.clone())
                .with_recordings(recordings.clone()),
            Some(config.admin.token.clone()),
        );
        let app = signalling::router(&config, state)
            .merge(admin)
            .merge(observe)
            .layer(axum::middleware::from_fn_with_state(
                metrics.join_histograms(),
                crate::metrics::time_joins,
            ));

        let listener = tokio::net::TcpListener::bind(config.http.bind)
            .await
            .with_context(|| format!("cannot listen on http.bind = {}", config.http.bind))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let limits = crate::signalling::listener::ConnectionLimits {
            max_connections: crate::signalling::listener::effective_max_connections(
                config.limits.max_connections,
            ),
            header_timeout: Duration::from_secs(config.limits.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.limits.idle_timeout_secs),
        };
        let edge = crate::signalling::listener::Edge {
            tls: tls.clone(),
            proxies: Arc::new(crate::signalling::forwarded::TrustedProxies::new(
                &config.http.trusted_proxies,
            )),
        };
        let http = tokio::spawn(crate::signalling::listener::serve(
            listener, app, limits, edge, stopped,
        ));
        ready.store(true, Ordering::Relaxed);
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "switchboard listening");
        Ok(Server {
            addr,
            sfu,
            ready,
            stop,
            http,
            plugins,
            metrics,
            checks,
            outbox,
            recordings,
            tls,
        })
    }

    /// The HTTPS certificate being served (`[http.tls]`), to reload it (SIGHUP, tests).
    pub fn tls(&self) -> Option<&Arc<crate::signalling::tls::TlsCertificates>> {
        self.tls.as_ref()
    }

    /// What `switchboard --check` does: everything start-up does short of serving — load and
    /// validate every plugin and upstream, apply the exposure rule, make the DTLS identity —
    /// failing the same way start-up would. Returns a one-line summary.
    pub async fn check(config: &Config) -> anyhow::Result<String> {
        crate::ice::public::settle(&mut config.webrtc.clone()).await?;
        let plugins = build_gate(config).await?;
        check_exposure(config, plugins.as_ref())?;
        if let Some(tls) = &config.http.tls {
            crate::signalling::tls::TlsCertificates::load(tls)?;
        }
        crate::sfu::peer::PeerFactory::new(config.webrtc.clone())
            .check()
            .context("WebRTC set-up")?;
        let names = plugins.plugin_names();
        Ok(if names.is_empty() {
            "configuration OK (no plugins: everyone may publish and play)".to_owned()
        } else {
            format!(
                "configuration OK ({} plugin{} loaded: {})",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            )
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sfu(&self) -> &Arc<Sfu> {
        &self.sfu
    }

    /// The plugin gate, to reload plugins (SIGHUP, tests) or set where reloads read config.
    pub fn plugins(&self) -> &Arc<PluginGate> {
        &self.plugins
    }

    /// This server's metrics (what `GET /metrics` renders).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// What `GET /readyz` asks; add a dependency with `checks().add(...)`.
    pub fn checks(&self) -> &Arc<crate::health::Checks> {
        &self.checks
    }

    /// The webhook outbox, when `[[webhooks]]` are configured.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// Stop taking work, close every session cleanly, then stop HTTP.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        self.sfu.close_all().await;
        // Recordings of those sessions close their files (and say so) before the outbox stops.
        self.recordings.flush().await;
        // Queued uploads stay queued (on disk and in the store) for the next start.
        self.recordings.stop_uploads();
        if let Some(outbox) = &self.outbox {
            outbox.shutdown().await; // the events of those closes are written first
        }
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(6), self.http)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after 5 s; exiting anyway");
        }
        let (datagrams, sends, dropped) = crate::sfu::egress::counters();
        tracing::info!(
            batched_datagrams = datagrams,
            batched_sends = sends,
            batch_dropped = dropped,
            direct_send_dropped = crate::sfu::direct::send_dropped(),
            nacked_packets_not_resent = crate::sfu::nack_guard::suppressed(),
            publisher_packets_over_cap = crate::sfu::bitrate::over_cap_dropped(),
            library_log_lines_suppressed = crate::logging::suppressed(),
            "switchboard stopped"
        );
    }
}

/// With `[[webhooks]]` configured: open the store and start the outbox as a durable sink of
/// `events`, its deliveries decided by the `webhook` plugins of `plugins`.
fn start_outbox(
    config: &Config,
    store: Option<Arc<Store>>,
    plugins: Arc<PluginGate>,
    events: &EventBus,
) -> anyhow::Result<Option<Arc<Outbox>>> {
    let Some(store) = store.filter(|_| !config.webhooks.is_empty()) else {
        return Ok(None);
    };
    let policy: Arc<dyn WebhookPolicy> = plugins;
    let outbox = Outbox::start(
        store,
        config.webhooks.clone(),
        config.outbox.clone(),
        policy,
    )
    .context("webhook outbox")?;
    events.add_sink(outbox.clone());
    Ok(Some(outbox))
}

/// Load the configured plugins; a bad plugin fails start-up with its name and the reason.
async fn build_gate(config: &Config) -> anyhow::Result<Arc<PluginGate>> {
    let gate = PluginGate::new(config.plugins.clone(), config.upstreams.clone())
        .await
        .context("loading plugins")?;
    Ok(Arc::new(gate))
}

/// Refuse to expose an unauthenticated server beyond loopback unless told to. Behind a reverse
/// proxy (`http.public_url` set) a loopback bind is exposed too.
fn check_exposure(config: &Config, gate: &dyn Gatekeeper) -> anyhow::Result<()> {
    if !gate.is_open() {
        return Ok(());
    }
    let bind = config.http.bind;
    let public = &config.http.public_url;
    let exposed = if !public.is_empty() {
        Some(format!(
            "http.public_url = {public:?} serves it to whoever reaches that URL"
        ))
    } else if !bind.ip().is_loopback() {
        Some(format!("http.bind = {bind} is not a loopback address"))
    } else {
        None
    };
    let Some(exposed) = exposed else {
        tracing::warn!(
            "NO AUTHENTICATION CONFIGURED: anyone who can reach {bind} may publish and play. \
             Configure an auth plugin ([[plugins]] in config.toml) before exposing this server."
        );
        return Ok(());
    };
    if !config.auth.allow_unauthenticated_public {
        bail!(
            "refusing to start: {exposed} and no auth plugin is configured. Configure an auth \
             plugin, or set auth.allow_unauthenticated_public = true to run an open server on \
             purpose."
        );
    }
    tracing::warn!(
        "NO AUTHENTICATION CONFIGURED and exposed ({exposed}; \
         auth.allow_unauthenticated_public = true): anyone may publish and play."
    );
    Ok(())
}
