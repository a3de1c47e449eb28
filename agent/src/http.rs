//! The agent's HTTP endpoints (`http_listen`): `/healthz` for load balancers and
//! service checks, `/metrics` for Prometheus, `/status` for people and scripts: the
//! router and its handlers. They read the [`Shared`] view (`view.rs`), which the LB loop
//! keeps current; they never touch etcd.
//!
//! `/healthz` answers 200 `ok` when the agent has applied the routing state, its last
//! apply succeeded and its etcd watch is live; otherwise 503 with the reason, one line.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::view::{Shared, View};

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let view = shared.view.lock().expect("view");
    match view.health() {
        // Serving, but not from the routing state alone: say so, still 200.
        Ok(()) if !view.status.held.is_empty() => (
            StatusCode::OK,
            format!("ok, degraded: {}\n", view.status.held.join("; ")),
        )
            .into_response(),
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus), the classic text format for
/// the others.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.update(|_| {});
    let text = shared.metrics.encode();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], text).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        let text = crate::metrics::classic_text(&text);
        ([(header::CONTENT_TYPE, kind)], text).into_response()
    }
}

/// `/status`: the view plus the health verdict.
#[derive(Serialize)]
struct StatusDocument {
    healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(flatten)]
    view: View,
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let view = shared.view();
    let health = view.health();
    let document = StatusDocument {
        healthy: health.is_ok(),
        reason: health.err(),
        view,
    };
    let mut body = serde_json::to_string_pretty(&document).expect("status serializes");
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The router of the endpoints.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(shared)
}

/// Binds `address` and serves the endpoints until `stop` turns true.
pub async fn serve(
    address: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("http_listen {address}: {e}"))?;
    tracing::info!(%address, "serving /healthz, /metrics and /status");
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router(shared))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP endpoints stopped");
        }
    }))
}
