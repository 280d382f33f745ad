//! envd's `process.Process` service over a hosted sandbox's commands (see `crate::processes`):
//! `Start` and `Connect` stream a command's start, output and end; `SendInput`, `StreamInput` and
//! `CloseStdin` feed its stdin; `SendSignal` signals it; `List` lists the running ones.
//!
//! As in E2B's envd, the call's deadline (`connect-timeout-ms` of `Start`) is the command's
//! lifetime: the command is killed when it passes. A client that goes away does not kill it.
//! PTYs are not supported (`unimplemented`).

use std::{sync::Arc, time::Duration};

use connectrpc::{
    ConnectError, Encodable, InboundStream, RequestContext, Response, ServiceRequest,
    ServiceResult, ServiceStream,
};
use futures::StreamExt as _;
use sandwatch_runner::sandbox::{CommandRequest, SandboxError};
use tokio::sync::{broadcast, mpsc};

use super::{gone, routed};
use crate::{
    daemon::Daemon,
    hosted::Hosted,
    processes::{Output, OutputLimits, Process, ProcessEnd, ProcessSpec},
    proto::process::{
        CloseStdinRequest, CloseStdinResponse, ConnectRequest, ConnectResponse, ListRequest,
        ListResponse, ProcessConfig, ProcessEvent, ProcessInfo, ProcessSelector, SendInputRequest,
        SendInputResponse, SendSignalRequest, SendSignalResponse, Signal, StartRequest,
        StartResponse, StreamInputRequest, StreamInputResponse, UpdateRequest, UpdateResponse,
        __buffa::oneof::{
            process_event::{Event, data_event::Output as DataOutput},
            process_input::Input,
            process_selector::Selector,
            stream_input_request::Event as InputEvent,
        },
        process_event::{DataEvent, EndEvent, KeepAlive, StartEvent},
    },
};

/// Keepalive events when the client asks for none (`Keepalive-Ping-Interval`, seconds): envd's
/// clients send 50.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(50);

pub struct ProcessService {
    daemon: Arc<Daemon>,
}

impl ProcessService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

fn find(hosted: &Hosted, selector: &ProcessSelector) -> Result<Arc<Process>, ConnectError> {
    match &selector.selector {
        Some(Selector::Pid(pid)) => hosted
            .processes
            .get(*pid)
            .ok_or_else(|| ConnectError::not_found(format!("process with pid {pid} not found"))),
        Some(Selector::Tag(tag)) => hosted
            .processes
            .by_tag(tag)
            .ok_or_else(|| ConnectError::not_found(format!("process with tag {tag:?} not found"))),
        None => Err(ConnectError::invalid_argument(
            "the process selector names no pid or tag",
        )),
    }
}

fn event(e: impl Into<Event>) -> ProcessEvent {
    ProcessEvent {
        event: Some(e.into()),
        ..Default::default()
    }
}

fn start_event(pid: u32) -> ProcessEvent {
    event(StartEvent {
        pid,
        ..Default::default()
    })
}

fn end_event(end: &ProcessEnd) -> ProcessEvent {
    event(EndEvent {
        exit_code: end.exit_code,
        exited: end.exited,
        status: end.status.clone(),
        error: end.error.clone(),
        ..Default::default()
    })
}

fn output_event(o: &Output) -> Option<ProcessEvent> {
    let output = match o {
        Output::Stdout(b) => DataOutput::Stdout(b.to_vec()),
        Output::Stderr(b) => DataOutput::Stderr(b.to_vec()),
        Output::End(end) => return Some(end_event(end)),
        Output::Lagged(n) => {
            tracing::debug!("an attached client missed {n} output events");
            return None;
        }
    };
    Some(event(DataEvent {
        output: Some(output),
        ..Default::default()
    }))
}

fn keepalive_every(ctx: &RequestContext) -> Duration {
    ctx.header("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_KEEPALIVE, Duration::from_secs)
}

/// Where a stream's events come from.
enum Source {
    /// The starting call's own queue (backpressure).
    Primary(mpsc::Receiver<Output>),
    /// An attacher's subscription (may lag).
    Attached(broadcast::Receiver<Output>),
}

impl Source {
    async fn next(&mut self) -> Option<Output> {
        match self {
            Source::Primary(rx) => rx.recv().await,
            Source::Attached(rx) => match rx.recv().await {
                Ok(o) => Some(o),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Output::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// A command's events as a Connect stream: start first, then output with keepalives while idle,
/// then the end; the stream closes after the end (clients read until it does).
fn event_stream(
    pid: u32,
    source: Source,
    ended_already: Option<ProcessEnd>,
    keepalive: Duration,
) -> impl futures::Stream<Item = ProcessEvent> + Send + 'static {
    let head = futures::stream::once(async move { start_event(pid) });
    let tail = match ended_already {
        Some(end) => futures::stream::once(async move { end_event(&end) }).boxed(),
        None => futures::stream::unfold(Some(source), move |source| async move {
            let mut source = source?;
            loop {
                match tokio::time::timeout(keepalive, source.next()).await {
                    Err(_) => return Some((event(KeepAlive::default()), Some(source))),
                    Ok(None) => return None,
                    Ok(Some(o)) => {
                        let last = matches!(o, Output::End(_));
                        if let Some(e) = output_event(&o) {
                            return Some((e, (!last).then_some(source)));
                        }
                    }
                }
            }
        })
        .boxed(),
    };
    head.chain(tail)
}

fn start_error(e: SandboxError) -> ConnectError {
    match e {
        SandboxError::Ended(_) => gone(),
        other => ConnectError::internal(format!("starting the command: {other}")),
    }
}

impl crate::proto::process::Process for ProcessService {
    async fn list<'a>(
        &'a self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, ListRequest>,
    ) -> ServiceResult<impl Encodable<ListResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let processes = hosted
            .processes
            .list()
            .into_iter()
            .filter(|p| p.ended().is_none())
            .map(|p| ProcessInfo {
                config: ProcessConfig {
                    cmd: p.spec.cmd.clone(),
                    args: p.spec.args.clone(),
                    envs: p.spec.envs.clone().into_iter().collect(),
                    cwd: p.spec.cwd.clone(),
                    ..Default::default()
                }
                .into(),
                pid: p.pid,
                tag: p.tag.clone(),
                ..Default::default()
            })
            .collect();
        Response::ok(ListResponse {
            processes,
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, ConnectRequest>,
    ) -> ServiceResult<ServiceStream<impl Encodable<ConnectResponse> + Send + use<>>> {
        let hosted = routed(&ctx)?;
        let req = request.to_owned_message();
        let process = find(&hosted, &req.process)?;
        let (rx, ended) = process.attach();
        let stream = event_stream(process.pid, Source::Attached(rx), ended, keepalive_every(&ctx))
            .map(|e| {
                Ok(ConnectResponse {
                    event: e.into(),
                    ..Default::default()
                })
            });
        Response::stream_ok(stream)
    }

    async fn start(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, StartRequest>,
    ) -> ServiceResult<ServiceStream<impl Encodable<StartResponse> + Send + use<>>> {
        let hosted = routed(&ctx)?;
        let req = request.to_owned_message();
        if req.pty.is_set() {
            return Err(ConnectError::unimplemented(
                "PTYs are not supported by sandwatch serve: run the command without one",
            ));
        }
        let config = &*req.process;
        if config.cmd.is_empty() {
            return Err(ConnectError::invalid_argument("process.cmd is empty"));
        }
        let spec = ProcessSpec {
            cmd: config.cmd.clone(),
            args: config.args.clone(),
            envs: config.envs.clone().into_iter().collect(),
            cwd: config.cwd.clone().filter(|c| !c.is_empty()),
        };
        // envd's order: the sandbox's create-time envVars, then the call's own.
        let mut env = hosted.env_vars.clone();
        env.extend(spec.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
        let request = CommandRequest {
            argv: spec.argv(),
            env,
            cwd: spec.cwd.clone().map(Into::into),
            timeout: None,
            stdin: req.stdin.unwrap_or(true),
        };
        if !self.daemon.claim_command(&hosted.owner) {
            return Err(ConnectError::resource_exhausted(format!(
                "this API key has {} commands running, its limit (--max-commands-per-key)",
                self.daemon.config.max_commands_per_key
            )));
        }
        let spawn_started = std::time::Instant::now();
        let spawned = hosted.sandbox.spawn(&request).await;
        tracing::debug!(
            sandbox = %hosted.id,
            "spawn took {:.3} ms",
            spawn_started.elapsed().as_secs_f64() * 1e3
        );
        let running = match spawned {
            Ok(Ok(r)) => r,
            Ok(Err((error, code))) => {
                self.daemon.release_command(&hosted.owner);
                return Err(if code == 127 {
                    ConnectError::not_found(error)
                } else {
                    ConnectError::permission_denied(error)
                });
            }
            Err(e) => {
                self.daemon.release_command(&hosted.owner);
                return Err(start_error(e));
            }
        };
        let limits = OutputLimits {
            bytes_per_stream: hosted
                .policy()
                .limits
                .output_bytes
                .map_or(u64::MAX, |b| b.0),
        };
        let daemon = self.daemon.clone();
        let owner = hosted.owner.clone();
        let (process, rx) = hosted.processes.adopt(
            running,
            spec,
            req.tag.clone(),
            limits,
            hosted.log.clone(),
            move |_| daemon.release_command(&owner),
        );
        // The call's deadline is the command's lifetime (envd's semantics), and so is the
        // policy's per-command limit.
        let policy_limit = hosted.policy().limits.timeout;
        let deadline = [
            ctx.deadline(),
            policy_limit.map(|t| std::time::Instant::now() + t),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(deadline) = deadline {
            let weak = Arc::downgrade(&hosted);
            let p = process.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                if p.ended().is_none()
                    && let Some(h) = weak.upgrade()
                {
                    let _ = h.sandbox.signal_command(p.handle, libc::SIGKILL).await;
                }
            });
        }
        let stream = event_stream(process.pid, Source::Primary(rx), None, keepalive_every(&ctx))
            .map(|e| {
                Ok(StartResponse {
                    event: e.into(),
                    ..Default::default()
                })
            });
        Response::stream_ok(stream)
    }

    async fn update<'a>(
        &'a self,
        _ctx: RequestContext,
        _request: ServiceRequest<'_, UpdateRequest>,
    ) -> ServiceResult<impl Encodable<UpdateResponse> + Send + use<'a>> {
        Err::<Response<UpdateResponse>, _>(ConnectError::unimplemented(
            "PTYs are not supported by sandwatch serve",
        ))
    }

    async fn stream_input<'a>(
        &'a self,
        ctx: RequestContext,
        mut requests: InboundStream<StreamInputRequest>,
    ) -> ServiceResult<impl Encodable<StreamInputResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let mut process: Option<Arc<Process>> = None;
        while let Some(msg) = requests.next().await {
            let msg = msg?.to_owned_message();
            match msg.event {
                Some(InputEvent::Start(start)) => {
                    process = Some(find(&hosted, &start.process)?);
                }
                Some(InputEvent::Data(data)) => {
                    let p = process.as_ref().ok_or_else(|| {
                        ConnectError::failed_precondition(
                            "input before the start event naming the process",
                        )
                    })?;
                    write_input(p, &data.input.input).await?;
                }
                Some(InputEvent::Keepalive(_)) | None => {}
            }
        }
        Response::ok(StreamInputResponse::default())
    }

    async fn send_input<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, SendInputRequest>,
    ) -> ServiceResult<impl Encodable<SendInputResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let req = request.to_owned_message();
        let process = find(&hosted, &req.process)?;
        write_input(&process, &req.input.input).await?;
        Response::ok(SendInputResponse::default())
    }

    async fn send_signal<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, SendSignalRequest>,
    ) -> ServiceResult<impl Encodable<SendSignalResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let req = request.to_owned_message();
        let process = find(&hosted, &req.process)?;
        let signal = match req.signal.as_known() {
            Some(Signal::SIGNAL_SIGKILL) => libc::SIGKILL,
            Some(Signal::SIGNAL_SIGTERM) => libc::SIGTERM,
            _ => {
                return Err(ConnectError::invalid_argument(
                    "signal: SIGNAL_SIGTERM or SIGNAL_SIGKILL",
                ));
            }
        };
        hosted
            .sandbox
            .signal_command(process.handle, signal)
            .await
            .map_err(start_error)?;
        Response::ok(SendSignalResponse::default())
    }

    async fn close_stdin<'a>(
        &'a self,
        ctx: RequestContext,
        request: ServiceRequest<'_, CloseStdinRequest>,
    ) -> ServiceResult<impl Encodable<CloseStdinResponse> + Send + use<'a>> {
        let hosted = routed(&ctx)?;
        let req = request.to_owned_message();
        let process = find(&hosted, &req.process)?;
        process.close_stdin().await;
        Response::ok(CloseStdinResponse::default())
    }
}

async fn write_input(process: &Process, input: &Option<Input>) -> Result<(), ConnectError> {
    let data = match input {
        Some(Input::Stdin(d)) => d,
        Some(Input::Pty(_)) => {
            return Err(ConnectError::unimplemented(
                "PTYs are not supported by sandwatch serve",
            ));
        }
        None => return Ok(()),
    };
    process
        .write_stdin(data)
        .await
        .map_err(|e| ConnectError::failed_precondition(e.to_string()))
}
