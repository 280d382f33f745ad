//! E2B's control plane (`spec/e2b/openapi.yml`), the part agent platforms use: create, list, get,
//! kill, timeout, refresh, pause, resume/connect and metrics of sandboxes. JSON in and out, in
//! the shapes and status codes E2B's SDKs parse (required keys, `201` on create, `{code,
//! message}` errors).
//!
//! A key sees only the sandboxes it created (another key's are `404`, as if they did not exist);
//! the local socket sees all of them.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use chrono::{DateTime, SecondsFormat, Utc};
use sandwatch_runner::{policy::NetworkMode, sandbox::EndReason};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{ApiError, ApiState, Caller, ENVD_VERSION},
    daemon::{CreateError, CreateRequest},
    hosted::{Hosted, State as Life},
    templates::{NetworkRequest, SDK_DEFAULT_TEMPLATE, TemplateError},
};

/// The control plane's routes (authentication is layered on by the caller).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/sandboxes", post(create).get(list_v1))
        .route("/v2/sandboxes", post(create).get(list_v2))
        .route("/sandboxes/{id}", get(detail).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/refreshes", post(refresh))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/resume", post(resume))
        .route("/sandboxes/{id}/connect", post(connect))
        .route("/v2/sandboxes/{id}/connect", post(connect))
        .route("/sandboxes/{id}/metrics", get(metrics))
        .route("/sandboxes/{id}/kill", delete(kill))
}

fn owner(caller: &Caller) -> Option<&crate::auth::KeyId> {
    Some(&caller.key)
}

fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<std::sync::Arc<Hosted>, ApiError> {
    state
        .daemon
        .get(owner(caller), id)
        .ok_or_else(|| ApiError::not_found(id))
}

/// A JSON body, or a 400 in E2B's shape naming what is wrong with it.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("the request body: {}", e.body_text())))
}

/// An optional JSON body: absent or empty is the default.
fn optional_body<T: Default>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match b {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(JsonRejection::JsonSyntaxError(e)) if e.body_text().contains("EOF") => Ok(T::default()),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body: {}",
            e.body_text()
        ))),
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NetworkBody {
    #[serde(default)]
    allow_out: Vec<String>,
    #[serde(default)]
    deny_out: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSandbox {
    #[serde(rename = "templateID", default)]
    template_id: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    auto_pause: bool,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    #[serde(rename = "allow_internet_access", alias = "allowInternetAccess")]
    allow_internet_access: Option<bool>,
    network: Option<NetworkBody>,
    /// sandwatch's own: a whole policy, for `sandwatch run --server --policy FILE`.
    #[serde(rename = "sandwatchPolicy")]
    sandwatch_policy: Option<String>,
}

/// `POST /sandboxes` and `POST /v2/sandboxes`: 201 and the sandbox.
async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<NewSandbox>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let template_id = b
        .template_id
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| SDK_DEFAULT_TEMPLATE.to_owned());
    let policy = match &b.sandwatch_policy {
        Some(text) => Some(
            sandwatch_runner::SandboxPolicy::from_yaml(&format!("sandwatchPolicy ({template_id})"), text)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    let network = b.network.unwrap_or_default();
    let req = CreateRequest {
        template_id,
        timeout: b.timeout.map(Duration::from_secs),
        auto_pause: b.auto_pause,
        metadata: b.metadata,
        env_vars: b.env_vars.into_iter().collect(),
        network: NetworkRequest {
            allow_internet_access: b.allow_internet_access,
            allow_out: network.allow_out,
            deny_out: network.deny_out,
        },
        policy,
    };
    let hosted = state
        .daemon
        .create(caller.key.clone(), req)
        .await
        .map_err(create_error)?;
    let mut resp = (StatusCode::CREATED, Json(sandbox_json(&hosted))).into_response();
    resp.extensions_mut().insert(Caller {
        key: caller.key,
        sandbox: Some(hosted.id.clone()),
    });
    Ok(resp)
}

fn create_error(e: CreateError) -> ApiError {
    match &e {
        CreateError::Template(TemplateError::NotFound(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string())
        }
        CreateError::Template(_) | CreateError::Timeout { .. } => ApiError::bad_request(e.to_string()),
        CreateError::Draining => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        CreateError::TooMany(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        CreateError::Sandbox(_) | CreateError::Host(_) => {
            tracing::error!("create: {e}");
            ApiError::internal(e.to_string())
        }
    }
}

/// The `Sandbox` object of create, connect and resume.
fn sandbox_json(h: &Hosted) -> Value {
    json!({
        "templateID": h.template_id,
        "sandboxID": h.id,
        "alias": h.template_id,
        "clientID": sandwatch_collector::hostname(),
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": h.envd_token,
        "trafficAccessToken": null,
        "domain": null,
    })
}

/// The fields `SandboxDetail` and `ListedSandbox` share.
fn listed_json(h: &Hosted) -> Value {
    json!({
        "templateID": h.template_id,
        "alias": h.template_id,
        "sandboxID": h.id,
        "clientID": sandwatch_collector::hostname(),
        "startedAt": rfc3339(h.started_at),
        "endAt": rfc3339(h.end_at()),
        "cpuCount": h.cpu_count(),
        "memoryMB": h.memory_mb(),
        "diskSizeMB": h.disk_mb(),
        "metadata": h.metadata,
        "state": api_state(h.state()),
        "envdVersion": ENVD_VERSION,
    })
}

fn api_state(s: Life) -> &'static str {
    match s {
        Life::Paused => "paused",
        Life::Running | Life::Ending => "running",
    }
}

/// `GET /sandboxes/{id}`.
async fn detail(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h = find(&state, &caller, &id)?;
    let mut v = listed_json(&h);
    let extra = json!({
        "envdAccessToken": h.envd_token,
        "domain": null,
        "allowInternetAccess": h.policy().network.mode == NetworkMode::Host,
        "lifecycle": { "autoResume": false, "onTimeout": "kill" },
        "policyHash": h.sandbox.policy_hash(),
    });
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    Ok(Json(v))
}

/// `DELETE /sandboxes/{id}`: 204.
async fn kill(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let h = find(&state, &caller, &id)?;
    state.daemon.end(
        &h,
        EndReason::Order,
        Some(format!("killed through the API (key {})", caller.key)),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TimeoutBody {
    timeout: u64,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox expires `timeout` seconds from now. 204.
async fn set_timeout(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Result<Json<TimeoutBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let b = body(b)?;
    let h = find(&state, &caller, &id)?;
    state
        .daemon
        .set_timeout(&h, Duration::from_secs(b.timeout))
        .map_err(create_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    duration: Option<u64>,
}

/// `POST /sandboxes/{id}/refreshes`: keep it alive at least `duration` seconds more. 204.
async fn refresh(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Result<Json<RefreshBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let b: RefreshBody = optional_body(b)?;
    let h = find(&state, &caller, &id)?;
    let d = b
        .duration
        .map_or(state.daemon.config.default_timeout, Duration::from_secs);
    state.daemon.refresh(&h, d).map_err(create_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/pause`: freeze every process. 204, or 409 when already paused.
async fn pause(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let h = find(&state, &caller, &id)?;
    match state.daemon.pause(&h, "api") {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("sandbox {id} is already paused"),
        )),
        Err(e) => Err(ApiError::internal(format!("pause {id}: {e}"))),
    }
}

#[derive(Deserialize, Default)]
struct ResumeBody {
    timeout: Option<u64>,
}

/// `POST /sandboxes/{id}/resume` (deprecated by E2B): 201 and the sandbox; 409 when running.
async fn resume(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Result<Json<ResumeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b: ResumeBody = optional_body(b)?;
    let h = find(&state, &caller, &id)?;
    if h.state() != Life::Paused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("sandbox {id} is not paused"),
        ));
    }
    state
        .daemon
        .resume(&h, b.timeout.map(Duration::from_secs))
        .map_err(create_error)?;
    Ok((StatusCode::CREATED, Json(sandbox_json(&h))).into_response())
}

/// `POST /sandboxes/{id}/connect` (and `/v2/`): resumes a paused sandbox (201) or extends a
/// running one's life (200); the sandbox either way.
async fn connect(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Result<Json<ResumeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b: ResumeBody = optional_body(b)?;
    let h = find(&state, &caller, &id)?;
    let resumed = state
        .daemon
        .resume(&h, b.timeout.map(Duration::from_secs))
        .map_err(create_error)?;
    let status = if resumed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sandbox_json(&h))).into_response())
}

#[derive(Deserialize)]
struct MetricsQuery {
    start: Option<u64>,
    end: Option<u64>,
}

/// `GET /sandboxes/{id}/metrics?start&end` (Unix seconds): E2B's fields, then sandwatch's own
/// (network bytes, processes, descriptors).
async fn metrics(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Value>, ApiError> {
    let h = find(&state, &caller, &id)?;
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let to = q.end.map(|e| at(e + 1));
    let cpus = h.cpu_count();
    let disk_total = h.disk_mb() << 20;
    let rows: Vec<Value> = h
        .samples(q.start.map(at), to)
        .into_iter()
        .map(|s| {
            let unix = s.time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            json!({
                "timestamp": rfc3339(s.time),
                "timestampUnix": unix,
                "cpuCount": cpus,
                // E2B's percentage is of all the sandbox's cores; sandwatch's of one.
                "cpuUsedPct": s.cpu_usage_percent / f64::from(cpus.max(1)),
                "memUsed": s.memory_usage_bytes,
                "memTotal": s.memory_limit_bytes.unwrap_or_else(crate::hosted::host_memory_bytes),
                "memCache": 0,
                "diskUsed": s.disk_usage_bytes,
                "diskTotal": disk_total,
                "networkRxBytes": s.network_rx_bytes,
                "networkTxBytes": s.network_tx_bytes,
                "processCount": s.process_count,
                "fileDescriptors": s.file_descriptors,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    metadata: Option<String>,
    state: Option<String>,
    order: Option<String>,
    started_after: Option<String>,
    template: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

/// A metadata filter as E2B's SDKs send it: `k=v&k2=v2`, URL-encoded as a whole, with each key
/// and value encoded once more before that (the query decoding has undone one level already).
fn metadata_filter(q: &str) -> BTreeMap<String, String> {
    let once = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (once(&k), once(&v)))
        .collect()
}

fn matches(h: &Hosted, q: &ListQuery, meta: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    if !meta.iter().all(|(k, v)| h.metadata.get(k) == Some(v)) {
        return Ok(false);
    }
    if let Some(states) = &q.state {
        let state = api_state(h.state());
        if !states.split(',').any(|s| s.trim() == state) {
            return Ok(false);
        }
    }
    if let Some(t) = &q.template
        && &h.template_id != t
    {
        return Ok(false);
    }
    if let Some(after) = &q.started_after {
        let after = DateTime::parse_from_rfc3339(after).map_err(|e| {
            ApiError::bad_request(format!("startedAfter {after:?} is not an RFC 3339 time: {e}"))
        })?;
        if DateTime::<Utc>::from(h.started_at) < after {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Where a sandbox sits in the listing order (newest first), as a page token.
fn token_of(h: &Hosted) -> String {
    let ns = h
        .started_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{ns}.{}", h.id)
}

async fn list_v1(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let meta = q.metadata.as_deref().map(metadata_filter).unwrap_or_default();
    let mut out = Vec::new();
    for h in state.daemon.list(owner(&caller)) {
        if matches(&h, &ListQuery { metadata: None, ..ListQuery::default() }, &meta)? {
            out.push(listed_json(&h));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /v2/sandboxes`: filters, order and pages (`limit`, `nextToken`; the next page's token
/// in the `X-Next-Token` header).
async fn list_v2(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let meta = q.metadata.as_deref().map(metadata_filter).unwrap_or_default();
    let mut all = Vec::new();
    for h in state.daemon.list(owner(&caller)) {
        if matches(&h, &q, &meta)? {
            all.push(h);
        }
    }
    if q.order.as_deref() == Some("asc") {
        all.reverse();
    }
    if let Some(t) = &q.next_token {
        match all.iter().position(|h| &token_of(h) == t) {
            Some(i) => {
                all.drain(..=i);
            }
            None => all.clear(),
        }
    }
    let limit = q.limit.unwrap_or(usize::MAX).max(1);
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-total-running",
        HeaderValue::from(
            state.daemon.by_state()[0].1 as u64,
        ),
    );
    if all.len() > limit {
        all.truncate(limit);
        if let Some(last) = all.last()
            && let Ok(v) = HeaderValue::from_str(&token_of(last))
        {
            headers.insert("x-next-token", v);
        }
    }
    let items: Vec<Value> = all.iter().map(|h| listed_json(h)).collect();
    Ok((headers, Json(Value::Array(items))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filters_decode_as_the_sdk_encodes() {
        // The SDK's `{"suite":"probe2","k y":"v&a=1 b"}` after the query's own decoding.
        let f = metadata_filter("suite=probe2&k%2520y=v%2526a%253D1%2520b");
        assert_eq!(f.get("suite").map(String::as_str), Some("probe2"));
        assert_eq!(f.get("k y").map(String::as_str), Some("v&a=1 b"));
        assert_eq!(f.len(), 2);
    }
}
