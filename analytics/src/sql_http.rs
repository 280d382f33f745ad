//! The HTTP SQL endpoint over one [`SqlSession`], for scripts and tools that speak HTTP and JSON.
//!
//! - `POST /v1/sql` with `{"sql": "...", "params": {"sandbox": "sw-1"}}` or
//!   `{"saved": "process-tree", "params": {...}}`: the result in the format `Accept` asks for,
//!   JSON lines by default (`application/x-ndjson`: one object per row, as
//!   `sandwatch sql --format json` prints it), `text/csv`, or an Arrow IPC stream
//!   (`application/vnd.apache.arrow.stream`). Parameters bind `$name` placeholders as values:
//!   strings as text, numbers, booleans, null.
//! - `GET /v1/tables`: the tables and views with their columns, as JSON.
//! - `GET /healthz`: `ok` (no token needed: it tells nothing about the log).
//!
//! Results are streamed batch by batch. The status is decided by the first batch: errors before
//! it (bad SQL, a query that needs too much memory or time before its first row) are a JSON
//! `{"error": "..."}` with 400 (the query's author can fix it), 504 (time limit), 507 (memory
//! limit) or 500; a failure after it cuts the response off (the chunked body never ends), so a
//! client never takes a partial result for a whole one.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
    },
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use datafusion::{
    arrow::{array::RecordBatch, datatypes::SchemaRef, ipc::writer::StreamWriter},
    common::{ParamValues, ScalarValue},
    datasource::TableType,
};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{
    AnalyticsError, ErrorClass, QueryStream, SqlSession,
    access::AccessToken,
    output::{self, Format},
    saved,
};

pub const NDJSON: &str = "application/x-ndjson";
pub const CSV: &str = "text/csv";
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

struct Endpoint {
    session: SqlSession,
    token: Option<AccessToken>,
}

/// The endpoint's routes over `session`; with a `token`, `/v1/*` needs it.
pub fn router(session: SqlSession, token: Option<AccessToken>) -> Router {
    let endpoint = Arc::new(Endpoint { session, token });
    Router::new()
        .route("/v1/sql", post(run_sql))
        .route("/v1/tables", get(tables))
        .route_layer(middleware::from_fn_with_state(
            endpoint.clone(),
            require_token,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(endpoint)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets running requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AnalyticsError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| AnalyticsError::Server {
            server: "HTTP SQL",
            detail: e.to_string(),
        })
}

fn error_response(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// The status of a query's error: 400 for what its author can fix, 504 past the time limit,
/// 507 past the memory limit (the server had not the room the query asked for), 500 for the rest.
fn query_error(e: &AnalyticsError) -> Response {
    let code = match e.class() {
        ErrorClass::Query => StatusCode::BAD_REQUEST,
        ErrorClass::TimeLimit => StatusCode::GATEWAY_TIMEOUT,
        ErrorClass::MemoryLimit => StatusCode::INSUFFICIENT_STORAGE,
        ErrorClass::Server => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if code == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(error = %e, "HTTP SQL query failed");
    }
    error_response(code, e.to_string())
}

async fn require_token(
    State(endpoint): State<Arc<Endpoint>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &endpoint.token {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(refused) = token.check(header) {
            let mut response = error_response(StatusCode::UNAUTHORIZED, refused.to_string());
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sandwatch\""),
            );
            return response;
        }
    }
    next.run(request).await
}

/// What a result is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResultFormat {
    JsonLines,
    Csv,
    ArrowStream,
}

impl ResultFormat {
    /// The first type of `Accept` this endpoint can send (quality values are not weighed);
    /// JSON lines when the client names none.
    fn from_accept(accept: Option<&HeaderValue>) -> Option<Self> {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
            return Some(Self::JsonLines);
        };
        if accept.trim().is_empty() {
            return Some(Self::JsonLines);
        }
        accept.split(',').find_map(|part| {
            let mime = part.split(';').next().unwrap_or("").trim();
            match mime.to_ascii_lowercase().as_str() {
                NDJSON | "application/jsonl" | "*/*" | "application/*" => Some(Self::JsonLines),
                CSV | "text/*" => Some(Self::Csv),
                ARROW_STREAM => Some(Self::ArrowStream),
                _ => None,
            }
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::JsonLines => NDJSON,
            Self::Csv => "text/csv; charset=utf-8",
            Self::ArrowStream => ARROW_STREAM,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: Option<String>,
    saved: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Value>,
}

impl SqlRequest {
    /// The query text and its bound values.
    fn query(self) -> Result<(String, Option<ParamValues>), AnalyticsError> {
        let sql = match (self.sql, self.saved) {
            (Some(sql), None) => sql,
            (None, Some(name)) => {
                let given: Vec<&str> = self.params.keys().map(String::as_str).collect();
                saved::resolve(&name, &given)?.sql.to_owned()
            }
            (Some(_), Some(_)) => {
                return Err(AnalyticsError::Query(
                    "give either \"sql\" or \"saved\", not both".into(),
                ));
            }
            (None, None) => {
                return Err(AnalyticsError::Query(
                    "no query: give {\"sql\": \"SELECT ...\"} or {\"saved\": \"NAME\"}".into(),
                ));
            }
        };
        if self.params.is_empty() {
            return Ok((sql, None));
        }
        let mut values = std::collections::HashMap::new();
        for (name, value) in &self.params {
            let name = name.trim_start_matches('$');
            values.insert(name.to_owned(), param_value(name, value)?.into());
        }
        Ok((sql, Some(ParamValues::Map(values))))
    }
}

fn param_value(name: &str, value: &Value) -> Result<ScalarValue, AnalyticsError> {
    Ok(match value {
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Null => ScalarValue::Null,
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int64(Some(i)),
            (None, Some(u), _) => ScalarValue::UInt64(Some(u)),
            (None, None, f) => ScalarValue::Float64(f),
        },
        Value::Array(_) | Value::Object(_) => {
            return Err(AnalyticsError::Query(format!(
                "parameter {name}: a string, number, boolean or null, not {value}"
            )));
        }
    })
}

async fn run_sql(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(format) = ResultFormat::from_accept(headers.get(ACCEPT)) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            format!("results are sent as {NDJSON} (the default), {CSV} or {ARROW_STREAM}"),
        );
    };
    let request: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request body: {e} (expected {{\"sql\": \"SELECT ...\", \"params\": {{...}}}} or {{\"saved\": \"NAME\", \"params\": {{...}}}})"
                ),
            );
        }
    };
    let (sql, values) = match request.query() {
        Ok(q) => q,
        Err(e) => return query_error(&e),
    };
    let mut stream = match endpoint.session.run(&sql, values).await {
        Ok(s) => s,
        Err(e) => return query_error(&e),
    };
    // The first batch decides the status: most failures (planning, limits hit while
    // aggregating or sorting) happen before it.
    let first = match stream.next().await {
        Some(Err(e)) => return query_error(&e),
        Some(Ok(batch)) => Some(batch),
        None => None,
    };
    let encoder = match ResultEncoder::new(format, stream.schema()) {
        Ok(e) => e,
        Err(e) => return query_error(&e),
    };
    let body = ResultBody {
        stream,
        first,
        encoder,
        done: false,
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(body.into_chunks()))
        .unwrap_or_else(|e| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("building the response: {e}"),
            )
        })
}

/// A result's bytes, batch by batch.
enum ResultEncoder {
    Text {
        format: Format,
        schema: SchemaRef,
        first: bool,
    },
    Arrow(Box<StreamWriter<Vec<u8>>>),
}

impl ResultEncoder {
    fn new(format: ResultFormat, schema: SchemaRef) -> Result<Self, AnalyticsError> {
        Ok(match format {
            ResultFormat::JsonLines => Self::Text {
                format: Format::Json,
                schema,
                first: true,
            },
            ResultFormat::Csv => Self::Text {
                format: Format::Csv,
                schema,
                first: true,
            },
            ResultFormat::ArrowStream => Self::Arrow(Box::new(
                StreamWriter::try_new(Vec::new(), &schema)
                    .map_err(|e| AnalyticsError::Output(format!("Arrow IPC: {e}")))?,
            )),
        })
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, AnalyticsError> {
        match self {
            Self::Text { format, first, .. } => {
                let mut buf = Vec::new();
                output::write_batch(&mut buf, *format, batch, *first)?;
                *first = false;
                Ok(buf.into())
            }
            Self::Arrow(writer) => {
                writer
                    .write(batch)
                    .map_err(|e| AnalyticsError::Output(format!("Arrow IPC: {e}")))?;
                Ok(std::mem::take(writer.get_mut()).into())
            }
        }
    }

    fn finish(&mut self) -> Result<Bytes, AnalyticsError> {
        match self {
            // A CSV answer with no rows still has its header.
            Self::Text {
                format: Format::Csv,
                schema,
                first: true,
            } => {
                let empty = RecordBatch::new_empty(schema.clone());
                let mut buf = Vec::new();
                output::write_batch(&mut buf, Format::Csv, &empty, true)?;
                Ok(buf.into())
            }
            Self::Text { .. } => Ok(Bytes::new()),
            Self::Arrow(writer) => {
                writer
                    .finish()
                    .map_err(|e| AnalyticsError::Output(format!("Arrow IPC: {e}")))?;
                Ok(std::mem::take(writer.get_mut()).into())
            }
        }
    }
}

struct ResultBody {
    stream: QueryStream,
    first: Option<RecordBatch>,
    encoder: ResultEncoder,
    done: bool,
}

impl ResultBody {
    /// The body's chunks; an error ends them with an I/O error, which makes the server cut the
    /// response off rather than end it cleanly.
    fn into_chunks(
        self,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut body| async move {
            loop {
                if body.done {
                    return None;
                }
                let next = match body.first.take() {
                    Some(batch) => Some(Ok(batch)),
                    None => body.stream.next().await,
                };
                let chunk = match next {
                    Some(Ok(batch)) => body.encoder.batch(&batch),
                    Some(Err(e)) => Err(e),
                    None => {
                        body.done = true;
                        body.encoder.finish()
                    }
                };
                match chunk {
                    Ok(bytes) if bytes.is_empty() => continue,
                    Ok(bytes) => return Some((Ok(bytes), body)),
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP SQL result cut off");
                        body.done = true;
                        return Some((Err(std::io::Error::other(e.to_string())), body));
                    }
                }
            }
        })
    }
}

async fn tables(State(endpoint): State<Arc<Endpoint>>) -> Response {
    let ctx = endpoint.session.context();
    let mut out = Vec::new();
    for name in endpoint.session.table_names() {
        let table = match ctx.table_provider(name.as_str()).await {
            Ok(t) => t,
            Err(e) => {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("table {name}: {e}"),
                );
            }
        };
        let columns: Vec<Value> = table
            .schema()
            .fields()
            .iter()
            .map(|f| {
                json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect();
        let kind = match table.table_type() {
            TableType::View => "view",
            TableType::Base | TableType::Temporary => "table",
        };
        out.push(json!({ "name": name, "kind": kind, "columns": columns }));
    }
    Json(json!({ "tables": out })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_chooses_the_format() {
        let f = |s: &str| ResultFormat::from_accept(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(
            ResultFormat::from_accept(None),
            Some(ResultFormat::JsonLines)
        );
        assert_eq!(f("*/*"), Some(ResultFormat::JsonLines));
        assert_eq!(f("text/csv"), Some(ResultFormat::Csv));
        assert_eq!(
            f("text/html, application/vnd.apache.arrow.stream;q=0.9"),
            Some(ResultFormat::ArrowStream)
        );
        assert_eq!(f("text/html"), None);
    }

    #[test]
    fn json_parameters_are_typed_values() {
        let q = |v: Value| serde_json::from_value::<SqlRequest>(v).unwrap().query();
        let (sql, values) =
            q(json!({"sql": "SELECT $a, $b", "params": {"a": "x", "$b": 3}})).unwrap();
        assert_eq!(sql, "SELECT $a, $b");
        let Some(ParamValues::Map(m)) = values else {
            panic!("named values")
        };
        assert_eq!(m["a"].value, ScalarValue::Utf8(Some("x".into())));
        assert_eq!(m["b"].value, ScalarValue::Int64(Some(3)));
        assert!(q(json!({"sql": "SELECT 1", "saved": "activity"})).is_err());
        assert!(q(json!({})).is_err());
        assert!(matches!(
            q(json!({"saved": "process-tree"})),
            Err(AnalyticsError::MissingParam { .. })
        ));
        assert!(q(json!({"sql": "SELECT $a", "params": {"a": [1]}})).is_err());
        assert!(serde_json::from_value::<SqlRequest>(json!({"query": "SELECT 1"})).is_err());
    }
}
