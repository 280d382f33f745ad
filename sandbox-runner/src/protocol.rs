//! The control channel between the runner and a sandbox's init: one `SOCK_SEQPACKET` socket,
//! one JSON message per packet, with a command's stdio (or a file operation's pipes) passed as
//! `SCM_RIGHTS`.
//!
//! Packets keep message boundaries and carry descriptors with the message they belong to, so
//! neither side needs framing or a second channel. The runner's end is async (tokio); init's
//! end is blocking, since init is single-threaded and waits on nothing else but its children.

use std::{
    io::{self, IoSlice, IoSliceMut},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
    path::PathBuf,
};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::policy::SandboxPolicy;

/// Largest message either side sends (a command line with its environment, a setup plan).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// What init must build before it reports ready.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetupPlan {
    pub policy: SandboxPolicy,
    /// Host directory the new root is assembled on (a private tmpfs is mounted over it).
    pub staging: PathBuf,
    /// Host directories behind the policy's named volumes (`workspace`, `cache`, ...). A volume
    /// without one is a private tmpfs.
    pub volumes: Vec<(String, PathBuf)>,
    /// Whether the sandbox has its own network namespace (bring loopback up).
    pub private_network: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    Setup(Box<SetupPlan>),
    /// Init is in every cgroup of the sandbox (sent after the plan: init builds the root
    /// meanwhile).
    Joined,
    /// Run a command; its stdin, stdout and stderr travel with this message.
    Exec {
        id: u64,
        argv: Vec<String>,
        /// The whole environment of the command (the policy's, with the request's on top).
        env: Vec<(String, String)>,
        cwd: PathBuf,
    },
    /// Signal a command's process group, or every command's.
    Signal {
        id: Option<u64>,
        signal: i32,
    },
    /// Perform a file operation in the sandbox (see `files`): init forks a confined child for
    /// it. The reply pipe's write end travels with this message, and for a write the content
    /// pipe's read end after it. Init sends nothing back on this socket: the answer, a failure
    /// to fork included, goes to the reply pipe.
    File {
        /// The runner's id for the operation (from the commands' sequence), for tracing.
        id: u64,
        op: crate::files::FileOp,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    Ready {
        /// Things that were weaker than asked (e.g. an old Landlock ABI), for the runner to log.
        warnings: Vec<String>,
        /// When init reached each step of its setup (CLOCK_MONOTONIC, ns), for profiling.
        #[serde(default)]
        marks: Vec<(String, u64)>,
    },
    SetupFailed {
        step: String,
        error: String,
    },
    Started {
        id: u64,
        /// The command's pid inside the sandbox.
        pid: i32,
    },
    ExecFailed {
        id: u64,
        error: String,
        /// 127 when the program was not found, 126 when it could not run (as a shell does).
        code: i32,
    },
    Exited {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Sends one message with optional descriptors. Blocking or not depends on the socket.
pub fn send<T: Serialize>(fd: RawFd, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "control message of {} bytes is larger than {MAX_MESSAGE} (a command line or environment that large is refused)",
                bytes.len()
            ),
        ));
    }
    let iov = [IoSlice::new(&bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 16;

/// Receives one message and the descriptors that came with it. `Ok(None)` at end of stream:
/// the other side is gone.
pub fn recv<T: for<'de> Deserialize<'de>>(
    fd: RawFd,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    buf.resize(MAX_MESSAGE, 0);
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            fd,
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            // The other side closed with a message of ours unread (init failing its setup
            // after `Joined` was sent): the kernel reports that once, ahead of what it had
            // sent before closing, which is the message that says why.
            Err(nix::errno::Errno::ECONNRESET) => continue,
            r => r?,
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in our table for us.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        break (msg.bytes, fds);
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len]).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad control message: {e}"),
        )
    })?;
    Ok(Some((msg, fds)))
}

/// A connected `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    for fd in [&a, &b] {
        let size = MAX_MESSAGE as libc::c_int + 4096;
        // SAFETY: setting an int socket option on a socket we own.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
    }
    Ok((a, b))
}
