//! The HTTP server: pages, `/api/v1` and `/metrics` on one address, read-only, on a thread and
//! runtime of its own (a busy scheduler never slows a page, nor a page the scheduler).

use crate::apps::Applications;
use crate::store::{AppState, AppStore};
use crate::{api, pages};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use discnn_engine::cluster::Secret;
use serde_json::json;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

/// Ports tried after a busy one (Spark's `spark.port.maxRetries`): 4040 falls back up to 4056.
pub const PORT_RETRIES: u16 = 16;

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The address is not HOST:PORT.
    #[error("--ui `{0}`: not a HOST:PORT")]
    BadAddress(String),
    /// Beyond loopback without a secret.
    #[error(
        "--ui {0} is reachable from other hosts and no shared secret is set: give --secret-file \
         (or $DISCNN_SECRET), listen on loopback, or pass --insecure"
    )]
    Open(String),
    /// No port could be bound.
    #[error("--ui {addr}: cannot listen: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The last bind error.
        source: std::io::Error,
    },
}

struct Ui {
    apps: Arc<dyn Applications>,
    title: String,
    /// When set, every request needs HTTP basic auth with this password.
    secret: Option<Secret>,
}

type Shared = State<Arc<Ui>>;

/// A running UI server; stops when dropped.
pub struct UiServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UiServer {
    /// Serves `apps` on `addr` (the next free port up to [`PORT_RETRIES`] above when it is
    /// busy). Beyond loopback, requests need `secret` as a basic-auth password; without one
    /// that is refused unless `insecure`.
    pub fn start(
        addr: &str,
        apps: Arc<dyn Applications>,
        title: &str,
        secret: Option<Secret>,
        insecure: bool,
    ) -> Result<UiServer, UiError> {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|_| UiError::BadAddress(addr.into()))?
            .collect();
        let first = *resolved
            .first()
            .ok_or_else(|| UiError::BadAddress(addr.into()))?;
        let open = !first.ip().is_loopback();
        if open && secret.is_none() && !insecure {
            return Err(UiError::Open(addr.into()));
        }
        let listener = bind(first).map_err(|source| UiError::Bind {
            addr: addr.into(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| UiError::Bind {
            addr: addr.into(),
            source,
        })?;
        let ui = Arc::new(Ui {
            apps,
            title: title.into(),
            secret: if open { secret } else { None },
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("discnn-ui".into())
            .spawn(move || serve(listener, ui, stopped))
            .map_err(|source| UiError::Bind {
                addr: addr.into(),
                source,
            })?;
        tracing::info!("UI at http://{address}/");
        Ok(UiServer {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(first: SocketAddr) -> std::io::Result<TcpListener> {
    let mut addr = first;
    let last = if first.port() == 0 {
        0
    } else {
        first.port().saturating_add(PORT_RETRIES)
    };
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => {
                if addr != first {
                    tracing::info!("UI port {} is busy; using {}", first.port(), addr.port());
                }
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() < last => {
                addr.set_port(addr.port() + 1);
            }
            Err(e) => return Err(e),
        }
    }
}

fn serve(listener: TcpListener, ui: Arc<Ui>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return tracing::warn!("no UI: {e}"),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::warn!("no UI: {e}"),
        };
        let app = router(ui);
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!("UI server: {e}");
        }
    });
}

fn router(ui: Arc<Ui>) -> Router {
    let api = Router::new()
        .route("/version", get(version))
        .route("/applications", get(api_apps))
        .route("/applications/{app}/jobs", get(api_jobs))
        .route("/applications/{app}/jobs/{id}", get(api_job))
        .route("/applications/{app}/stages", get(api_stages))
        .route("/applications/{app}/stages/{id}", get(api_stage))
        .route("/applications/{app}/executors", get(api_executors))
        .route("/applications/{app}/allexecutors", get(api_executors))
        .route("/applications/{app}/storage/rdd", get(api_storage))
        .route("/applications/{app}/environment", get(api_environment))
        .route("/applications/{app}/training", get(api_training))
        .fallback(|| async { api_404("no such endpoint") });
    Router::new()
        .route("/", get(home))
        .route("/metrics", get(prometheus))
        .route("/applications/{app}", get(to_app_root))
        .route("/applications/{app}/", get(app_root))
        .route("/applications/{app}/{tab}", get(app_tab))
        .route("/applications/{app}/jobs/{id}", get(job_page))
        .route("/applications/{app}/stages/{id}", get(stage_page))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ui.clone(), authenticate))
        .with_state(ui)
}

/// Beyond loopback every request carries the secret as a basic-auth password (any user name).
async fn authenticate(State(ui): Shared, req: Request, next: Next) -> Response {
    let Some(secret) = &ui.secret else {
        return next.run(req).await;
    };
    let password = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| {
            let i = d.iter().position(|&c| c == b':')?;
            Some(d[i + 1..].to_vec())
        });
    match password {
        Some(p) if secret.matches(&p) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"discnn\"")],
            "the cluster's secret is needed (as the password)\n",
        )
            .into_response(),
    }
}

fn api_404(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

/// A page for a path that names nothing; its home link climbs back from where it is.
async fn not_found(uri: Uri) -> Response {
    let depth = uri.path().matches('/').count().saturating_sub(1);
    page_404(&format!("Nothing at {}.", uri.path()), depth)
}

fn page_404(what: &str, depth: usize) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::not_found(what, &"../".repeat(depth)).into_string()),
    )
        .into_response()
}

/// Runs `f` on application `app`'s state, or answers 404.
fn with_app(ui: &Ui, app: &str, f: impl FnOnce(&AppState) -> Response, api: bool) -> Response {
    match ui.apps.get(app) {
        Some(store) => f(&store.state()),
        None if api => api_404(&format!("no application {app}")),
        None => page_404(&format!("No application {app}."), 2),
    }
}

fn html(m: maud::Markup) -> Response {
    Html(m.into_string()).into_response()
}

async fn home(State(ui): Shared) -> Response {
    let states: Vec<AppState> = ui.apps.list().iter().map(|a| a.state().clone()).collect();
    html(pages::home(&states, &ui.title))
}

async fn to_app_root(Path(app): Path<String>) -> Redirect {
    // Relative: `/x/applications/a` → `/x/applications/a/`, whatever prefix a proxy adds.
    Redirect::permanent(&format!("{app}/"))
}

async fn app_root(State(ui): Shared, Path(app): Path<String>) -> Response {
    with_app(&ui, &app, |st| html(pages::overview(st)), false)
}

#[derive(serde::Deserialize)]
struct RunQuery {
    run: Option<usize>,
}

async fn app_tab(
    State(ui): Shared,
    Path((app, tab)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
) -> Response {
    with_app(
        &ui,
        &app,
        |st| match tab.as_str() {
            "executors" => html(pages::executors(st)),
            "jobs" => html(pages::jobs(st)),
            "stages" => html(pages::stages(st)),
            "storage" => html(pages::storage(st)),
            "environment" => html(pages::environment(st)),
            "training" => match pages::training(st, q.run) {
                Some(m) => html(m),
                None => page_404("No such training run.", 2),
            },
            _ => page_404(&format!("No page {tab}."), 2),
        },
        false,
    )
}

/// A job's or a stage's page (`what`), or a 404 naming what is missing.
fn detail(
    ui: &Ui,
    app: &str,
    what: &str,
    id: u64,
    render: fn(&AppState, u64) -> Option<maud::Markup>,
) -> Response {
    with_app(
        ui,
        app,
        |st| match render(st, id) {
            Some(m) => html(m),
            None => page_404(&format!("No {what} {id}."), 3),
        },
        false,
    )
}

async fn job_page(State(ui): Shared, Path((app, id)): Path<(String, u64)>) -> Response {
    detail(&ui, &app, "job", id, pages::job)
}

async fn stage_page(State(ui): Shared, Path((app, id)): Path<(String, u64)>) -> Response {
    detail(&ui, &app, "stage", id, pages::stage)
}

async fn prometheus(State(ui): Shared) -> Response {
    let apps: Vec<Arc<AppStore>> = ui.apps.list();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ui.apps.metrics().render(&apps),
    )
        .into_response()
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({
        "discnn": env!("CARGO_PKG_VERSION"),
        "fingerprint": discnn_engine::op::fingerprint(),
    }))
}

async fn api_apps(State(ui): Shared) -> Json<serde_json::Value> {
    let apps: Vec<_> = ui
        .apps
        .list()
        .iter()
        .map(|a| api::application(&a.state()))
        .collect();
    Json(serde_json::Value::Array(apps))
}

fn api_on(ui: &Ui, app: &str, f: impl FnOnce(&AppState) -> Option<serde_json::Value>) -> Response {
    with_app(
        ui,
        app,
        |st| match f(st) {
            Some(v) => Json(v).into_response(),
            None => api_404("no such id"),
        },
        true,
    )
}

async fn api_jobs(State(ui): Shared, Path(app): Path<String>) -> Response {
    api_on(&ui, &app, |st| Some(api::jobs(st)))
}

async fn api_job(State(ui): Shared, Path((app, id)): Path<(String, u64)>) -> Response {
    api_on(&ui, &app, |st| st.jobs.get(&id).map(api::job))
}

async fn api_stages(State(ui): Shared, Path(app): Path<String>) -> Response {
    api_on(&ui, &app, |st| Some(api::stages(st)))
}

async fn api_stage(State(ui): Shared, Path((app, id)): Path<(String, u64)>) -> Response {
    api_on(&ui, &app, |st| st.stages.get(&id).map(api::stage))
}

async fn api_executors(State(ui): Shared, Path(app): Path<String>) -> Response {
    api_on(&ui, &app, |st| Some(api::executors(st)))
}

async fn api_storage(State(ui): Shared, Path(app): Path<String>) -> Response {
    api_on(&ui, &app, |st| Some(api::storage(st)))
}

async fn api_environment(State(ui): Shared, Path(app): Path<String>) -> Response {
    api_on(&ui, &app, |st| Some(api::environment(st)))
}

async fn api_training(
    State(ui): Shared,
    Path(app): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    api_on(&ui, &app, |st| match q.run {
        Some(_) => api::training(st, q.run),
        // An application that has not trained (yet) has no rows.
        None => Some(api::training(st, None).unwrap_or_else(|| json!([]))),
    })
}
