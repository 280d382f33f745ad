//! File operations inside a sandbox, for an E2B-style filesystem API: stat, list, make
//! directories, rename, remove, read and write whole files (streamed), watch directories.
//!
//! They act on the sandbox's view, with the sandbox's identity and confinement. The runner is
//! root on the host, so it never opens a sandbox's files itself: a symlink a job planted in its
//! workspace would point such a read anywhere on the host. Instead init forks a child per
//! operation that confines itself as a command does (limits, no_new_privs, the policy's user,
//! seccomp; Landlock is init's own) but, instead of executing anything, performs the operation
//! in the sandbox's mount namespace (`init_files`) and answers on a pipe the runner passed with
//! the request (`ToInit::File`). A frozen sandbox's operations wait; an ended one's fail with
//! [`FileError::Ended`].
//!
//! This module owns the public types, the runner's side of each operation (the [`Sandbox`]
//! methods below) and the reply framing both sides speak.
//!
//! **Framing.** The child writes frames on the reply pipe: a tag byte (`M`: a JSON [`Reply`];
//! `D`: raw bytes of a file being read), a little-endian u32 length, then the payload. A read is
//! `M(Entry)`, data frames, then `M(Done)` (or `M(Error)` when it failed midway); a write is
//! `M(Opened)` once the file is open, then `M(Entry)` after end of file on the content pipe; a
//! watch is `M(Watching)`, then `M(Event)`s. A pipe that ends without its last frame means the
//! child died: the sandbox ended, or something inside it killed the child.

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Component, Path},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf, unix::AsyncFd},
    net::unix::pipe,
};

use crate::sandbox::Sandbox;

/// What an entry is. Devices, FIFOs and sockets are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One file, directory or link as the sandbox sees it (E2B's `EntryInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The last component of `path` (`/` for the root).
    pub name: String,
    /// Absolute, as the sandbox sees it.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits, setuid, setgid and sticky included (`st_mode & 0o7777`).
    pub mode: u32,
    /// As `ls -l` shows them: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`.
    pub permissions: String,
    /// The owner's name in the sandbox's `/etc/passwd`, else the numeric uid (as the sandbox
    /// sees it: an id outside its range is 65534).
    pub owner: String,
    /// The group's name in the sandbox's `/etc/group`, else the numeric gid.
    pub group: String,
    #[serde(with = "unix_time")]
    pub modified: SystemTime,
    /// A symlink's target, as written in the link.
    pub symlink_target: Option<String>,
}

/// What happened to an entry of a watched directory (E2B's `EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FsEventKind {
    /// Created, or moved in.
    Create,
    /// Its content changed.
    Write,
    Remove,
    /// Moved away (its new name, if still inside, comes as a `Create`).
    Rename,
    /// Permissions, owner or times changed.
    Chmod,
}

/// One change in a watched directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEvent {
    /// Path relative to the watched directory (`sub/file.txt` in a recursive watch).
    pub name: String,
    pub kind: FsEventKind,
}

/// Why a file operation failed. The kinds keep the errno the sandbox met; `path` is the one
/// the operation was about, as the sandbox sees it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// EACCES, EPERM (Landlock, ownership) or EROFS (a read-only mount).
    #[error("{path}: {message}")]
    PermissionDenied {
        path: String,
        errno: i32,
        message: String,
    },
    #[error("{path}: already exists")]
    AlreadyExists { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: is a directory")]
    IsADirectory { path: String },
    /// A path that cannot be used (not UTF-8, a NUL byte, too long), or an entry of a kind the
    /// operation refuses (reading a FIFO).
    #[error("{path}: {message}")]
    InvalidInput { path: String, message: String },
    #[error("{path}: {message}")]
    Other {
        path: String,
        errno: i32,
        message: String,
    },
    #[error("sandbox {0} has ended (killed, or its init died)")]
    Ended(String),
    /// The operation's process died without answering while the sandbox lives on: something
    /// in the sandbox killed it, or the OOM killer did.
    #[error("{path}: the sandbox's file process was killed before it finished")]
    Killed { path: String },
    /// The runner's side failed (pipes, a garbled reply).
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// The error for `errno` met on `path`; `message` says what was being done.
    pub(crate) fn from_errno(errno: i32, path: String, message: String) -> Self {
        match errno {
            libc::ENOENT => FileError::NotFound { path },
            libc::EACCES | libc::EPERM | libc::EROFS => FileError::PermissionDenied {
                path,
                errno,
                message,
            },
            libc::EEXIST => FileError::AlreadyExists { path },
            libc::ENOTDIR => FileError::NotADirectory { path },
            libc::EISDIR => FileError::IsADirectory { path },
            libc::EINVAL | libc::ENAMETOOLONG => FileError::InvalidInput { path, message },
            _ => FileError::Other {
                path,
                errno,
                message,
            },
        }
    }

    /// The errno behind the error, when the sandbox's kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FileError::NotFound { .. } => Some(libc::ENOENT),
            FileError::PermissionDenied { errno, .. } | FileError::Other { errno, .. } => {
                Some(*errno)
            }
            FileError::AlreadyExists { .. } => Some(libc::EEXIST),
            FileError::NotADirectory { .. } => Some(libc::ENOTDIR),
            FileError::IsADirectory { .. } => Some(libc::EISDIR),
            FileError::InvalidInput { .. } => Some(libc::EINVAL),
            FileError::Io { source, .. } => source.raw_os_error(),
            FileError::Ended(_) | FileError::Killed { .. } => None,
        }
    }

    /// The closest `std::io::ErrorKind`.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            FileError::NotFound { .. } => io::ErrorKind::NotFound,
            FileError::PermissionDenied { errno, .. } if *errno == libc::EROFS => {
                io::ErrorKind::ReadOnlyFilesystem
            }
            FileError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            FileError::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            FileError::NotADirectory { .. } => io::ErrorKind::NotADirectory,
            FileError::IsADirectory { .. } => io::ErrorKind::IsADirectory,
            FileError::InvalidInput { .. } => io::ErrorKind::InvalidInput,
            FileError::Other { errno, .. } => io::Error::from_raw_os_error(*errno).kind(),
            FileError::Ended(_) | FileError::Killed { .. } => io::ErrorKind::BrokenPipe,
            FileError::Io { source, .. } => source.kind(),
        }
    }

    fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let action = action.into();
        move |source| FileError::Io { action, source }
    }
}

/// An `io::Error` of the same kind carrying the `FileError` (`get_ref()` + `downcast_ref`).
impl From<FileError> for io::Error {
    fn from(e: FileError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

// ---------------------------------------------------------------------------------------------
// The wire: requests (in the control message) and reply frames (on the reply pipe).

/// One operation, paths absolute and as the sandbox sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FileOp {
    Stat {
        path: String,
    },
    ListDir {
        path: String,
        depth: u32,
    },
    MakeDir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    Read {
        path: String,
    },
    /// The content arrives on a second descriptor, up to its end of file.
    Write {
        path: String,
    },
    Watch {
        path: String,
        recursive: bool,
    },
}

impl FileOp {
    /// The path errors about the operation name.
    pub(crate) fn path(&self) -> &str {
        match self {
            FileOp::Stat { path }
            | FileOp::ListDir { path, .. }
            | FileOp::MakeDir { path }
            | FileOp::Remove { path }
            | FileOp::Read { path }
            | FileOp::Write { path }
            | FileOp::Watch { path, .. } => path,
            FileOp::Rename { from, .. } => from,
        }
    }
}

/// A failure in the sandbox, with its errno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub errno: i32,
    pub path: String,
    /// What was being done and the system's words for the errno.
    pub message: String,
}

impl WireError {
    pub(crate) fn new(errno: i32, path: impl Into<String>, doing: &str) -> Self {
        Self {
            errno,
            path: path.into(),
            message: format!("{doing}: {}", io::Error::from_raw_os_error(errno)),
        }
    }

    fn into_error(self) -> FileError {
        FileError::from_errno(self.errno, self.path, self.message)
    }
}

/// One message of the child's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    Entry(EntryInfo),
    Entries(Vec<EntryInfo>),
    /// A write's file is open: the runner may send the content.
    Opened,
    Watching,
    Event(FsEvent),
    /// The end of a read's data, of a removal, or of a watch whose directory went away.
    Done,
    Error(WireError),
}

pub(crate) const TAG_MESSAGE: u8 = b'M';
pub(crate) const TAG_DATA: u8 = b'D';
pub(crate) const HEADER_LEN: usize = 5;
/// Largest message frame accepted (a deep listing's JSON).
pub(crate) const MAX_MESSAGE_FRAME: usize = 64 << 20;
/// Largest data frame accepted; the child sends smaller ones (see `init_files`).
pub(crate) const MAX_DATA_FRAME: usize = 1 << 20;

pub(crate) fn frame_header(tag: u8, len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_le_bytes();
    [tag, l[0], l[1], l[2], l[3]]
}

/// The tag and payload length of a frame header, checked.
pub(crate) fn parse_header(h: [u8; HEADER_LEN]) -> io::Result<(u8, usize)> {
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    let max = match h[0] {
        TAG_MESSAGE => MAX_MESSAGE_FRAME,
        TAG_DATA => MAX_DATA_FRAME,
        t => return Err(protocol_error(format!("unknown frame tag {t:#04x}"))),
    };
    if len > max {
        return Err(protocol_error(format!(
            "a frame of {len} bytes (at most {max})"
        )));
    }
    Ok((h[0], len))
}

/// A message frame, header and JSON.
pub(crate) fn encode_message(reply: &Reply) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(reply).map_err(io::Error::other)?;
    if json.len() > MAX_MESSAGE_FRAME {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + json.len());
    frame.extend_from_slice(&frame_header(TAG_MESSAGE, json.len()));
    frame.extend_from_slice(&json);
    Ok(frame)
}

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad reply from the sandbox: {}", what.into()),
    )
}

/// `ls -l`'s ten characters for an `st_mode`: the type, then rwx for user, group and others
/// with setuid/setgid (`s`/`S`) and sticky (`t`/`T`) in the execute slots.
pub fn permissions_string(st_mode: u32) -> String {
    let kind = match st_mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let special = [
        (libc::S_ISUID, 's', 'S'),
        (libc::S_ISGID, 's', 'S'),
        (libc::S_ISVTX, 't', 'T'),
    ];
    for (i, (bit, with_x, without_x)) in special.into_iter().enumerate() {
        let shift = 6 - 3 * i;
        let rwx = (st_mode >> shift) & 0o7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let x = rwx & 1 != 0;
        s.push(match (st_mode & bit != 0, x) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// A time from `stat`'s seconds and nanoseconds (seconds may be negative: before 1970).
pub(crate) fn system_time(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

/// Seconds (floor) and nanoseconds of a time, as `stat` gives them.
fn time_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = -(d.as_secs() as i64);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// `SystemTime` as `[seconds, nanoseconds]` (serde's own refuses times before 1970).
mod unix_time {
    use serde::{Deserialize as _, Deserializer, Serialize as _, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        super::time_parts(*t).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let (secs, nanos) = <(i64, u32)>::deserialize(d)?;
        Ok(super::system_time(secs, nanos))
    }
}

/// An absolute sandbox path, cleaned lexically as E2B's envd does (`.` and `..` resolved
/// without looking at the tree, repeated slashes dropped); a relative one starts at `base`.
pub(crate) fn sandbox_path(base: &Path, path: &Path) -> Result<String, FileError> {
    let lossy = || path.to_string_lossy().into_owned();
    let Some(raw) = path.to_str() else {
        return Err(FileError::InvalidInput {
            path: lossy(),
            message: "the path is not UTF-8".into(),
        });
    };
    if raw.is_empty() || raw.contains('\0') {
        return Err(FileError::InvalidInput {
            path: lossy(),
            message: "an empty path, or a NUL byte in it".into(),
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    let joined = base.join(path);
    for c in joined.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

// ---------------------------------------------------------------------------------------------
// The runner's side.

/// Tells "the sandbox ended" from "the child was killed inside a live sandbox" once a reply
/// pipe ends early: a child dies with its sandbox a moment before init's own exit completes
/// (init, the pid namespace's reaper, exits last), so init is given a second to be seen gone.
#[derive(Clone)]
pub(crate) struct EndProbe {
    pub(crate) id: String,
    pub(crate) init: Arc<AsyncFd<OwnedFd>>,
}

const END_GRACE: Duration = Duration::from_secs(1);

/// Where a reply frame is being read.
enum FrameState {
    Header {
        buf: [u8; HEADER_LEN],
        filled: usize,
    },
    Data {
        left: usize,
    },
    Message {
        buf: Vec<u8>,
        filled: usize,
    },
}

/// What one step of reading the reply pipe gave.
enum Step {
    /// Bytes of a data frame were put in the caller's buffer (none if it had no room).
    Data,
    Message(Reply),
    /// End of the pipe between frames.
    Eof,
}

/// The runner's end of a reply pipe, decoding frames as they come (data frames go straight
/// into the caller's buffer: a big read is never held in memory).
pub(crate) struct ReplyReader {
    rx: pipe::Receiver,
    state: FrameState,
    /// The operation's path, for errors.
    path: String,
    probe: EndProbe,
    /// Running once the pipe ended early: how long init is given to be seen gone.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReplyReader {
    pub(crate) fn new(rx: pipe::Receiver, path: String, probe: EndProbe) -> Self {
        Self {
            rx,
            state: FrameState::Header {
                buf: [0; HEADER_LEN],
                filled: 0,
            },
            path,
            probe,
            grace: None,
        }
    }

    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        mut out: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Step>> {
        let early_eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
        loop {
            match &mut self.state {
                FrameState::Header { buf, filled } => {
                    let mut rb = ReadBuf::new(&mut buf[*filled..]);
                    ready!(Pin::new(&mut self.rx).poll_read(cx, &mut rb))?;
                    let n = rb.filled().len();
                    if n == 0 {
                        return Poll::Ready(if *filled == 0 {
                            Ok(Step::Eof)
                        } else {
                            Err(early_eof())
                        });
                    }
                    *filled += n;
                    if *filled == HEADER_LEN {
                        let (tag, len) = parse_header(*buf)?;
                        self.state = if tag == TAG_DATA {
                            FrameState::Data { left: len }
                        } else {
                            FrameState::Message {
                                buf: vec![0; len],
                                filled: 0,
                            }
                        };
                    }
                }
                FrameState::Data { left } => {
                    if *left == 0 {
                        self.state = FrameState::Header {
                            buf: [0; HEADER_LEN],
                            filled: 0,
                        };
                        continue;
                    }
                    let Some(out) = out.as_deref_mut() else {
                        return Poll::Ready(Err(protocol_error("file data where none belongs")));
                    };
                    if out.remaining() == 0 {
                        return Poll::Ready(Ok(Step::Data));
                    }
                    let want = (*left).min(out.remaining());
                    let n = {
                        let mut rb = ReadBuf::new(out.initialize_unfilled_to(want));
                        ready!(Pin::new(&mut self.rx).poll_read(cx, &mut rb))?;
                        rb.filled().len()
                    };
                    if n == 0 {
                        return Poll::Ready(Err(early_eof()));
                    }
                    out.advance(n);
                    *left -= n;
                    return Poll::Ready(Ok(Step::Data));
                }
                FrameState::Message { buf, filled } => {
                    if *filled < buf.len() {
                        let mut rb = ReadBuf::new(&mut buf[*filled..]);
                        ready!(Pin::new(&mut self.rx).poll_read(cx, &mut rb))?;
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Err(early_eof()));
                        }
                        *filled += n;
                        continue;
                    }
                    let reply = serde_json::from_slice(buf)
                        .map_err(|e| protocol_error(format!("a message: {e}")))?;
                    self.state = FrameState::Header {
                        buf: [0; HEADER_LEN],
                        filled: 0,
                    };
                    return Poll::Ready(Ok(Step::Message(reply)));
                }
            }
        }
    }

    /// Why the pipe ended early: the sandbox ended, or the child was killed inside it.
    fn poll_early_end(&mut self, cx: &mut Context<'_>) -> Poll<FileError> {
        if self.probe.init.poll_read_ready(cx).is_ready() {
            return Poll::Ready(FileError::Ended(self.probe.id.clone()));
        }
        let grace = self
            .grace
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(END_GRACE)));
        ready!(grace.as_mut().poll(cx));
        Poll::Ready(if self.probe.init.poll_read_ready(cx).is_ready() {
            FileError::Ended(self.probe.id.clone())
        } else {
            FileError::Killed {
                path: self.path.clone(),
            }
        })
    }

    /// The next message; the child's own error as `Err`.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Result<Reply, FileError>> {
        if self.grace.is_some() {
            return self.poll_early_end(cx).map(Err);
        }
        match ready!(self.poll_step(cx, None)) {
            Ok(Step::Message(Reply::Error(e))) => Poll::Ready(Err(e.into_error())),
            Ok(Step::Message(reply)) => Poll::Ready(Ok(reply)),
            Ok(Step::Eof) => self.poll_early_end(cx).map(Err),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.poll_early_end(cx).map(Err),
            // Not returned without a buffer to read into; kept total rather than panicking.
            Ok(Step::Data) => Poll::Ready(Err(FileError::Io {
                action: format!("read the sandbox's answer about {}", self.path),
                source: protocol_error("file data where none belongs"),
            })),
            Err(e) => Poll::Ready(Err(FileError::Io {
                action: format!("read the sandbox's answer about {}", self.path),
                source: e,
            })),
        }
    }

    pub(crate) async fn reply(&mut self) -> Result<Reply, FileError> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }

    fn unexpected(&self, reply: &Reply) -> FileError {
        FileError::Io {
            action: format!("read the sandbox's answer about {}", self.path),
            source: protocol_error(format!("unexpected {reply:?}")),
        }
    }
}

/// A pipe of 1 MiB instead of 64 KiB: a streamed file moves in fewer, larger steps. Best effort
/// (the default size works, only slower).
pub(crate) fn grow_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: an fcntl on a pipe descriptor the caller owns.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) };
}

/// A file being read from a sandbox: its bytes as they come from the sandbox's child, ending
/// at the file's end. A failure midway (an I/O error in the sandbox, the sandbox ending) is an
/// `io::Error` carrying the [`FileError`].
pub struct FileReader {
    reply: ReplyReader,
    done: bool,
}

impl AsyncRead for FileReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if this.reply.grace.is_some() {
            let e = ready!(this.reply.poll_early_end(cx));
            this.done = true;
            return Poll::Ready(Err(e.into()));
        }
        let step = ready!(this.reply.poll_step(cx, Some(buf)));
        match step {
            Ok(Step::Data) => Poll::Ready(Ok(())),
            Ok(Step::Message(Reply::Done)) => {
                this.done = true;
                Poll::Ready(Ok(()))
            }
            Ok(Step::Message(Reply::Error(e))) => {
                this.done = true;
                Poll::Ready(Err(e.into_error().into()))
            }
            Ok(Step::Message(other)) => {
                this.done = true;
                Poll::Ready(Err(this.reply.unexpected(&other).into()))
            }
            Ok(Step::Eof) => {
                let e = ready!(this.reply.poll_early_end(cx));
                this.done = true;
                Poll::Ready(Err(e.into()))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let e = ready!(this.reply.poll_early_end(cx));
                this.done = true;
                Poll::Ready(Err(e.into()))
            }
            Err(e) => {
                this.done = true;
                Poll::Ready(Err(e))
            }
        }
    }
}

/// A file being written into a sandbox: write its content, then [`FileWriter::finish`]. The
/// file was opened (created, truncated) before this was returned; a write that fails with
/// `BrokenPipe` means the sandbox's side gave up: `finish` says why.
///
/// Dropped without `finish`, the content so far is what the file holds (the sandbox's side
/// sees an end of file either way).
pub struct FileWriter {
    sender: pipe::Sender,
    result: WriteResult,
}

/// The answer to a write, once its content pipe has been closed.
pub struct WriteResult {
    reply: ReplyReader,
}

impl FileWriter {
    /// Ends the content (end of file for the sandbox's side) and waits for the file's final
    /// state.
    pub async fn finish(self) -> Result<EntryInfo, FileError> {
        let (sender, result) = self.into_parts();
        drop(sender);
        result.wait().await
    }

    /// The content pipe and the answer apart, for callers that hand the pipe elsewhere. Drop
    /// the sender (end of file) before awaiting the answer, or both wait forever.
    pub fn into_parts(self) -> (pipe::Sender, WriteResult) {
        (self.sender, self.result)
    }
}

impl WriteResult {
    /// The written file as the sandbox sees it, once the content's end of file reached it.
    pub async fn wait(mut self) -> Result<EntryInfo, FileError> {
        match self.reply.reply().await? {
            Reply::Entry(e) => Ok(e),
            other => Err(self.reply.unexpected(&other)),
        }
    }
}

impl AsyncWrite for FileWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().sender).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sender).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sender).poll_shutdown(cx)
    }
}

/// Changes in a watched directory as they happen. Dropping it ends the watch: the sandbox's
/// watcher process sees its reply pipe close and exits.
pub struct WatchStream {
    reply: ReplyReader,
    done: bool,
}

impl WatchStream {
    /// The next change; `None` once the watch is over (the directory itself went away, or an
    /// error was returned).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<FsEvent, FileError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let reply = ready!(self.reply.poll_reply(cx));
        Poll::Ready(match reply {
            Ok(Reply::Event(e)) => Some(Ok(e)),
            Ok(Reply::Done) => {
                self.done = true;
                None
            }
            Ok(other) => {
                self.done = true;
                Some(Err(self.reply.unexpected(&other)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        })
    }

    /// As [`WatchStream::poll_next`], awaited.
    pub async fn next(&mut self) -> Option<Result<FsEvent, FileError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// File operations, each run by a child of the sandbox's init in the sandbox's view (see the
/// module's documentation). Relative paths start at the policy's workspace mount point (the
/// default working directory of commands).
impl Sandbox {
    /// An absolute, cleaned sandbox path for `path`.
    fn file_path(&self, path: &Path) -> Result<String, FileError> {
        let base = self
            .policy()
            .filesystem
            .volume_mounts
            .get("workspace")
            .map_or(Path::new("/"), |p| p.as_path());
        sandbox_path(base, path)
    }

    /// Starts `op` and reads the first message of its answer.
    async fn file_request(
        &self,
        op: FileOp,
        content: Option<OwnedFd>,
    ) -> Result<(Reply, ReplyReader), FileError> {
        let mut reader = self.start_file_op(op, content).await?;
        let first = reader.reply().await?;
        Ok((first, reader))
    }

    /// What `path` is, without following a final symlink (`lstat`): a symlink is reported as
    /// one, with its target.
    pub async fn stat(&self, path: impl AsRef<Path>) -> Result<EntryInfo, FileError> {
        let path = self.file_path(path.as_ref())?;
        match self.file_request(FileOp::Stat { path }, None).await? {
            (Reply::Entry(e), _) => Ok(e),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// The entries below directory `path` (a symlink to a directory is listed), `depth` levels
    /// deep: 1 (or 0) the direct children, 2 their children too, and so on. Symlinked
    /// directories are listed, not entered; a subdirectory the sandbox's user cannot read is
    /// listed without its content. Each directory's entries come sorted by name, a
    /// directory's content right after it.
    pub async fn list_dir(
        &self,
        path: impl AsRef<Path>,
        depth: u32,
    ) -> Result<Vec<EntryInfo>, FileError> {
        let path = self.file_path(path.as_ref())?;
        match self
            .file_request(FileOp::ListDir { path, depth }, None)
            .await?
        {
            (Reply::Entries(e), _) => Ok(e),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// Creates directory `path` and any missing parents (mode 0755 under the umask, owned by
    /// the sandbox's user). [`FileError::AlreadyExists`] if `path` already existed.
    pub async fn make_dir(&self, path: impl AsRef<Path>) -> Result<EntryInfo, FileError> {
        let path = self.file_path(path.as_ref())?;
        match self.file_request(FileOp::MakeDir { path }, None).await? {
            (Reply::Entry(e), _) => Ok(e),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// Moves `from` to `to` (replacing a file there, as `rename(2)` does), creating `to`'s
    /// missing parent directories as E2B's envd does. Returns what `to` is now.
    pub async fn rename(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
    ) -> Result<EntryInfo, FileError> {
        let from = self.file_path(from.as_ref())?;
        let to = self.file_path(to.as_ref())?;
        match self.file_request(FileOp::Rename { from, to }, None).await? {
            (Reply::Entry(e), _) => Ok(e),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// Removes a file, a symlink (not what it points to) or a whole directory tree.
    /// [`FileError::NotFound`] if there was nothing.
    pub async fn remove(&self, path: impl AsRef<Path>) -> Result<(), FileError> {
        let path = self.file_path(path.as_ref())?;
        match self.file_request(FileOp::Remove { path }, None).await? {
            (Reply::Done, _) => Ok(()),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// Opens a file for reading (following symlinks inside the sandbox's view) and streams
    /// its bytes. The `EntryInfo` is the opened file's (its size when opened). Directories are
    /// [`FileError::IsADirectory`]; FIFOs and sockets [`FileError::InvalidInput`].
    pub async fn read_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<(EntryInfo, FileReader), FileError> {
        let path = self.file_path(path.as_ref())?;
        match self.file_request(FileOp::Read { path }, None).await? {
            (Reply::Entry(e), reply) => Ok((e, FileReader { reply, done: false })),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// Creates or truncates a file (and its missing parent directories) as the sandbox's user,
    /// mode 0644 under the umask, and returns the writer for its content. Errors opening it
    /// (a read-only path, a directory there) come back here, before any content is sent.
    pub async fn write_file(&self, path: impl AsRef<Path>) -> Result<FileWriter, FileError> {
        let path = self.file_path(path.as_ref())?;
        let (tx, rx) = pipe::pipe().map_err(FileError::io("create the content pipe"))?;
        grow_pipe(tx.as_raw_fd());
        let rx = rx
            .into_blocking_fd()
            .map_err(FileError::io("create the content pipe"))?;
        match self.file_request(FileOp::Write { path }, Some(rx)).await? {
            (Reply::Opened, reply) => Ok(FileWriter {
                sender: tx,
                result: WriteResult { reply },
            }),
            (other, r) => Err(r.unexpected(&other)),
        }
    }

    /// [`Sandbox::write_file`] with the content from `content`, to its end. A failure reading
    /// `content` is returned, and the file keeps what was written before it (the file is
    /// written in place, as E2B's envd does: links and ownership of an existing file stay).
    pub async fn write_file_from<R: AsyncRead + Unpin>(
        &self,
        path: impl AsRef<Path>,
        mut content: R,
    ) -> Result<EntryInfo, FileError> {
        let (mut sender, result) = self.write_file(path).await?.into_parts();
        let copied = tokio::io::copy(&mut content, &mut sender).await;
        drop(sender);
        match copied {
            Ok(_) => result.wait().await,
            // The sandbox's side stopped reading: its answer says why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => result.wait().await,
            Err(source) => Err(FileError::Io {
                action: "read the content to write".into(),
                source,
            }),
        }
    }

    /// Watches directory `path` (and, `recursive`, every directory below it, new ones
    /// included) with inotify, in a process in the sandbox. The watch is in place when this
    /// returns; dropping the stream ends it.
    pub async fn watch_dir(
        &self,
        path: impl AsRef<Path>,
        recursive: bool,
    ) -> Result<WatchStream, FileError> {
        let path = self.file_path(path.as_ref())?;
        match self
            .file_request(FileOp::Watch { path, recursive }, None)
            .await?
        {
            (Reply::Watching, reply) => Ok(WatchStream { reply, done: false }),
            (other, r) => Err(r.unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[test]
    fn permissions_read_as_ls_shows_them() {
        assert_eq!(permissions_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(permissions_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(permissions_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(permissions_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(permissions_string(libc::S_IFDIR | 0o1770), "drwxrwx--T");
        assert_eq!(permissions_string(libc::S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(permissions_string(libc::S_IFREG | 0o2644), "-rw-r-Sr--");
        assert_eq!(permissions_string(libc::S_IFCHR | 0o666), "crw-rw-rw-");
        assert_eq!(permissions_string(libc::S_IFIFO | 0o600), "prw-------");
        assert_eq!(permissions_string(libc::S_IFSOCK | 0o755), "srwxr-xr-x");
        assert_eq!(permissions_string(libc::S_IFBLK | 0o660), "brw-rw----");
        assert_eq!(permissions_string(libc::S_IFREG), "----------");
    }

    #[test]
    fn times_before_and_after_1970_survive_the_wire() {
        for (secs, nanos) in [
            (0, 0),
            (1_700_000_000, 123_456_789),
            (-2, 500_000_000),
            (-1, 0),
        ] {
            let t = system_time(secs, nanos);
            assert_eq!(time_parts(t), (secs, nanos));
        }
        assert_eq!(
            system_time(-2, 500_000_000),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
        let entry = EntryInfo {
            name: "a".into(),
            path: "/a".into(),
            kind: EntryKind::File,
            size: 1,
            mode: 0o644,
            permissions: "-rw-r--r--".into(),
            owner: "root".into(),
            group: "0".into(),
            modified: system_time(-86_400, 7),
            symlink_target: None,
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<EntryInfo>(&json).unwrap(), entry);
    }

    #[test]
    fn paths_are_absolute_and_cleaned_lexically() {
        let ws = Path::new("/workspace");
        let p = |s: &str| sandbox_path(ws, Path::new(s)).unwrap();
        assert_eq!(p("file.txt"), "/workspace/file.txt");
        assert_eq!(p("./a//b/./c"), "/workspace/a/b/c");
        assert_eq!(p("../etc/passwd"), "/etc/passwd");
        assert_eq!(p("/tmp/x/../y"), "/tmp/y");
        assert_eq!(p("/../../.."), "/");
        assert_eq!(p("/"), "/");
        assert!(matches!(
            sandbox_path(ws, Path::new("")),
            Err(FileError::InvalidInput { .. })
        ));
        use std::os::unix::ffi::OsStrExt as _;
        let not_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"a\xff"));
        assert!(matches!(
            sandbox_path(ws, not_utf8),
            Err(FileError::InvalidInput { .. })
        ));
    }

    #[test]
    fn errnos_map_to_their_kinds() {
        let e = |errno| FileError::from_errno(errno, "/p".into(), "doing".into());
        assert!(matches!(e(libc::ENOENT), FileError::NotFound { .. }));
        assert!(matches!(
            e(libc::EACCES),
            FileError::PermissionDenied { .. }
        ));
        assert!(matches!(e(libc::EROFS), FileError::PermissionDenied { .. }));
        assert_eq!(e(libc::EROFS).kind(), io::ErrorKind::ReadOnlyFilesystem);
        assert!(matches!(e(libc::EEXIST), FileError::AlreadyExists { .. }));
        assert!(matches!(e(libc::ENOTDIR), FileError::NotADirectory { .. }));
        assert!(matches!(e(libc::EISDIR), FileError::IsADirectory { .. }));
        assert!(matches!(e(libc::EINVAL), FileError::InvalidInput { .. }));
        let other = e(libc::ENOSPC);
        assert_eq!(other.errno(), Some(libc::ENOSPC));
        assert_eq!(other.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            WireError::new(libc::ENOENT, "/x", "open").message,
            format!("open: {}", io::Error::from_raw_os_error(libc::ENOENT))
        );
        // An io::Error made from one keeps it.
        let io_err = io::Error::from(e(libc::EISDIR));
        assert_eq!(io_err.kind(), io::ErrorKind::IsADirectory);
        assert!(
            io_err
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<FileError>().is_some())
        );
    }

    #[test]
    fn headers_round_trip_and_oversized_frames_are_refused() {
        for (tag, len) in [(TAG_MESSAGE, 0), (TAG_DATA, 65_536), (TAG_MESSAGE, 1 << 20)] {
            assert_eq!(parse_header(frame_header(tag, len)).unwrap(), (tag, len));
        }
        assert!(parse_header(frame_header(TAG_DATA, MAX_DATA_FRAME + 1)).is_err());
        assert!(parse_header(frame_header(TAG_MESSAGE, MAX_MESSAGE_FRAME + 1)).is_err());
        assert!(parse_header(frame_header(b'X', 1)).is_err());
        let frame = encode_message(&Reply::Done).unwrap();
        assert_eq!(
            parse_header(frame[..HEADER_LEN].try_into().unwrap()).unwrap(),
            (TAG_MESSAGE, frame.len() - HEADER_LEN)
        );
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn streams_can_cross_tasks() {
        assert_send_sync::<FileReader>();
        assert_send_sync::<FileWriter>();
        assert_send_sync::<WriteResult>();
        assert_send_sync::<WatchStream>();
    }

    /// A reply reader on a real pipe, with a pidfd of this (live) process standing for init.
    fn reader() -> (ReplyReader, std::fs::File) {
        let (tx, rx) = pipe::pipe().unwrap();
        let tx = std::fs::File::from(tx.into_blocking_fd().unwrap());
        // SAFETY: pidfd_open of our own pid returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) };
        assert!(fd >= 0, "pidfd_open");
        // SAFETY: a fresh descriptor from the kernel.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let probe = EndProbe {
            id: "unit".into(),
            // SAFETY: the AsyncFd owns the pidfd for its whole life.
            init: Arc::new(unsafe { AsyncFd::register(pidfd) }.unwrap()),
        };
        (ReplyReader::new(rx, "/f".into(), probe), tx)
    }

    fn data_frame(bytes: &[u8]) -> Vec<u8> {
        let mut f = frame_header(TAG_DATA, bytes.len()).to_vec();
        f.extend_from_slice(bytes);
        f
    }

    #[tokio::test]
    async fn a_read_streams_data_frames_and_ends_at_done() {
        let (mut reply, mut tx) = reader();
        let info = EntryInfo {
            name: "f".into(),
            path: "/f".into(),
            kind: EntryKind::File,
            size: 10,
            mode: 0o644,
            permissions: "-rw-r--r--".into(),
            owner: "root".into(),
            group: "root".into(),
            modified: UNIX_EPOCH,
            symlink_target: None,
        };
        let writer = std::thread::spawn(move || {
            tx.write_all(&encode_message(&Reply::Entry(info)).unwrap())
                .unwrap();
            // Frames split across writes, an empty one among them.
            let mut bytes = data_frame(b"hello ");
            bytes.extend(data_frame(b""));
            bytes.extend(data_frame(b"world"));
            bytes.extend(encode_message(&Reply::Done).unwrap());
            for chunk in bytes.chunks(3) {
                tx.write_all(chunk).unwrap();
                tx.flush().unwrap();
            }
        });
        let Reply::Entry(got) = reply.reply().await.unwrap() else {
            panic!("an entry first")
        };
        assert_eq!(got.size, 10);
        let mut file = FileReader { reply, done: false };
        let mut content = String::new();
        file.read_to_string(&mut content).await.unwrap();
        assert_eq!(content, "hello world");
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn an_error_midway_and_an_early_end_are_errors_not_a_short_file() {
        let (reply, mut tx) = reader();
        tx.write_all(&data_frame(b"part")).unwrap();
        tx.write_all(
            &encode_message(&Reply::Error(WireError::new(libc::EIO, "/f", "read"))).unwrap(),
        )
        .unwrap();
        let mut file = FileReader { reply, done: false };
        let mut content = Vec::new();
        let err = file.read_to_end(&mut content).await.unwrap_err();
        assert_eq!(content, b"part");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<FileError>());
        assert!(
            matches!(inner, Some(FileError::Other { errno, .. }) if *errno == libc::EIO),
            "{err:?}"
        );

        // The pipe ends inside a data frame while "init" (this process) lives: the child was
        // killed, after the grace given to init.
        let (reply, mut tx) = reader();
        tx.write_all(&frame_header(TAG_DATA, 10)).unwrap();
        tx.write_all(b"12345").unwrap();
        drop(tx);
        let mut file = FileReader { reply, done: false };
        let started = std::time::Instant::now();
        let err = file.read_to_end(&mut Vec::new()).await.unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<FileError>());
        assert!(matches!(inner, Some(FileError::Killed { .. })), "{err:?}");
        assert!(started.elapsed() >= END_GRACE);
    }

    #[tokio::test]
    async fn garbage_on_the_pipe_is_a_protocol_error() {
        let (mut reply, mut tx) = reader();
        tx.write_all(b"Xgarbage").unwrap();
        let err = reply.reply().await.unwrap_err();
        assert!(
            matches!(&err, FileError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidData),
            "{err:?}"
        );
        // A data frame where a message belongs.
        let (mut reply, mut tx) = reader();
        tx.write_all(&data_frame(b"x")).unwrap();
        assert!(reply.reply().await.is_err());
        drop(tx);
    }
}
