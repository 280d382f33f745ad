//! A client of the daemon for sandwatch's own tools (`sandwatch run` through the daemon, the
//! serve benchmark): E2B's control plane (create, kill) and envd's process service (start a
//! command and stream it, feed its stdin, signal it), over HTTP/2, on the local socket or TCP.
//!
//! Agent platforms use E2B's SDKs instead; this is the same wire protocol, from Rust.

use std::{path::PathBuf, time::Duration};

use connectrpc::client::{CallOptions, ClientConfig, Http2Connection, SharedHttp2Connection};
use http_body_util::BodyExt as _;

use crate::proto::process::{
    CloseStdinRequest, ProcessClient, ProcessConfig, ProcessInput, ProcessSelector,
    SendInputRequest, SendSignalRequest, Signal, StartRequest, StartResponse,
    __buffa::oneof::{
        process_event::{Event, data_event::Output},
        process_input::Input,
        process_selector::Selector,
    },
};

/// Where the daemon is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// Its local socket: both APIs, no key (root on this host).
    Unix(PathBuf),
    /// Its TCP listeners: `http://host:port` of the control plane and of envd.
    Tcp { api: http::Uri, envd: http::Uri },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp { api, .. } => write!(f, "{api}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the daemon at {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The control plane said no: its status and message.
    #[error("the daemon refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error(transparent)]
    Rpc(#[from] connectrpc::ConnectError),
    #[error("the daemon's answer is not what E2B's API says: {0}")]
    Protocol(String),
}

/// A sandbox made through the daemon.
#[derive(Clone, Debug)]
pub struct Created {
    pub sandbox_id: String,
    pub envd_token: String,
}

/// What a create asks for (a subset of E2B's `NewSandbox`, plus sandwatch's inline policy).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CreateRequest {
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(rename = "sandwatchPolicy", skip_serializing_if = "Option::is_none")]
    pub policy_yaml: Option<String>,
    #[serde(rename = "envVars", skip_serializing_if = "Vec::is_empty", serialize_with = "as_map")]
    pub env: Vec<(String, String)>,
}

fn as_map<S: serde::Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, val) in v {
        m.serialize_entry(k, val)?;
    }
    m.end()
}

/// One event of a command started through the daemon.
#[derive(Debug)]
pub enum CommandEvent {
    Started { pid: u32 },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// envd's end: exit code (-1 for a signal), whether it exited, its status words.
    Ended {
        exit_code: i32,
        exited: bool,
        status: String,
        error: Option<String>,
    },
}

pub struct DaemonClient {
    endpoint: Endpoint,
    api: SharedHttp2Connection,
    api_base: http::Uri,
    envd: SharedHttp2Connection,
    envd_base: http::Uri,
    api_key: Option<String>,
}

impl DaemonClient {
    /// A client of the daemon at `endpoint` (connections are made on first use). Call within a
    /// tokio runtime.
    pub fn new(endpoint: Endpoint, api_key: Option<String>) -> Self {
        let local: http::Uri = http::Uri::from_static("http://localhost");
        let (api, api_base, envd, envd_base) = match &endpoint {
            Endpoint::Unix(p) => {
                let c = Http2Connection::lazy_unix(p.clone(), local.clone()).shared(256);
                (c.clone(), local.clone(), c, local)
            }
            Endpoint::Tcp { api, envd } => (
                Http2Connection::lazy_plaintext(api.clone()).shared(256),
                api.clone(),
                Http2Connection::lazy_plaintext(envd.clone()).shared(256),
                envd.clone(),
            ),
        };
        Self {
            endpoint,
            api,
            api_base,
            envd,
            envd_base,
            api_key,
        }
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.to_string(),
            message: e.to_string(),
        }
    }

    /// A control-plane call: JSON in, status and JSON out.
    async fn rest(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        use connectrpc::client::ClientTransport as _;
        let uri = format!(
            "{}{path}",
            self.api_base.to_string().trim_end_matches('/')
        );
        let mut req = http::Request::builder().method(method).uri(uri);
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        let bytes = match &body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?
            }
            None => Vec::new(),
        };
        let req = req
            .body(connectrpc::client::full_body(bytes.into()))
            .map_err(|e| self.transport(e))?;
        let resp = self.api.send(req).await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(e))?
            .to_bytes();
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&body)))
            })?
        };
        Ok((status, json))
    }

    fn refused(status: u16, body: &serde_json::Value) -> ClientError {
        ClientError::Refused {
            status,
            message: body
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
                .to_owned(),
        }
    }

    /// `POST /v2/sandboxes`.
    pub async fn create(&self, req: &CreateRequest) -> Result<Created, ClientError> {
        let body = serde_json::to_value(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (status, json) = self
            .rest(http::Method::POST, "/v2/sandboxes", Some(body))
            .await?;
        if status != 201 {
            return Err(Self::refused(status, &json));
        }
        let field = |k: &str| {
            json.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Protocol(format!("no {k} in the created sandbox")))
        };
        Ok(Created {
            sandbox_id: field("sandboxID")?,
            envd_token: field("envdAccessToken")?,
        })
    }

    /// `DELETE /sandboxes/{id}`; a sandbox already gone is not an error.
    pub async fn kill(&self, id: &str) -> Result<(), ClientError> {
        let (status, json) = self
            .rest(http::Method::DELETE, &format!("/sandboxes/{id}"), None)
            .await?;
        match status {
            204 | 404 => Ok(()),
            s => Err(Self::refused(s, &json)),
        }
    }

    fn process(&self, sandbox: &Created) -> Result<ProcessClient<SharedHttp2Connection>, ClientError> {
        let mut headers = http::HeaderMap::new();
        let mut put = |k: &'static str, v: &str| -> Result<(), ClientError> {
            headers.insert(
                k,
                v.parse()
                    .map_err(|e: http::header::InvalidHeaderValue| ClientError::Protocol(e.to_string()))?,
            );
            Ok(())
        };
        put("e2b-sandbox-id", &sandbox.sandbox_id)?;
        put("x-access-token", &sandbox.envd_token)?;
        let config = ClientConfig::new(self.envd_base.clone()).with_default_headers(headers);
        Ok(ProcessClient::new(self.envd.clone(), config))
    }

    /// Starts `argv` in the sandbox (stdin a pipe when `stdin`), and hands its events to `on`
    /// until it ends. `timeout` is the command's lifetime (envd kills it then).
    pub async fn run(
        &self,
        sandbox: &Created,
        argv: &[String],
        stdin: bool,
        timeout: Option<Duration>,
        mut on: impl FnMut(CommandEvent),
    ) -> Result<(), ClientError> {
        let client = self.process(sandbox)?;
        let (cmd, args) = argv
            .split_first()
            .ok_or_else(|| ClientError::Protocol("an empty command".into()))?;
        let request = StartRequest {
            process: ProcessConfig {
                cmd: cmd.clone(),
                args: args.to_vec(),
                ..Default::default()
            }
            .into(),
            stdin: Some(stdin),
            ..Default::default()
        };
        let mut options = CallOptions::default();
        if let Some(t) = timeout {
            options = options.with_timeout(t);
        }
        let mut stream = client.start_with_options(request, options).await?;
        while let Some(msg) = stream.message::<StartResponse>().await? {
            let msg = msg.to_owned_message();
            let Some(event) = msg.event.into_option().and_then(|e| e.event) else {
                continue;
            };
            match event {
                Event::Start(s) => on(CommandEvent::Started { pid: s.pid }),
                Event::Data(d) => match d.output {
                    Some(Output::Stdout(b)) => on(CommandEvent::Stdout(b)),
                    Some(Output::Stderr(b)) => on(CommandEvent::Stderr(b)),
                    _ => {}
                },
                Event::End(e) => on(CommandEvent::Ended {
                    exit_code: e.exit_code,
                    exited: e.exited,
                    status: e.status,
                    error: e.error,
                }),
                Event::Keepalive(_) => {}
            }
        }
        Ok(())
    }

    fn selector(pid: u32) -> ProcessSelector {
        ProcessSelector {
            selector: Some(Selector::Pid(pid)),
            ..Default::default()
        }
    }

    /// Writes to a command's stdin.
    pub async fn send_stdin(&self, sandbox: &Created, pid: u32, data: Vec<u8>) -> Result<(), ClientError> {
        self.process(sandbox)?
            .send_input(SendInputRequest {
                process: Self::selector(pid).into(),
                input: ProcessInput {
                    input: Some(Input::Stdin(data)),
                    ..Default::default()
                }
                .into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Closes a command's stdin.
    pub async fn close_stdin(&self, sandbox: &Created, pid: u32) -> Result<(), ClientError> {
        self.process(sandbox)?
            .close_stdin(CloseStdinRequest {
                process: Self::selector(pid).into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Sends SIGTERM (`kill: false`) or SIGKILL to a command.
    pub async fn signal(&self, sandbox: &Created, pid: u32, kill: bool) -> Result<(), ClientError> {
        self.process(sandbox)?
            .send_signal(SendSignalRequest {
                process: Self::selector(pid).into(),
                signal: if kill {
                    Signal::SIGNAL_SIGKILL
                } else {
                    Signal::SIGNAL_SIGTERM
                }
                .into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// The signal number behind envd's status words (`signal: killed` → 9), as
/// `crate::processes::ProcessEnd` wrote them.
pub fn signal_of_status(status: &str) -> Option<i32> {
    let words = status.strip_prefix("signal: ")?;
    (1..65).find(|&s| crate::processes::signal_words(s) == words)
}
