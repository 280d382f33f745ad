//! What every API listener shares: the state handlers reach, who the caller is, the error shape
//! E2B's clients parse, and the record of each call (the `api_calls` table and the latency
//! histogram).
//!
//! Layers, outside in: [`record`] (times the call and writes its row once the response head is
//! ready), then the API's own authentication (control plane: [`require_api_key`]; envd: the
//! sandbox's token, in `envd`), then the handler. Authentication puts the [`Caller`] into the
//! request's extensions for handlers and into the response's for [`record`].

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sandwatch_collector::{ApiCallRecord, SandboxRecorder};

use crate::{
    auth::{ApiKeys, KeyId},
    daemon::Daemon,
    stats::Stats,
};

/// The envd version the daemon says its sandboxes run. The SDK gates features on it; this one
/// enables what `sandwatch serve` implements (no implicit `user`, `close_stdin`, octet-stream and
/// gzip uploads) and nothing it does not (file metadata, 0.6.2, is not advertised).
pub const ENVD_VERSION: &str = "0.5.7";

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub daemon: Arc<Daemon>,
    /// None: `--insecure-no-auth` (loopback only).
    pub keys: Option<Arc<ApiKeys>>,
    pub stats: Arc<Stats>,
    pub recorder: SandboxRecorder,
    /// The largest request body a call may send (`--max-body`).
    pub max_body: usize,
}

/// Who made a call, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key: KeyId,
    /// The sandbox an envd call was routed to.
    pub sandbox: Option<String>,
}

/// Which API a listener serves, for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Control,
    Envd,
    /// The daemon's unix socket: both, for local root.
    Local,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Control => "control",
            Api::Envd => "envd",
            Api::Local => "local",
        }
    }
}

/// An error as E2B's control plane answers it: `{"code": <status>, "message": ...}`, which the
/// SDK needs to raise its own exceptions (a body without them raises a JSON error instead).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// 429 and 5xx are retried by the SDK unless told not to: a limit or a refusal that will not
    /// change in a moment says `Should-Retry: false`.
    pub retry: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("sandbox {id} not found (it ended, or belongs to another API key)"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.status.as_u16(), "message": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if !self.retry {
            r.headers_mut()
                .insert("should-retry", HeaderValue::from_static("false"));
        }
        r
    }
}

/// The control plane's authentication: `X-API-Key` against the key file, compared in constant
/// time. Without a key file (`--insecure-no-auth`) every caller is the same anonymous one.
pub async fn require_api_key(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let key = match &state.keys {
        None => KeyId::anonymous(),
        Some(keys) => {
            let presented = req
                .headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match keys.check(presented) {
                Some(k) => k,
                None => {
                    let msg = if presented.is_empty() {
                        "no API key: send it in the X-API-Key header"
                    } else {
                        "the API key is not valid"
                    };
                    return ApiError::unauthorized(msg).into_response();
                }
            }
        }
    };
    let caller = Caller { key, sandbox: None };
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    // A handler that named the sandbox it made (create) set its own, fuller caller.
    if resp.extensions().get::<Caller>().is_none() {
        resp.extensions_mut().insert(caller);
    }
    resp
}

/// The local socket's caller: root on this host, whose sandboxes are all visible.
pub async fn local_caller(mut req: Request, next: Next) -> Response {
    let caller = Caller {
        key: KeyId::local(),
        sandbox: None,
    };
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    if resp.extensions().get::<Caller>().is_none() {
        resp.extensions_mut().insert(caller);
    }
    resp
}

/// Times a call and records it (`api_calls` row, latency histogram) when its response head is
/// ready. The key's fingerprint comes from the response's [`Caller`], set by authentication.
pub async fn record(
    State((state, api)): State<(ApiState, Api)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let time = SystemTime::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| route_of(&path), |m| m.as_str().to_owned());
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let user_agent = header(req.headers(), "user-agent");
    let routed = header(req.headers(), "e2b-sandbox-id");
    let path_sandbox = sandbox_in_path(&path);
    let resp = next.run(req).await;
    let latency = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    let caller = resp.extensions().get::<Caller>();
    let record = ApiCallRecord {
        time,
        key_fingerprint: caller.map(|c| c.key.to_string()),
        api: api.name(),
        method: method.clone(),
        path,
        sandbox_id: caller
            .and_then(|c| c.sandbox.clone())
            .or(path_sandbox)
            .or(routed),
        status,
        latency_ms: latency * 1e3,
        remote_addr: remote,
        user_agent,
    };
    if let Err(e) = state.recorder.record_api_call(record) {
        tracing::debug!("api_calls row not recorded: {e}");
    }
    state.stats.api_call(api.name(), &method, &route, status, latency);
    resp
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// The sandbox id in a control-plane path (`/sandboxes/{id}/...`, `/v2/sandboxes/{id}/...`).
fn sandbox_in_path(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/v2/sandboxes/")
        .or_else(|| path.strip_prefix("/sandboxes/"))?;
    let id = rest.split('/').next()?;
    (!id.is_empty() && id != "metrics").then(|| id.to_owned())
}

/// A route label for a path no router matched (Connect procedures are fixed paths already):
/// sandbox ids are replaced so that labels stay few.
fn route_of(path: &str) -> String {
    match sandbox_in_path(path) {
        Some(id) => path.replacen(&id, "{sandboxID}", 1),
        None if path.len() <= 64 => path.to_owned(),
        None => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_and_routes_from_paths() {
        assert_eq!(sandbox_in_path("/sandboxes/sw-1/pause").as_deref(), Some("sw-1"));
        assert_eq!(sandbox_in_path("/v2/sandboxes/sw-2/connect").as_deref(), Some("sw-2"));
        assert_eq!(sandbox_in_path("/sandboxes/metrics"), None);
        assert_eq!(sandbox_in_path("/v2/sandboxes"), None);
        assert_eq!(route_of("/sandboxes/sw-1/timeout"), "/sandboxes/{sandboxID}/timeout");
        assert_eq!(route_of("/process.Process/Start"), "/process.Process/Start");
    }

    #[test]
    fn errors_have_the_shape_the_sdk_parses() {
        let r = ApiError::not_found("sw-x").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["should-retry"], "false");
    }
}
