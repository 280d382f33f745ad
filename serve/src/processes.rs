//! The commands of one hosted sandbox, as envd's `process.Process` service sees them: started,
//! streamed, fed with input, signalled, listed, attached to, and recorded.
//!
//! Each command has one pump task that owns its output pipes and its exit. The pump hands every
//! chunk to the stream of the call that started it (with backpressure: a slow client slows the
//! job, as a pipe would) and to any `Connect` attachers (without: an attacher that falls behind
//! loses chunks and is told so, the job never waits for it). When the starting client goes away
//! the command keeps running and its output is still drained, as in E2B's envd. The pump writes
//! the command's `started` and `exited` rows of the `sandboxes` table.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sandwatch_collector::{SandboxLog, command_line};
use sandwatch_runner::sandbox::{CommandExit, CommandHandle, CommandParts, RunningCommand};
use sandwatch_schema::SandboxLifecycle;
use tokio::{
    io::AsyncReadExt as _,
    net::unix::pipe,
    sync::{broadcast, mpsc, watch},
};

/// Bytes read from a command's pipe at a time, and so the largest data event (envd uses 32 KiB).
const CHUNK: usize = 32 * 1024;
/// How long the pump keeps reading after the command exited, for output still in the pipes; a
/// process the command left running in the background may hold them open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(50);

/// What a command was started with, as `process.List` reports it.
#[derive(Clone, Debug, Default)]
pub struct ProcessSpec {
    pub cmd: String,
    pub args: Vec<String>,
    pub envs: BTreeMap<String, String>,
    pub cwd: Option<String>,
}

impl ProcessSpec {
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.cmd.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// How a command ended, in envd's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessEnd {
    /// The exit code, or -1 when a signal ended it.
    pub exit_code: i32,
    /// Whether it exited by itself (false: a signal).
    pub exited: bool,
    /// Go's `ProcessState` wording, as envd sends it: `exit status 1`, `signal: killed`.
    pub status: String,
    /// Set for anything but a clean exit.
    pub error: Option<String>,
}

impl ProcessEnd {
    pub fn from_wait(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(c), _) => {
                let status = format!("exit status {c}");
                Self {
                    exit_code: c,
                    exited: true,
                    error: (c != 0).then(|| status.clone()),
                    status,
                }
            }
            (None, Some(s)) => {
                let status = format!("signal: {}", signal_words(s));
                Self {
                    exit_code: -1,
                    exited: false,
                    error: Some(status.clone()),
                    status,
                }
            }
            (None, None) => Self {
                exit_code: -1,
                exited: false,
                status: "signal: killed".into(),
                error: Some("the sandbox ended under the command".into()),
            },
        }
    }

    /// The process could not be started (not found, not executable).
    pub fn start_failed(error: &str, code: i32) -> Self {
        Self {
            exit_code: code,
            exited: true,
            status: format!("exit status {code}"),
            error: Some(error.to_owned()),
        }
    }
}

/// A signal as Go's `syscall.Signal.String()` words it (what envd's status strings carry).
pub fn signal_words(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string, copied at once.
    let text = unsafe {
        let p = libc::strsignal(signal);
        if p.is_null() {
            return format!("signal {signal}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("signal {signal}"),
    }
}

/// One thing a command did that a client is told.
#[derive(Clone, Debug)]
pub enum Output {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
    /// An attacher fell behind and missed this many events.
    Lagged(u64),
    End(ProcessEnd),
}

/// A running command of a hosted sandbox.
pub struct Process {
    pub pid: u32,
    pub tag: Option<String>,
    pub spec: ProcessSpec,
    pub handle: CommandHandle,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    attach: broadcast::Sender<Output>,
    end: watch::Receiver<Option<ProcessEnd>>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("process {0} was not started with stdin, or its stdin is closed")]
    Closed(u32),
    #[error("process {0} no longer reads its stdin: {1}")]
    Gone(u32, #[source] std::io::Error),
}

impl Process {
    /// Writes to the command's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), InputError> {
        use tokio::io::AsyncWriteExt as _;
        let mut guard = self.stdin.lock().await;
        let pipe = guard.as_mut().ok_or(InputError::Closed(self.pid))?;
        pipe.write_all(data)
            .await
            .map_err(|e| InputError::Gone(self.pid, e))
    }

    /// Closes the command's stdin: it reads end-of-file.
    pub async fn close_stdin(&self) -> bool {
        self.stdin.lock().await.take().is_some()
    }

    /// Events from now on, for `process.Connect`.
    pub fn attach(&self) -> (broadcast::Receiver<Output>, Option<ProcessEnd>) {
        (self.attach.subscribe(), self.end.borrow().clone())
    }

    pub fn ended(&self) -> Option<ProcessEnd> {
        self.end.borrow().clone()
    }
}

/// The commands of one sandbox, by pid (the pid inside the sandbox, as envd reports it).
#[derive(Default)]
pub struct ProcessTable {
    running: Mutex<HashMap<u32, Arc<Process>>>,
}

impl ProcessTable {
    pub fn get(&self, pid: u32) -> Option<Arc<Process>> {
        self.lock().get(&pid).cloned()
    }

    pub fn by_tag(&self, tag: &str) -> Option<Arc<Process>> {
        self.lock()
            .values()
            .find(|p| p.tag.as_deref() == Some(tag))
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Process>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|p| p.pid);
        all
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Process>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a started command over: registers it, records its `started` row and starts its pump.
    /// Returns the process and the starting client's event stream (which ends after `End`).
    pub fn adopt(
        self: &Arc<Self>,
        running: RunningCommand,
        spec: ProcessSpec,
        tag: Option<String>,
        limits: OutputLimits,
        log: SandboxLog,
        on_end: impl FnOnce(&ProcessEnd) + Send + 'static,
    ) -> (Arc<Process>, mpsc::Receiver<Output>) {
        let CommandParts {
            handle,
            stdin,
            stdout,
            stderr,
            exit,
        } = running.into_parts();
        let pid = handle.pid as u32;
        let (attach, _) = broadcast::channel(256);
        let (end_tx, end_rx) = watch::channel(None);
        let process = Arc::new(Process {
            pid,
            tag,
            handle,
            spec: spec.clone(),
            stdin: tokio::sync::Mutex::new(stdin),
            attach: attach.clone(),
            end: end_rx,
        });
        self.lock().insert(pid, process.clone());
        let command = command_line(&spec.argv());
        log.event(
            SandboxLifecycle::Started,
            Some(command.clone()),
            None,
            Some(format!("pid {pid} in the sandbox")),
        );
        let (primary_tx, primary_rx) = mpsc::channel(64);
        let table = self.clone();
        let pump = Pump {
            end_tx,
            primary: Some(primary_tx),
            attach,
            limits,
            out_bytes: 0,
            err_bytes: 0,
            truncated: false,
        };
        tokio::spawn(async move {
            let (end, stats) = pump.run(stdout, stderr, exit).await;
            let mut row = log.row(SandboxLifecycle::Exited);
            row.command = Some(command);
            row.exit_code = end.exited.then_some(end.exit_code);
            row.signal = stats.signal;
            if stats.truncated {
                row.detail = Some(format!(
                    "output cut at the policy's limits.output_bytes ({} stdout, {} stderr bytes written)",
                    stats.out_bytes, stats.err_bytes
                ));
            }
            log.record(row);
            table.lock().remove(&pid);
            on_end(&end);
        });
        (process, primary_rx)
    }
}

/// Bounds on what a command's output may cost.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimits {
    /// Bytes per stream forwarded to clients; the rest is read and dropped (the job never blocks).
    pub bytes_per_stream: u64,
}

struct PumpStats {
    out_bytes: u64,
    err_bytes: u64,
    truncated: bool,
    signal: Option<i32>,
}

struct Pump {
    /// Set before the end goes out: an attacher that subscribes after the broadcast sees it here.
    end_tx: watch::Sender<Option<ProcessEnd>>,
    primary: Option<mpsc::Sender<Output>>,
    attach: broadcast::Sender<Output>,
    limits: OutputLimits,
    out_bytes: u64,
    err_bytes: u64,
    truncated: bool,
}

impl Pump {
    async fn emit(&mut self, event: Output) {
        // Attachers first: no attacher waits for the starting client.
        let _ = self.attach.send(event.clone());
        if let Some(tx) = &self.primary
            && tx.send(event).await.is_err()
        {
            // The starting client went away; the command goes on.
            self.primary = None;
        }
    }

    async fn chunk(&mut self, stdout: bool, data: &[u8]) {
        let limit = self.limits.bytes_per_stream;
        let sent = if stdout {
            &mut self.out_bytes
        } else {
            &mut self.err_bytes
        };
        let room = limit.saturating_sub(*sent).min(data.len() as u64) as usize;
        *sent += data.len() as u64;
        if room < data.len() {
            self.truncated = true;
        }
        if room == 0 {
            return;
        }
        let bytes = bytes::Bytes::copy_from_slice(&data[..room]);
        self.emit(if stdout {
            Output::Stdout(bytes)
        } else {
            Output::Stderr(bytes)
        })
        .await;
    }

    async fn run(
        mut self,
        mut stdout: pipe::Receiver,
        mut stderr: pipe::Receiver,
        exit: CommandExit,
    ) -> (ProcessEnd, PumpStats) {
        let mut out_buf = vec![0u8; CHUNK];
        let mut err_buf = vec![0u8; CHUNK];
        let (mut out_open, mut err_open) = (true, true);
        tokio::pin!(exit);
        let mut status = None;
        let mut drain_until: Option<Instant> = None;
        while out_open || err_open {
            let deadline = async {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                n = stdout.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => { let d = out_buf[..n].to_vec(); self.chunk(true, &d).await }
                },
                n = stderr.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => { let d = err_buf[..n].to_vec(); self.chunk(false, &d).await }
                },
                s = &mut exit, if status.is_none() => {
                    status = Some(s);
                    drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
                () = deadline => break,
            }
        }
        let status = match status {
            Some(s) => s,
            None => exit.await,
        };
        if out_open || err_open {
            // Something the command left behind still holds the pipes: keep them drained so it
            // never blocks on a full pipe, but the command's stream ends now.
            tokio::spawn(async move {
                let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
                while out_open || err_open {
                    tokio::select! {
                        n = stdout.read(&mut a), if out_open => if matches!(n, Ok(0) | Err(_)) { out_open = false },
                        n = stderr.read(&mut b), if err_open => if matches!(n, Ok(0) | Err(_)) { err_open = false },
                    }
                }
            });
        }
        let (code, signal) = status.unwrap_or((None, None));
        let end = ProcessEnd::from_wait(code, signal);
        self.end_tx.send_replace(Some(end.clone()));
        self.emit(Output::End(end.clone())).await;
        let stats = PumpStats {
            out_bytes: self.out_bytes,
            err_bytes: self.err_bytes,
            truncated: self.truncated,
            signal,
        };
        (end, stats)
    }
}
