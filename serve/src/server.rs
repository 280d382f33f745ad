//! The daemon's listeners and its life: bind (control plane, envd, the local socket), recover
//! what a predecessor left, serve, and on SIGTERM drain (no new sandboxes; the running ones
//! killed, or left to finish with `--drain wait`), stop listening, flush the audit log.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::{Router, middleware};
use sandwatch_runner::sandbox::EndReason;
use tokio::{
    net::{TcpListener, UnixListener},
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

use crate::{
    api::{self, Api, ApiState},
    control, envd, ops,
};

/// What SIGTERM does to the sandboxes still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Kill them (reason `order`, "the daemon shut down"), then flush.
    Kill,
    /// Let them run to their timeouts (or an API kill); a second SIGTERM or SIGINT kills them.
    Wait,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to serve without API keys on {0}: --insecure-no-auth is allowed on loopback addresses only"
    )]
    InsecureNotLoopback(SocketAddr),
    #[error("cannot watch signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("the audit log did not flush: {0}")]
    Flush(#[source] sandwatch_collector::CollectorError),
}

/// Where the daemon listens.
#[derive(Clone, Debug)]
pub struct Listen {
    pub api: SocketAddr,
    pub envd: SocketAddr,
    /// The local socket (control plane and envd together, for root on this host).
    pub socket: Option<PathBuf>,
}

/// A daemon whose listeners are bound.
pub struct Server {
    state: ApiState,
    api: TcpListener,
    envd: TcpListener,
    local: Option<(UnixListener, PathBuf)>,
    drain: Drain,
    pool_stop: Arc<Notify>,
}

/// The addresses a server is bound to (port 0 resolved).
#[derive(Clone, Debug)]
pub struct Bound {
    pub api: SocketAddr,
    pub envd: SocketAddr,
    pub socket: Option<PathBuf>,
}

impl Server {
    /// Binds every listener; nothing is served until [`Server::run`].
    pub async fn bind(state: ApiState, listen: &Listen, drain: Drain) -> Result<Self, ServeError> {
        if state.keys.is_none() {
            for a in [listen.api, listen.envd] {
                if !a.ip().is_loopback() {
                    return Err(ServeError::InsecureNotLoopback(a));
                }
            }
        }
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    what,
                    addr: addr.to_string(),
                    source,
                })
        };
        let api = bind("--api-listen", listen.api).await?;
        let envd = bind("--envd-listen", listen.envd).await?;
        let local = match &listen.socket {
            Some(path) => Some((bind_unix(path)?, path.clone())),
            None => None,
        };
        Ok(Self {
            state,
            api,
            envd,
            local,
            drain,
            pool_stop: Arc::new(Notify::new()),
        })
    }

    pub fn bound(&self) -> Bound {
        Bound {
            api: self.api.local_addr().expect("a bound listener has an address"),
            envd: self.envd.local_addr().expect("a bound listener has an address"),
            socket: self.local.as_ref().map(|(_, p)| p.clone()),
        }
    }

    /// The routers of each listener.
    fn apps(&self) -> (Router, Router, Router) {
        let state = self.state.clone();
        let body_limit = axum::extract::DefaultBodyLimit::max(state.max_body);
        let control_routes = control::routes;
        let control_app = control_routes()
            .route_layer(middleware::from_fn_with_state(state.clone(), api::require_api_key))
            .merge(ops::public_routes())
            .layer(body_limit)
            .layer(middleware::from_fn_with_state(
                (state.clone(), Api::Control),
                api::record,
            ))
            .with_state(state.clone());
        let envd_app = envd::routes(&state)
            .layer(middleware::from_fn_with_state(state.clone(), envd::route))
            .layer(body_limit)
            .layer(middleware::from_fn_with_state(
                (state.clone(), Api::Envd),
                api::record,
            ))
            .with_state(state.clone());
        // The local socket: envd calls carry E2b-Sandbox-Id, control-plane calls do not.
        let envd_local = envd::routes(&state)
            .layer(middleware::from_fn_with_state(state.clone(), envd::route))
            .with_state(state.clone());
        let local_app = control_routes()
            .merge(ops::public_routes())
            .with_state(state.clone())
            .fallback_service(envd_local)
            .layer(middleware::from_fn(api::local_caller))
            .layer(body_limit)
            .layer(middleware::from_fn_with_state(
                (state.clone(), Api::Local),
                api::record,
            ));
        (control_app, envd_app, local_app)
    }

    /// Recovers what a crashed predecessor left, serves until SIGTERM or SIGINT, drains, stops
    /// listening and flushes the audit log. `ready` is called once everything listens, with the
    /// sandboxes a predecessor left (ended and recorded by then).
    pub async fn run(
        self,
        ready: impl FnOnce(&Bound, &[String]),
    ) -> Result<ServeSummary, ServeError> {
        let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
        let daemon = self.state.daemon.clone();
        let recovered = daemon.recover();
        daemon.start_pool(self.pool_stop.clone());
        daemon.start_sampler(self.pool_stop.clone());
        let bound = self.bound();
        let (control_app, envd_app, local_app) = self.apps();
        let stop = Arc::new(Notify::new());
        let stopped = |stop: Arc<Notify>| async move { stop.notified().await };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            axum::serve(
                self.api,
                control_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped(stop.clone()))
            .into_future(),
        );
        tasks.spawn(
            axum::serve(
                self.envd,
                envd_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped(stop.clone()))
            .into_future(),
        );
        if let Some((listener, _)) = self.local {
            tasks.spawn(
                axum::serve(listener, local_app.into_make_service())
                    .with_graceful_shutdown(stopped(stop.clone()))
                    .into_future(),
            );
        }
        ready(&bound, &recovered);
        let first = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        tracing::info!("{first}: draining");
        daemon.begin_drain();
        self.pool_stop.notify_waiters();
        daemon.pool.drain().await;
        let why = format!("the daemon shut down ({first})");
        match self.drain {
            Drain::Kill => daemon.end_all(EndReason::Order, &why),
            Drain::Wait => {
                tokio::select! {
                    () = daemon.wait_empty() => {}
                    _ = sigterm.recv() => daemon.end_all(EndReason::Order, &format!("{why}, then SIGTERM again")),
                    _ = sigint.recv() => daemon.end_all(EndReason::Order, &format!("{why}, then SIGINT")),
                }
            }
        }
        daemon.wait_empty().await;
        stop.notify_waiters();
        // Connections that linger (keep-alive, a client that never reads) do not hold the flush.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        if let Some(p) = &bound.socket {
            let _ = std::fs::remove_file(p);
        }
        let collector = daemon.host.shutdown().await.map_err(ServeError::Flush)?;
        Ok(ServeSummary {
            recovered,
            collector,
            signal: first,
        })
    }
}

/// What a daemon's run did, for the CLI to report.
#[derive(Debug)]
pub struct ServeSummary {
    /// Sandboxes a predecessor left, ended at start.
    pub recovered: Vec<String>,
    pub collector: Option<sandwatch_collector::Summary>,
    pub signal: &'static str,
}

/// The local socket: root's own (0600 in a root-only directory), replacing a stale one.
fn bind_unix(path: &std::path::Path) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| ServeError::Bind {
        what: "--socket",
        addr: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another daemon answers on it",
        )));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}
