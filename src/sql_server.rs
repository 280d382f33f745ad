//! `sandwatch sql-server`: the audit log over Arrow Flight SQL and, when asked, over HTTP, until
//! SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::anyhow;
use sandwatch_analytics::{
    QueryLimits, SqlSession, access::AccessToken, flight_sql::FlightSqlServer, sql_http,
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    cli::{EXIT_USAGE, Failure},
    sql::{parse_bytes, parse_duration, query_failure},
};

/// How long running queries get to finish after SIGINT or SIGTERM before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct SqlServerArgs {
    /// The audit log (`run --data`).
    #[arg(long, value_name = "DIR", default_value = "./sandwatch-data")]
    pub data: PathBuf,
    /// Where Flight SQL listens (host:port; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Where the HTTP SQL endpoint listens (host:port); off unless given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// A file holding the access token every call must present (`authorization: Bearer
    /// <token>`, or Basic auth sandwatch:<token>). Without it, anyone who reaches the address
    /// can read the whole log.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Stop a query that runs longer than this.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory all running queries may hold together for sorts, joins and aggregates (past it,
    /// they spill to disk or fail), e.g. 512M, 4G.
    #[arg(long, value_name = "BYTES", default_value = "2G", value_parser = parse_bytes)]
    pub memory_limit: usize,
}

async fn bind(addr: &str, what: &str, flag: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!(
                    "{addr} is already in use (another sql-server?); choose another with {flag}"
                )
            }
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{addr} is not an address of this host ({e})")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("not allowed to listen on {addr} ({e}; ports below 1024 need privileges)")
            }
            _ => format!("cannot listen on {addr}: {e}"),
        };
        Failure {
            code: EXIT_USAGE,
            error: anyhow!("{what}: {why}"),
        }
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Failure> {
    listener.local_addr().map_err(|e| Failure {
        code: 1,
        error: anyhow!("the listening socket's address: {e}"),
    })
}

fn warn_if_open(addr: SocketAddr, token: &Option<AccessToken>) {
    if token.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "sandwatch: warning: {addr} is reachable from other hosts and no --token-file is set: \
             anyone who reaches it can read the whole audit log"
        );
    }
}

pub async fn sql_server(args: SqlServerArgs) -> Result<u8, Failure> {
    let token = args
        .token_file
        .as_deref()
        .map(AccessToken::from_file)
        .transpose()
        .map_err(query_failure)?;
    let limits = QueryLimits {
        memory_bytes: args.memory_limit,
        timeout: args.timeout,
    };
    let session = SqlSession::open(&args.data, limits)
        .await
        .map_err(query_failure)?;

    let flight_listener = bind(&args.listen, "Flight SQL", "--listen").await?;
    let flight_addr = local_addr(&flight_listener)?;
    let http_listener = match &args.http {
        Some(addr) => Some(bind(addr, "HTTP SQL", "--http").await?),
        None => None,
    };

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let flight = FlightSqlServer::new(session.clone(), token.clone()).map_err(query_failure)?;
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(flight.serve(flight_listener, until_stopped()));
    warn_if_open(flight_addr, &token);
    eprintln!("sandwatch: Flight SQL listening on grpc://{flight_addr}");
    if let Some(listener) = http_listener {
        let addr = local_addr(&listener)?;
        let router = sql_http::router(session, token.clone());
        servers.spawn(sql_http::serve(listener, router, until_stopped()));
        warn_if_open(addr, &token);
        eprintln!("sandwatch: HTTP SQL listening on http://{addr}");
    }

    let runtime = |e: std::io::Error| Failure {
        code: 1,
        error: anyhow!("installing the signal handlers: {e}"),
    };
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime)?;
    tokio::select! {
        _ = sigint.recv() => eprintln!("sandwatch: SIGINT: stopping"),
        _ = sigterm.recv() => eprintln!("sandwatch: SIGTERM: stopping"),
        ended = servers.join_next() => {
            // A server does not end before it is told to: this is its failure.
            let error = match ended {
                Some(Ok(Err(e))) => anyhow!(e),
                Some(Err(e)) => anyhow!("a server task failed: {e}"),
                Some(Ok(Ok(()))) | None => anyhow!("a server stopped on its own"),
            };
            return Err(Failure { code: 1, error });
        }
    }
    let _ = stop.send(true);
    let drain = async {
        while let Some(ended) = servers.join_next().await {
            if let Ok(Err(e)) = ended {
                tracing::warn!(error = %e, "while stopping");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        eprintln!(
            "sandwatch: queries still running after {}s: dropped",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(0)
}
