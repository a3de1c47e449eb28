//! The dashboard's HTTP side: the page and its assets (embedded in the binary), the
//! live state as server-sent events, the state as one JSON document, and the actions.
//!
//! | route | what |
//! |---|---|
//! | `GET /` , `/app.js`, `/style.css` | the page |
//! | `GET /events` | SSE: `init` (everything), then `app`, `agents`, `traffic`, `meta` |
//! | `GET /api/state` | everything, as `init` sends it |
//! | `POST /api/apps/{app}/{verb}` | pause, resume, abort, promote, rollback |
//! | `GET /healthz` | `ok` |
//!
//! `app` carries one app's view (null when it is gone); `traffic`, once a second at
//! most, a point for each app whose statistics changed.
//!
//! Every request passes the host check of [`super::guard`]; actions pass its action
//! check too.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::actions::{self, Verb};
use super::guard::{Guard, Refusal};
use super::model::{Hub, Message};
use crate::context::Ctx;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What every handler shares.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub guard: Guard,
    /// The context actions run in (actor `dashboard:<name>`).
    pub ctx: Ctx,
    /// Turns true when the dashboard stops: open event streams end.
    pub shutdown: watch::Receiver<bool>,
}

/// The router of the dashboard.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/events", get(events))
        .route("/api/state", get(state))
        .route("/api/apps/{app}/{verb}", post(action))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            check_host,
        ))
        .with_state(shared)
}

/// A page or asset, with headers that keep it from being framed or cached, and that
/// allow only its own scripts and styles.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn refused(refusal: Refusal) -> Response {
    (
        refusal.status,
        json_body(&json!({ "error": refusal.message })),
    )
        .into_response()
}

fn json_body(value: &serde_json::Value) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

async fn check_host(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    match shared.guard.check_host(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refused(refusal),
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let (init, _) = shared.hub.subscribe();
    (
        [(header::CONTENT_TYPE, "application/json")],
        init.data.clone(),
    )
        .into_response()
}

/// The full state, then every change, until the dashboard stops. A page too slow to
/// keep up gets the full state again.
async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (init, receiver) = shared.hub.subscribe();
    let start = PageStream {
        pending: Some(init),
        receiver,
        hub: shared.hub.clone(),
        shutdown: shared.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        let message = match s.pending.take() {
            Some(m) => m,
            None => s.next().await?,
        };
        let event = Event::default()
            .event(message.event)
            .data(message.data.as_str());
        Some((Ok(event), s))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One page's stream of messages.
struct PageStream {
    pending: Option<Arc<Message>>,
    receiver: broadcast::Receiver<Arc<Message>>,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
}

impl PageStream {
    async fn next(&mut self) -> Option<Arc<Message>> {
        if *self.shutdown.borrow() {
            return None;
        }
        tokio::select! {
            received = self.receiver.recv() => match received {
                Ok(message) => Some(message),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (init, receiver) = self.hub.subscribe();
                    self.receiver = receiver;
                    Some(init)
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.shutdown.changed() => None,
        }
    }
}

async fn action(
    State(shared): State<Arc<Shared>>,
    Path((app, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = shared.guard.check_action(&headers) {
        return refused(refusal);
    }
    let Some(parsed) = Verb::parse(&verb) else {
        return refused_with(
            StatusCode::NOT_FOUND,
            format!("no action {verb:?}: pause, resume, abort, promote or rollback"),
        );
    };
    let request: actions::Body = if body.is_empty() {
        actions::Body::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return refused_with(StatusCode::BAD_REQUEST, format!("bad request body: {e}"))
            }
        }
    };
    tracing::info!(%app, %verb, actor = %shared.ctx.actor, "action from the dashboard");
    match actions::run(&shared.ctx, &app, parsed, request).await {
        Ok(()) => (
            StatusCode::OK,
            json_body(
                &json!({ "ok": true, "app": app, "action": verb, "actor": shared.ctx.actor }),
            ),
        )
            .into_response(),
        Err(failure) => {
            let message = format!("{verb} {app}: {:#}", failure.error);
            tracing::warn!(%message, code = failure.code, "dashboard action failed");
            (
                actions::status(&failure),
                json_body(&json!({ "error": message, "exit_code": failure.code })),
            )
                .into_response()
        }
    }
}

fn refused_with(status: StatusCode, message: String) -> Response {
    (status, json_body(&json!({ "error": message }))).into_response()
}
