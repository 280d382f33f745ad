//! envd's `/files` REST routes (`spec/e2b/envd.yaml`): download a file (`GET`) and upload one or
//! several (`POST`, multipart as the SDKs send it, or a raw `application/octet-stream` body),
//! streamed both ways through the runner's in-sandbox file operations. Parent directories are
//! made as needed and an existing file is replaced, as in envd.
//!
//! Errors are envd's: `{"code", "message"}` with 400 (bad path), 404 (not found), 403 (the
//! sandbox's user may not), 413 (over `--max-body`), 502 (the sandbox ended).

use axum::{
    Extension, Json,
    body::Body,
    extract::{Multipart, Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use sandwatch_runner::files::{EntryInfo, EntryKind, FileError};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use super::{Routed, not_running};
use crate::api::ApiState;

#[derive(Deserialize)]
pub struct FileQuery {
    path: Option<String>,
    /// E2B's user for ownership and relative paths; sandwatch runs everything as the policy's
    /// user, so this is accepted and not used.
    #[allow(dead_code, reason = "accepted as envd accepts it; the policy decides the user")]
    username: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message.into() });
    (status, Json(body)).into_response()
}

fn file_error(id: &str, e: FileError) -> Response {
    let status = match &e {
        FileError::NotFound { .. } => StatusCode::NOT_FOUND,
        FileError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        FileError::AlreadyExists { .. }
        | FileError::NotADirectory { .. }
        | FileError::IsADirectory { .. }
        | FileError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        FileError::Ended(_) => return not_running(id),
        FileError::Killed { .. } | FileError::Other { .. } | FileError::Io { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

fn need_path(q: &FileQuery) -> Option<&str> {
    q.path.as_deref().filter(|p| !p.is_empty())
}

fn no_path() -> Response {
    error(StatusCode::BAD_REQUEST, "the path query parameter is required")
}

/// `GET /files?path=`: the file's bytes, streamed.
pub async fn download(
    Extension(Routed(hosted)): Extension<Routed>,
    Query(q): Query<FileQuery>,
) -> Response {
    let Some(path) = need_path(&q) else {
        return no_path();
    };
    let (info, reader) = match hosted.sandbox.read_file(path).await {
        Ok(r) => r,
        Err(e) => return file_error(&hosted.id, e),
    };
    drop(hosted);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024));
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        info.name.replace(['"', '\\', '\r', '\n'], "_")
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn written(e: &EntryInfo) -> serde_json::Value {
    serde_json::json!({
        "name": e.name,
        "path": e.path,
        "type": if e.kind == EntryKind::Directory { "dir" } else { "file" },
    })
}

/// Copies a body stream into a file in the sandbox, refusing more than `limit` bytes.
async fn write_stream<S, E>(
    hosted: &crate::hosted::Hosted,
    path: &str,
    mut body: S,
    limit: usize,
) -> Result<EntryInfo, Response>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut writer = hosted
        .sandbox
        .write_file(path)
        .await
        .map_err(|e| file_error(&hosted.id, e))?;
    let mut total = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}"))
        })?;
        total += chunk.len();
        if total > limit {
            // What was written so far stays (as a partial file would with envd); say so.
            let _ = writer.finish().await;
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than the daemon's --max-body ({limit} bytes); {path} holds its first part"),
            ));
        }
        if let Err(e) = writer.write_all(&chunk).await {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // The sandbox's side stopped: its answer says why.
                break;
            }
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing {path}: {e}"),
            ));
        }
    }
    writer.finish().await.map_err(|e| file_error(&hosted.id, e))
}

/// `POST /files?path=`: multipart (one part per file, the part's filename its path when the
/// query names none) or a raw `application/octet-stream` body. Returns what was written.
pub async fn upload(
    State(state): State<ApiState>,
    Extension(Routed(hosted)): Extension<Routed>,
    Query(q): Query<FileQuery>,
    req: Request,
) -> Response {
    let limit = state.max_body;
    if req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed uploads are not supported by sandwatch serve: send the file uncompressed",
        );
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = match <Multipart as axum::extract::FromRequest<ApiState>>::from_request(req, &state).await {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        let mut out = Vec::new();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("the multipart body: {e}")),
            };
            let path = match (q.path.as_deref().filter(|p| !p.is_empty()), field.file_name()) {
                (Some(p), _) => p.to_owned(),
                (None, Some(name)) if !name.is_empty() => name.to_owned(),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "a file part needs a filename (its path) when the path parameter is absent",
                    );
                }
            };
            match write_stream(&hosted, &path, field, limit).await {
                Ok(e) => out.push(written(&e)),
                Err(r) => return r,
            }
        }
        if out.is_empty() {
            return error(StatusCode::BAD_REQUEST, "the multipart body holds no file");
        }
        return Json(serde_json::Value::Array(out)).into_response();
    }
    let Some(path) = need_path(&q).map(str::to_owned) else {
        return no_path();
    };
    let body = req.into_body().into_data_stream();
    match write_stream(&hosted, &path, body, limit).await {
        Ok(e) => Json(serde_json::json!([written(&e)])).into_response(),
        Err(r) => r,
    }
}
