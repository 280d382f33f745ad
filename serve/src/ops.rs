//! Operations endpoints on the control-plane listener, without authentication (they carry no
//! secret and no sandbox's data): `GET /healthz` (is the daemon serving, and how loaded) and
//! `GET /metrics` (Prometheus/OpenMetrics text, see `crate::stats`).

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::api::ApiState;

pub fn public_routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/health", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(state): State<ApiState>) -> impl IntoResponse {
    let d = &state.daemon;
    let [(_, running), (_, paused)] = d.by_state();
    let status = if d.is_draining() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "status": if d.is_draining() { "draining" } else { "serving" },
        "sandboxes": { "running": running, "paused": paused },
        "warmPool": d.pool.ready().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    (status, Json(body))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let d = &state.daemon;
    for (s, n) in d.by_state() {
        state
            .stats
            .sandboxes
            .get_or_create(&vec![("state", s.name().to_owned())])
            .set(n as i64);
    }
    for (t, n) in d.pool.ready() {
        state
            .stats
            .pool_ready
            .get_or_create(&vec![("template", t)])
            .set(n as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.stats.encode(),
    )
}
