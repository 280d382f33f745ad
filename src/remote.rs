//! `sandwatch run` through a running daemon (`sandwatch serve`): the same job, output, stdin and
//! exit status as a run on its own, but under the daemon's probes, rules and audit log, so the
//! run costs a sandbox from its warm pool instead of loading the probes.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::anyhow;
use sandwatch_runner::{SandboxPolicy, policy::PRESETS};
use sandwatch_serve::client::{
    ClientError, CommandEvent, CreateRequest, DaemonClient, Endpoint, signal_of_status,
};
use tokio::{
    io::AsyncReadExt as _,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::cli::{Failure, runtime, usage};

/// The daemon's end of a run, from `--server`: `unix:PATH`, or the control plane's
/// `http://HOST:PORT` (envd then at the same host, `--server-envd` to say otherwise).
pub fn endpoint(server: &str, envd: Option<&str>) -> Result<Endpoint, Failure> {
    if let Some(path) = server.strip_prefix("unix:") {
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let api: http::Uri = server
        .parse()
        .map_err(|e| usage(anyhow!("--server {server:?}: not a URL ({e}); use unix:PATH or http://HOST:PORT")))?;
    let envd: http::Uri = match envd {
        Some(e) => e
            .parse()
            .map_err(|err| usage(anyhow!("--server-envd {e:?}: not a URL ({err})")))?,
        None => {
            let host = api.host().unwrap_or("127.0.0.1");
            format!("http://{host}:49983")
                .parse()
                .map_err(|e| usage(anyhow!("--server {server:?}: {e}")))?
        }
    };
    Ok(Endpoint::Tcp { api, envd })
}

/// Whether a daemon answers on `path` (its local socket).
pub fn daemon_at(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The API key for a TCP daemon: the first key of `--api-key-file`, else `E2B_API_KEY`.
pub fn api_key(file: Option<&Path>) -> Result<Option<String>, Failure> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| usage(anyhow!("--api-key-file {}: {e}", f.display())))?;
        let key = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find(|l| !l.is_empty())
            .ok_or_else(|| usage(anyhow!("--api-key-file {}: no key in it", f.display())))?;
        return Ok(Some(key.to_owned()));
    }
    Ok(std::env::var("E2B_API_KEY").ok().filter(|k| !k.is_empty()))
}

/// What the daemon makes the sandbox from: a preset or daemon template by name, or (a policy
/// file, or a `--timeout` to apply) the whole policy inline.
fn create_request(policy: &str, timeout: Option<Duration>) -> Result<CreateRequest, Failure> {
    let is_file = Path::new(policy).is_file();
    let name = if is_file {
        Path::new(policy)
            .file_stem()
            .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned())
    } else {
        policy.to_owned()
    };
    let inline = if is_file || (timeout.is_some() && PRESETS.contains(&policy)) {
        let mut p = SandboxPolicy::load(policy).map_err(usage)?;
        if let Some(t) = timeout {
            p.limits.timeout = Some(t);
        }
        Some(p.to_yaml())
    } else if timeout.is_some() {
        return Err(usage(anyhow!(
            "--timeout with the daemon's template {policy:?}: give a preset or a policy file, or no --timeout"
        )));
    } else {
        None
    };
    let command_limit = timeout.unwrap_or(Duration::from_secs(3600));
    Ok(CreateRequest {
        template_id: name,
        // The sandbox outlives its one command by a margin; the run kills it when done.
        timeout: Some(command_limit.as_secs() + 60),
        policy_yaml: inline,
        env: Vec::new(),
    })
}

/// Whether to forward our stdin: not when it is a terminal we do not own (a background job
/// reading it would be stopped by SIGTTIN).
pub fn forward_stdin() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read.
    unsafe { libc::isatty(0) == 0 || libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Runs `command` in a sandbox of the daemon at `endpoint`; returns the job's exit status.
pub async fn run(
    endpoint: Endpoint,
    key: Option<String>,
    policy: &str,
    timeout: Option<Duration>,
    command: Vec<String>,
) -> Result<u8, Failure> {
    let shown = endpoint.to_string();
    let client = DaemonClient::new(endpoint, key);
    let request = create_request(policy, timeout)?;
    let created = client.create(&request).await.map_err(|e| match e {
        ClientError::Refused { status, .. } if status < 500 => usage(e),
        other => runtime(other),
    })?;
    eprintln!(
        "sandwatch: running in sandbox {} of the daemon at {shown} (its probes, rules and audit log)",
        created.sandbox_id
    );
    let started = Instant::now();
    let (pid_tx, pid_rx) = watch::channel(None::<u32>);
    let stdin = forward_stdin();
    let feeder = stdin.then(|| {
        let client_ref = &client;
        let created = created.clone();
        let mut pid_rx = pid_rx.clone();
        async move {
            let Ok(pid) = pid_rx.wait_for(Option::is_some).await.map(|p| p.unwrap_or(0)) else {
                return;
            };
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if client_ref
                            .send_stdin(&created, pid, buf[..n].to_vec())
                            .await
                            .is_err()
                        {
                            // The command closed its stdin or ended.
                            return;
                        }
                    }
                }
            }
            let _ = client_ref.close_stdin(&created, pid).await;
        }
    });
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime)?;
    let (end_tx, mut end_rx) = mpsc::unbounded_channel();
    // The limit travels in the policy (`limits.timeout`): the daemon kills the command then and
    // says so with its end; a client-side deadline would cut the stream before that.
    let job = client.run(&created, &command, stdin, None, |ev| match ev {
        CommandEvent::Started { pid } => {
            let _ = pid_tx.send(Some(pid));
        }
        CommandEvent::Stdout(b) => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&b).and_then(|()| o.flush());
        }
        CommandEvent::Stderr(b) => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&b).and_then(|()| e.flush());
        }
        end @ CommandEvent::Ended { .. } => {
            let _ = end_tx.send(end);
        }
    });
    tokio::pin!(job);
    let feeder = async {
        match feeder {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(feeder);
    let mut interrupts = 0;
    let mut killed = false;
    let mut fed = false;
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            () = &mut feeder, if !fed => fed = true,
            _ = sigint.recv() => {
                interrupts += 1;
                let pid = *pid_rx.borrow();
                // First Ctrl-C: SIGTERM to the command (envd's API has no SIGINT); second: the
                // sandbox dies.
                if interrupts >= 2 || pid.is_none() {
                    killed = true;
                    let _ = client.kill(&created.sandbox_id).await;
                } else if let Some(pid) = pid {
                    let _ = client.signal(&created, pid, false).await;
                }
            }
            _ = sigterm.recv() => {
                killed = true;
                let _ = client.kill(&created.sandbox_id).await;
            }
        }
    };
    let elapsed = started.elapsed();
    let _ = client.kill(&created.sandbox_id).await;
    let program = &command[0];
    let id = &created.sandbox_id;
    let end = end_rx.try_recv().ok();
    let status = match (result, end) {
        (
            _,
            Some(CommandEvent::Ended {
                exit_code,
                exited: true,
                ..
            }),
        ) => {
            eprintln!(
                "sandwatch: {program} exited with status {exit_code} after {:.2} s (sandbox {id})",
                elapsed.as_secs_f64()
            );
            exit_code
        }
        (_, Some(CommandEvent::Ended { status, .. })) => {
            let signal = signal_of_status(&status).unwrap_or(libc::SIGKILL);
            let timed_out = timeout.is_some_and(|t| elapsed >= t) && signal == libc::SIGKILL;
            if timed_out {
                eprintln!(
                    "sandwatch: {program} was killed at its wall-clock limit (status 124) after {:.2} s (sandbox {id})",
                    elapsed.as_secs_f64()
                );
                124
            } else {
                let why = if killed { "was killed by order" } else { "exited" };
                eprintln!(
                    "sandwatch: {program} {why} with status {} ({status}) after {:.2} s (sandbox {id})",
                    128 + signal,
                    elapsed.as_secs_f64()
                );
                128 + signal
            }
        }
        (Err(ClientError::Rpc(e)), None) => {
            let code = match e.code {
                connectrpc::ErrorCode::NotFound => 127,
                connectrpc::ErrorCode::PermissionDenied => 126,
                _ => return Err(runtime(anyhow!("running {program} in sandbox {id}: {e}"))),
            };
            eprintln!("sandwatch: cannot run {program:?} in sandbox {id}: {}", e.message.as_deref().unwrap_or(""));
            code
        }
        (Err(e), None) => return Err(runtime(anyhow!("running {program} in sandbox {id}: {e}"))),
        (Ok(()), None) => {
            let why = if killed { "the sandbox was killed by order" } else { "the daemon ended the stream without an end" };
            eprintln!("sandwatch: {program}: {why} (status 137) (sandbox {id})");
            137
        }
        (_, Some(_)) => 1,
    };
    eprintln!("sandwatch: recorded in the daemon's audit log (sandbox {id})");
    Ok(status.clamp(0, 255) as u8)
}
