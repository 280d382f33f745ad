//! envd's `filesystem.Filesystem` service over the runner's in-sandbox file operations
//! (`sandwatch_runner::files`): stat, list, make directories, move, remove, and watch a
//! directory, streamed (`WatchDir`, the async SDK) or polled (`CreateWatcher`,
//! `GetWatcherEvents`, `RemoveWatcher`, the sync SDK).
//!
//! Polled watchers live here, keyed by id, each tied to its sandbox: a watcher of another
//! sandbox is not found, and a watcher whose sandbox ended reports what it had and then nothing.
//! Each keeps at most [`MAX_BUFFERED`] events between polls; what it had to drop is logged.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::UNIX_EPOCH,
};

use connectrpc::{
    ConnectError, Encodable, RequestContext, Response, ServiceRequest, ServiceResult,
    ServiceStream,
};
use sandwatch_runner::files::{EntryInfo, EntryKind, FileError, FsEvent, FsEventKind};

use super::{gone, routed};
use crate::{
    daemon::Daemon,
    proto::filesystem::{
        CreateWatcherRequest, CreateWatcherResponse, EntryInfo as ProtoEntry, EventType,
        FileType, FilesystemEvent, GetWatcherEventsRequest, GetWatcherEventsResponse,
        ListDirRequest, ListDirResponse, MakeDirRequest, MakeDirResponse, MoveRequest,
        MoveResponse, RemoveRequest, RemoveResponse, RemoveWatcherRequest, RemoveWatcherResponse,
        StatRequest, StatResponse, WatchDirRequest, WatchDirResponse,
        __buffa::oneof::watch_dir_response::Event as WatchEvent,
        watch_dir_response::{KeepAlive, StartEvent},
    },
};

/// Events a polled watcher keeps between two polls.
pub const MAX_BUFFERED: usize = 10_000;

struct Watcher {
    sandbox: String,
    events: Arc<Mutex<Vec<FilesystemEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

pub struct FilesystemService {
    daemon: Arc<Daemon>,
    watchers: Mutex<HashMap<String, Watcher>>,
}

impl FilesystemService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self {
            daemon,
            watchers: Mutex::new(HashMap::new()),
        }
    }

    fn watchers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watcher>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FilesystemService {
    fn drop(&mut self) {
        for (_, w) in self.watchers().drain() {
            w.task.abort();
        }
    }
}

/// A file error as the Connect code envd gives (the SDK turns `not_found` into
/// `FileNotFoundException`, `already_exists` into `make_dir` returning False).
pub fn file_error(e: FileError) -> ConnectError {
    match e {
        FileError::NotFound { .. } => ConnectError::not_found(e.to_string()),
        FileError::PermissionDenied { .. } => ConnectError::permission_denied(e.to_string()),
        FileError::AlreadyExists { .. } => ConnectError::already_exists(e.to_string()),
        FileError::NotADirectory { .. }
        | FileError::IsADirectory { .. }
        | FileError::InvalidInput { .. } => ConnectError::invalid_argument(e.to_string()),
        FileError::Ended(_) => gone(),
        FileError::Killed { .. } | FileError::Other { .. } | FileError::Io { .. } => {
            ConnectError::internal(e.to_string())
        }
    }
}

pub fn entry(e: &EntryInfo) -> ProtoEntry {
    let modified = e.modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    ProtoEntry {
        name: e.name.clone(),
        r#type: match e.kind {
            EntryKind::File => FileType::FILE_TYPE_FILE,
            EntryKind::Directory => FileType::FILE_TYPE_DIRECTORY,
            EntryKind::Symlink => FileType::FILE_TYPE_SYMLINK,
            EntryKind::Other => FileType::FILE_TYPE_UNSPECIFIED,
        }
        .into(),
        path: e.path.clone(),
        size: e.size.min(i64::MAX as u64) as i64,
        mode: e.mode,
        permissions: e.permissions.clone(),
        owner: e.owner.clone(),
        group: e.group.clone(),
        modified_time: buffa_types::google::protobuf::Timestamp {
            seconds: modified.as_secs() as i64,
            nanos: modified.subsec_nanos() as i32,
            ..Default::default()
        }
        .into(),
        symlink_target: e.symlink_target.clone(),
        ..Default::default()
    }
}

fn fs_event(e: &FsEvent) -> FilesystemEvent {
    FilesystemEvent {
        name: e.name.clone(),
        r#type: match e.kind {
            FsEventKind::Create => EventType::EVENT_TYPE_CREATE,
            FsEventKind::Write => EventType::EVENT_TYPE_WRITE,
            FsEventKind::Remove => EventType::EVENT_TYPE_REMOVE,
            FsEventKind::Rename => EventType::EVENT_TYPE_RENAME,
            FsEventKind::Chmod => EventType::EVENT_TYPE_CHMOD,
        }
        .into(),
        ..Default::default()
    }
}

impl crate::proto::filesystem::Filesystem for FilesystemService {
    async fn stat<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, StatRequest>,
    ) -> ServiceResult<impl Encodable<StatResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let e = hosted
            .sandbox
            .stat(request.path)
            .await
            .map_err(file_error)?;
        Response::ok(StatResponse {
            entry: entry(&e).into(),
            ..Default::default()
        })
    }

    async fn make_dir<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, MakeDirRequest>,
    ) -> ServiceResult<impl Encodable<MakeDirResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let e = hosted
            .sandbox
            .make_dir(request.path)
            .await
            .map_err(file_error)?;
        Response::ok(MakeDirResponse {
            entry: entry(&e).into(),
            ..Default::default()
        })
    }

    async fn r#move<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, MoveRequest>,
    ) -> ServiceResult<impl Encodable<MoveResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let e = hosted
            .sandbox
            .rename(request.source, request.destination)
            .await
            .map_err(file_error)?;
        Response::ok(MoveResponse {
            entry: entry(&e).into(),
            ..Default::default()
        })
    }

    async fn list_dir<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, ListDirRequest>,
    ) -> ServiceResult<impl Encodable<ListDirResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let entries = hosted
            .sandbox
            .list_dir(request.path, request.depth.max(1))
            .await
            .map_err(file_error)?;
        Response::ok(ListDirResponse {
            entries: entries.iter().map(entry).collect(),
            ..Default::default()
        })
    }

    async fn remove<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, RemoveRequest>,
    ) -> ServiceResult<impl Encodable<RemoveResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        hosted
            .sandbox
            .remove(request.path)
            .await
            .map_err(file_error)?;
        Response::ok(RemoveResponse::default())
    }

    async fn watch_dir(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, WatchDirRequest>,
    ) -> ServiceResult<ServiceStream<impl Encodable<WatchDirResponse> + Send + use<>>> {
        let hosted = routed(&ctx)?;
        let watch = hosted
            .sandbox
            .watch_dir(request.path, request.recursive)
            .await
            .map_err(file_error)?;
        drop(hosted);
        let keepalive = std::time::Duration::from_secs(50);
        let start = futures::stream::once(async {
            Ok(WatchDirResponse {
                event: Some(WatchEvent::Start(Box::default())),
                ..Default::default()
            })
        });
        let events = futures::stream::unfold(Some(watch), move |w| async move {
            let mut w = w?;
            match tokio::time::timeout(keepalive, w.next()).await {
                Err(_) => Some((
                    Ok(WatchDirResponse {
                        event: Some(WatchEvent::Keepalive(Box::<KeepAlive>::default())),
                        ..Default::default()
                    }),
                    Some(w),
                )),
                Ok(None) => None,
                Ok(Some(Ok(e))) => Some((
                    Ok(WatchDirResponse {
                        event: Some(WatchEvent::Filesystem(Box::new(fs_event(&e)))),
                        ..Default::default()
                    }),
                    Some(w),
                )),
                Ok(Some(Err(e))) => Some((Err(file_error(e)), None)),
            }
        });
        let _ = StartEvent::default();
        Response::stream_ok(futures::StreamExt::chain(start, events))
    }

    async fn create_watcher<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, CreateWatcherRequest>,
    ) -> ServiceResult<impl Encodable<CreateWatcherResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let mut watch = hosted
            .sandbox
            .watch_dir(request.path, request.recursive)
            .await
            .map_err(file_error)?;
        let id = format!("w-{:016x}", rand::random::<u64>());
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let (sandbox, watcher) = (hosted.id.clone(), id.clone());
        let task = tokio::spawn(async move {
            let mut dropped = 0u64;
            while let Some(Ok(e)) = watch.next().await {
                let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
                if buf.len() < MAX_BUFFERED {
                    buf.push(fs_event(&e));
                } else {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        tracing::warn!(
                            sandbox, watcher,
                            "a polled watcher holds {MAX_BUFFERED} unread events: {dropped} dropped"
                        );
                    }
                }
            }
        });
        let mut watchers = self.watchers();
        // Watchers of sandboxes that ended are of no use to anyone any more.
        watchers.retain(|_, w| {
            let live = self.daemon.get(None, &w.sandbox).is_some();
            if !live {
                w.task.abort();
            }
            live
        });
        watchers.insert(
            id.clone(),
            Watcher {
                sandbox: hosted.id.clone(),
                events,
                task,
            },
        );
        drop(watchers);
        Response::ok(CreateWatcherResponse {
            watcher_id: id,
            ..Default::default()
        })
    }

    async fn get_watcher_events<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, GetWatcherEventsRequest>,
    ) -> ServiceResult<impl Encodable<GetWatcherEventsResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let watchers = self.watchers();
        let w = watchers
            .get(request.watcher_id)
            .filter(|w| w.sandbox == hosted.id)
            .ok_or_else(|| {
                ConnectError::not_found(format!("watcher {} not found", request.watcher_id))
            })?;
        let events = std::mem::take(&mut *w.events.lock().unwrap_or_else(|e| e.into_inner()));
        Response::ok(GetWatcherEventsResponse {
            events,
            ..Default::default()
        })
    }

    async fn remove_watcher<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, RemoveWatcherRequest>,
    ) -> ServiceResult<impl Encodable<RemoveWatcherResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let mut watchers = self.watchers();
        match watchers.get(request.watcher_id) {
            Some(w) if w.sandbox == hosted.id => {
                if let Some(w) = watchers.remove(request.watcher_id) {
                    w.task.abort();
                }
                Response::ok(RemoveWatcherResponse::default())
            }
            _ => Err(ConnectError::not_found(format!(
                "watcher {} not found",
                request.watcher_id
            ))),
        }
    }
}
