//! `sandwatch sql-server` as an operator runs it: the process prints its addresses once bound,
//! answers over HTTP (and accepts Flight SQL connections), and exits 0 on SIGTERM; a busy port or a
//! missing audit log is a clear error. Needs no root (the servers only read Parquet).

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use support::*;

struct Server {
    child: Child,
    flight: String,
    http: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on free loopback ports and waits for the lines naming them.
fn start(data: &Path) -> Server {
    let mut child = Command::new(sandwatch_bin())
        .args(["sql-server", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sandwatch sql-server");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let lines = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let (mut flight, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while flight.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no listening lines; stderr: {:?}", stderr.lock().unwrap()));
        if let Some(addr) = line.strip_prefix("sandwatch: Flight SQL listening on grpc://") {
            flight = Some(addr.to_owned());
        }
        if let Some(addr) = line.strip_prefix("sandwatch: HTTP SQL listening on http://") {
            http = Some(addr.to_owned());
        }
    }
    Server {
        child,
        flight: flight.unwrap(),
        http: http.unwrap(),
        stderr,
    }
}

/// One HTTP/1.1 exchange: the status code and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Streamed bodies are chunked: keep the chunks' data only.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, body)
}

#[test]
fn sql_server_answers_until_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path());
    assert_eq!(
        http(&server.http, "GET", "/healthz", ""),
        (200, "ok\n".into())
    );
    let (status, body) = http(
        &server.http,
        "POST",
        "/v1/sql",
        r#"{"sql": "SELECT count(*) AS n FROM process_events"}"#,
    );
    assert_eq!((status, body.as_str()), (200, "{\"n\":0}\n"));
    let (status, body) = http(
        &server.http,
        "POST",
        "/v1/sql",
        r#"{"sql": "SELECT pidd FROM process_events"}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("did you mean pid"), "{body}");
    TcpStream::connect(&server.flight).expect("the Flight SQL port accepts connections");

    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{:?}",
        server.stderr.lock().unwrap()
    );
    assert!(
        TcpStream::connect(&server.http).is_err(),
        "the HTTP port is closed"
    );
}

#[test]
fn sql_server_names_what_is_wrong() {
    let data = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = sandwatch(&[
        "sql-server",
        "--data",
        data.path().to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("already in use"),
        "{stderr}"
    );

    let missing = data.path().join("nothing-here");
    let out = sandwatch(&["sql-server", "--data", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no audit log"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = sandwatch(&[
        "sql-server",
        "--data",
        data.path().to_str().unwrap(),
        "--token-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
