//! What the hooks tests share: a real HTTP receiver on 127.0.0.1 that records every request and
//! answers as the test scripts it, and helpers to run a dispatcher and wait for its records.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::IntoResponse,
};
use sandwatch_hooks::{
    Alert, DeliveryRecord, DeliveryState, DispatchSummary, Dispatcher, DispatcherHandle, EventRef,
    HooksConfig, Priority,
};
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// How the receiver answers the next request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// Takes the request and never answers.
    Stall,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    arrived: Notify,
}

/// An HTTP server on 127.0.0.1: answers 200 unless scripted otherwise.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    });
    shared.arrived.notify_waiters();
    match reply {
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            (status, format!("answer {code}")).into_response()
        }
        Reply::Stall => std::future::pending().await,
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests get these answers, in order; then 200 again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; panics naming what did arrive after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {within:?} for {n} requests, got {}: {:#?}",
                    got.len(),
                    got.iter()
                        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout_at(deadline.into(), notified).await;
        }
    }
}

/// A dispatcher on `yaml` in `state`, with its records on a channel.
pub struct Running {
    pub handle: DispatcherHandle,
    pub done: JoinHandle<DispatchSummary>,
    pub records: mpsc::UnboundedReceiver<DeliveryRecord>,
}

pub fn start(yaml: &str, state: &Path) -> Running {
    let config = HooksConfig::from_yaml("hooks.yaml", yaml).expect("test config");
    let (tx, records) = mpsc::unbounded_channel();
    let (handle, done) = Dispatcher::new(config, state)
        .with_records(tx)
        .spawn()
        .expect("dispatcher starts");
    Running {
        handle,
        done,
        records,
    }
}

impl Running {
    /// Collects records until one satisfies `until`; panics with what came after `within`.
    pub async fn records_until(
        &mut self,
        within: Duration,
        until: impl Fn(&DeliveryRecord) -> bool,
    ) -> Vec<DeliveryRecord> {
        let mut got = Vec::new();
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.records.recv()).await {
                Ok(Some(r)) => {
                    let stop = until(&r);
                    got.push(r);
                    if stop {
                        return got;
                    }
                }
                Ok(None) => panic!("the dispatcher stopped; records so far: {got:#?}"),
                Err(_) => panic!("no matching record within {within:?}; records: {got:#?}"),
            }
        }
    }

    /// Records until `n` of them are in state `state`.
    pub async fn wait_state(
        &mut self,
        state: DeliveryState,
        n: usize,
        within: Duration,
    ) -> Vec<DeliveryRecord> {
        let count = std::sync::atomic::AtomicUsize::new(0);
        self.records_until(within, |r| {
            r.state == state && count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == n
        })
        .await
    }

    pub async fn stop(self, grace: Duration) -> DispatchSummary {
        self.handle.shutdown(grace);
        self.done.await.expect("dispatcher task")
    }
}

/// An alert of `rule` in `sandbox`, resting on an event of `pid` (distinct pids, distinct dedup
/// keys).
pub fn alert(rule: &str, sandbox: &str, priority: Priority, pid: u32) -> Alert {
    let now = sandwatch_hooks::alert::now_ns();
    let mut a = Alert::new(
        now,
        "test-host",
        rule,
        priority,
        Some(sandbox.to_owned()),
        format!("{rule} fired in {sandbox} (pid {pid})"),
        vec![EventRef {
            table: "process_events".into(),
            time_ns: now,
            pid,
            tid: pid,
            event: "execve".into(),
        }],
    );
    a.tags = vec!["process".into(), "mitre_execution".into()];
    a.actions = vec!["alert".into()];
    a
}
