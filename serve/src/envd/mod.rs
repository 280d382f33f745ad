//! envd, E2B's in-sandbox agent, served by the daemon for every sandbox at once: the
//! `process.Process` and `filesystem.Filesystem` Connect services and the `/files` and `/health`
//! REST routes. A request names its sandbox in the `E2b-Sandbox-Id` header and proves it may
//! use it with that sandbox's own token (`X-Access-Token`, the `envdAccessToken` of create),
//! compared in constant time; the local socket's caller (root) needs no token.
//!
//! A sandbox that is gone, paused or unknown answers as E2B's proxy does: `502` with "The sandbox
//! was not found", which the SDKs turn into their "sandbox not running" error.
//!
//! Everything a call does inside a sandbox happens as the sandbox's user, in its namespaces and
//! under its confinement (commands through its init; file operations in a confined child of its
//! init, see `sandwatch_runner::files`): the daemon never touches a sandbox's files with its own
//! root identity.

pub mod files;
pub mod filesystem;
pub mod process;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use connectrpc::{ConnectError, RequestContext};

use crate::{
    api::{ApiState, Caller},
    auth::{KeyId, token_matches},
    hosted::{Hosted, State as Life},
};

/// The sandbox a call was routed to, put in the request's extensions by [`route`].
#[derive(Clone)]
pub struct Routed(pub Arc<Hosted>);

/// The envd routes: REST and the two Connect services.
pub fn routes(state: &ApiState) -> Router<ApiState> {
    let connect = connectrpc::Router::new()
        .add_service(Arc::new(process::ProcessService::new(state.daemon.clone())))
        .add_service(Arc::new(filesystem::FilesystemService::new(
            state.daemon.clone(),
        )));
    Router::new()
        .route("/health", get(health))
        .route("/files", get(files::download).post(files::upload))
        .fallback_service(connect.into_axum_service())
}

/// E2B's answer for a sandbox that is not there (or not running).
pub fn not_running(id: &str) -> Response {
    let body = serde_json::json!({
        "sandboxId": id,
        "message": "The sandbox was not found",
        "code": 502,
    });
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

fn unauthorized(message: &str) -> Response {
    let body = serde_json::json!({ "code": 401, "message": message });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Routes a request to its sandbox and checks its token. `/health` without a sandbox is the
/// listener's own health.
pub async fn route(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(id) = req
        .headers()
        .get("e2b-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        if req.uri().path() == "/health" {
            return StatusCode::NO_CONTENT.into_response();
        }
        let body = serde_json::json!({
            "code": 400,
            "message": "no E2b-Sandbox-Id header: every envd call names its sandbox",
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let local = req
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.key == KeyId::local());
    let Some(hosted) = state.daemon.get(None, &id) else {
        return not_running(&id);
    };
    let key = if local {
        KeyId::local()
    } else {
        let presented = req
            .headers()
            .get("x-access-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !token_matches(&hosted.envd_token, presented) {
            // No caller: nothing valid was presented (the record takes the sandbox from the
            // header).
            return unauthorized(if presented.is_empty() {
                "no access token: send the sandbox's envdAccessToken in X-Access-Token"
            } else {
                "the access token is not this sandbox's"
            });
        }
        // The caller is the key that owns the sandbox: the token was given to it alone.
        hosted.owner.clone()
    };
    let caller = Caller {
        key,
        sandbox: Some(id.clone()),
    };
    if hosted.state() != Life::Running {
        let mut r = not_running(&id);
        r.extensions_mut().insert(caller);
        return r;
    }
    req.extensions_mut().insert(Routed(hosted));
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(caller);
    resp
}

async fn health() -> StatusCode {
    // Reached only for a routed, running sandbox (see `route`).
    StatusCode::NO_CONTENT
}

/// The sandbox of a Connect call.
pub fn routed(ctx: &RequestContext) -> Result<Arc<Hosted>, ConnectError> {
    ctx.extensions()
        .get::<Routed>()
        .map(|r| r.0.clone())
        .ok_or_else(|| ConnectError::unavailable("The sandbox was not found"))
}

/// The Connect error for a sandbox that ended during a call.
pub fn gone() -> ConnectError {
    ConnectError::unavailable("The sandbox was not found: it ended")
}
