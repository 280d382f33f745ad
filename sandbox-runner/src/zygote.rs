//! The zygote: a small single-threaded process, started once per runner and binary, that clones
//! every sandbox's init into its new namespaces.
//!
//! The runner is a multi-threaded tokio program: a child it forks may only make raw system calls
//! until it executes something, so an init made that way must execute a binary (about 1.5 ms of
//! loader and runtime start on the machines we measured, on every sandbox's critical path). The
//! zygote is the runner's binary executed once (see [`crate::init::run_if_init`]); it is
//! single-threaded, so its clones are ordinary processes that go straight on to be init, with no
//! exec. It holds nothing but its control socket; it exits when the runner's end closes.
//!
//! The clones are the zygote's children, not the runner's: it ignores SIGCHLD so the kernel reaps
//! them, and the runner follows each init through a pidfd opened while the init is still waiting
//! for its plan (so the pid cannot have been reused).

use std::{
    collections::HashMap,
    io,
    os::{
        fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
};

use serde::{Deserialize, Serialize};

use crate::{init, protocol};

/// The argument that makes the binary a zygote.
pub const ZYGOTE_ARG: &str = "__sandwatch_zygote";

/// The zygote's end of its socket.
const ZYGOTE_FD: RawFd = 3;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToZygote {
    /// Clone an init with these `CLONE_NEW*` flags; init's control socket travels with it.
    Clone { flags: i32 },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromZygote {
    Cloned { pid: i32 },
    Failed { errno: i32 },
}

/// The zygote's loop: clone an init per request, until the runner goes away.
pub(crate) fn main() -> i32 {
    // SAFETY: a fresh single-threaded process setting up its own descriptors and signals.
    unsafe {
        libc::syscall(libc::SYS_close_range, ZYGOTE_FD + 1, u32::MAX, 0);
        // Inits are reaped by the kernel; the runner watches them through pidfds.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    let mut buf = Vec::new();
    loop {
        let (flags, control) = match protocol::recv::<ToZygote>(ZYGOTE_FD, &mut buf) {
            Ok(Some((ToZygote::Clone { flags }, mut fds))) if fds.len() == 1 => {
                (flags, fds.remove(0))
            }
            Ok(Some(_)) => {
                let _ = protocol::send(
                    ZYGOTE_FD,
                    &FromZygote::Failed {
                        errno: libc::EINVAL,
                    },
                    &[],
                );
                continue;
            }
            _ => return 0,
        };
        // SAFETY: a fork-like clone (no CLONE_VM) of this single-threaded process.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            // The new init. Its control socket becomes fd 3 (replacing our socket's copy), and
            // SIGCHLD goes back to default: init waits for its commands.
            // SAFETY: descriptor and signal set-up of this fresh process.
            unsafe {
                if libc::dup2(control.as_raw_fd(), init::CONTROL_FD) < 0 {
                    libc::_exit(1);
                }
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            }
            std::mem::forget(control);
            std::process::exit(init::main_in_namespaces());
        }
        drop(control);
        let reply = if pid < 0 {
            FromZygote::Failed {
                errno: io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            }
        } else {
            FromZygote::Cloned { pid: pid as i32 }
        };
        if protocol::send(ZYGOTE_FD, &reply, &[]).is_err() {
            return 0;
        }
    }
}

/// The runner's handle on a zygote.
pub(crate) struct Zygote {
    socket: Mutex<OwnedFd>,
    child: Mutex<Child>,
}

impl Zygote {
    fn start(exe: &Path) -> io::Result<Self> {
        let (ours, theirs) = protocol::socket_pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(exe);
        // The inits it clones show this command line in the sandbox's /proc.
        cmd.arg0("sandwatch-init")
            .arg(ZYGOTE_ARG)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: dup2 between fork and exec, async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(theirs_fd, ZYGOTE_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(Self {
            socket: Mutex::new(ours),
            child: Mutex::new(child),
        })
    }

    fn alive(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.try_wait(), Ok(None))
    }

    /// Clones an init into new namespaces (`flags`), handing it `control`. Returns its host pid
    /// and a pidfd on it, opened while the init waits for its plan.
    pub(crate) fn clone_init(&self, flags: i32, control: &OwnedFd) -> io::Result<(i32, OwnedFd)> {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        protocol::send(
            socket.as_raw_fd(),
            &ToZygote::Clone { flags },
            &[control.as_raw_fd()],
        )?;
        let mut buf = Vec::new();
        match protocol::recv::<FromZygote>(socket.as_raw_fd(), &mut buf)? {
            Some((FromZygote::Cloned { pid }, _)) => {
                // SAFETY: pidfd_open returns a new descriptor we own, or -1.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                if fd < 0 {
                    let e = io::Error::last_os_error();
                    // SAFETY: the init we just made, which waits for a plan that will not come.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return Err(e);
                }
                // SAFETY: a fresh descriptor from the kernel.
                Ok((pid, unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
            }
            Some((FromZygote::Failed { errno }, _)) => Err(io::Error::from_raw_os_error(errno)),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the zygote exited",
            )),
        }
    }
}

/// The zygote for `exe`, started on first use (and again if it died).
pub(crate) fn for_binary(exe: &Path) -> io::Result<Arc<Zygote>> {
    static ZYGOTES: OnceLock<Mutex<HashMap<PathBuf, Arc<Zygote>>>> = OnceLock::new();
    let mut map = ZYGOTES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(z) = map.get(exe)
        && z.alive()
    {
        return Ok(z.clone());
    }
    let z = Arc::new(Zygote::start(exe)?);
    map.insert(exe.to_owned(), z.clone());
    Ok(z)
}
