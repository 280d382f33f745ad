//! The SQL servers started in-process on 127.0.0.1:0 over a real session, stopped when dropped
//! (also when a test fails).

use std::{net::SocketAddr, path::Path};

use sandwatch_analytics::{
    QueryLimits, SqlSession, access::AccessToken, flight_sql::FlightSqlServer, sql_http,
};
use tokio::{net::TcpListener, task::JoinHandle};

pub struct Running {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(dir: &Path, limits: QueryLimits) -> SqlSession {
    SqlSession::open(dir, limits)
        .await
        .expect("opening the audit log")
}

fn token(t: Option<&str>) -> Option<AccessToken> {
    t.map(|t| AccessToken::new(t).expect("a valid token"))
}

pub async fn flight_sql(dir: &Path, limits: QueryLimits, access: Option<&str>) -> Running {
    let server = FlightSqlServer::new(session(dir, limits).await, token(access)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        server
            .serve(listener, std::future::pending())
            .await
            .expect("the Flight SQL server failed");
    });
    Running { addr, task }
}

pub async fn http(dir: &Path, limits: QueryLimits, access: Option<&str>) -> Running {
    let router = sql_http::router(session(dir, limits).await, token(access));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        sql_http::serve(listener, router, std::future::pending())
            .await
            .expect("the HTTP SQL server failed");
    });
    Running { addr, task }
}
