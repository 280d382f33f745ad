//! The sandbox's side of a file operation (see `files`): the child init forks for one, already
//! confined as a command would be (init does that before calling [`serve`]), performs it in the
//! sandbox's mount namespace as the sandbox's user and answers in frames on the reply pipe.
//!
//! It is a fork of single-threaded init, so it runs ordinary Rust (allocating, std::fs). It
//! never executes anything; it exits when the operation is done, when the runner stops
//! listening (a write to the reply pipe fails with EPIPE: SIGPIPE is ignored here) or, for a
//! watch, when the reply pipe reports POLLERR/POLLHUP.

use std::{
    collections::HashMap,
    fs::{self, File, Metadata},
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsFd as _, AsRawFd as _, OwnedFd},
        unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor},
};

use crate::files::{
    EntryInfo, EntryKind, FileOp, FsEvent, FsEventKind, HEADER_LEN, Reply, TAG_DATA, WireError,
    encode_message, frame_header, permissions_string, system_time,
};

/// Bytes per data frame of a read, and per read(2) of a write's content.
const CHUNK: usize = 256 * 1024;

/// Why an operation stopped early.
enum Fail {
    /// The operation failed in the sandbox: reported to the runner.
    Op(WireError),
    /// The reply pipe is gone (the runner stopped listening): nothing left to tell.
    Gone,
}

fn op_err(path: &str, doing: &str) -> impl FnOnce(io::Error) -> Fail {
    let path = path.to_string();
    let doing = doing.to_string();
    move |e| {
        Fail::Op(WireError::new(
            e.raw_os_error().unwrap_or(libc::EIO),
            path,
            &doing,
        ))
    }
}

/// The reply pipe.
struct Out(File);

impl Out {
    fn message(&mut self, reply: &Reply) -> Result<(), Fail> {
        let frame = encode_message(reply).map_err(|e| {
            Fail::Op(WireError {
                errno: e.raw_os_error().unwrap_or(libc::EFBIG),
                path: String::new(),
                message: format!("the answer is too large: {e}"),
            })
        })?;
        self.raw(&frame)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        self.0.write_all(bytes).map_err(|_| Fail::Gone)
    }
}

/// Writes an error frame on `reply`: init's own answer when it could not fork, or a child's
/// that could not confine itself. Best effort: the pipe is fresh, the frame small.
pub(crate) fn refuse(reply: &OwnedFd, error: WireError) {
    if let Ok(frame) = encode_message(&Reply::Error(error)) {
        // SAFETY: a write from a live buffer to a descriptor the caller owns.
        unsafe { libc::write(reply.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    }
}

/// Performs `op`, answering on `reply`; returns the exit status of the child.
pub(crate) fn serve(op: FileOp, reply: OwnedFd, content: Option<OwnedFd>) -> i32 {
    let mut out = Out(File::from(reply));
    let mut names = Names::default();
    let result = match op {
        FileOp::Stat { path } => stat(&mut out, &mut names, &path),
        FileOp::ListDir { path, depth } => list_dir(&mut out, &mut names, &path, depth),
        FileOp::MakeDir { path } => make_dir(&mut out, &mut names, &path),
        FileOp::Rename { from, to } => rename(&mut out, &mut names, &from, &to),
        FileOp::Remove { path } => remove(&mut out, &path),
        FileOp::Read { path } => read(&mut out, &mut names, &path),
        FileOp::Write { path } => match content {
            Some(content) => write(&mut out, &mut names, &path, File::from(content)),
            None => Err(Fail::Op(WireError::new(
                libc::EINVAL,
                path,
                "write without content",
            ))),
        },
        FileOp::Watch { path, recursive } => watch(&mut out, &path, recursive),
    };
    match result {
        Ok(()) => 0,
        Err(Fail::Op(e)) => {
            let _ = out.message(&Reply::Error(e));
            1
        }
        Err(Fail::Gone) => 1,
    }
}

/// User and group names from the sandbox's `/etc/passwd` and `/etc/group`, read once when
/// first needed.
#[derive(Default)]
struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> String {
        let users = self.users.get_or_insert_with(|| {
            parse_id_file(&fs::read_to_string("/etc/passwd").unwrap_or_default())
        });
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    fn group(&mut self, gid: u32) -> String {
        let groups = self.groups.get_or_insert_with(|| {
            parse_id_file(&fs::read_to_string("/etc/group").unwrap_or_default())
        });
        groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}

/// `name:password:id:...` lines (passwd and group alike) as id → name; the first name of an id
/// wins, as getpwuid's does.
pub(crate) fn parse_id_file(text: &str) -> HashMap<u32, String> {
    let mut ids = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(id) = id.trim().parse() {
            ids.entry(id).or_insert_with(|| name.to_string());
        }
    }
    ids
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The entry at `path` from its metadata (an lstat's, or an open file's fstat).
fn info(path: &Path, meta: &Metadata, names: &mut Names) -> EntryInfo {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let symlink_target = ft
        .is_symlink()
        .then(|| fs::read_link(path).ok().map(|t| lossy(&t)))
        .flatten();
    EntryInfo {
        name: path
            .file_name()
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned()),
        path: lossy(path),
        kind,
        size: meta.size(),
        mode: meta.mode() & 0o7777,
        permissions: permissions_string(meta.mode()),
        owner: names.user(meta.uid()),
        group: names.group(meta.gid()),
        modified: system_time(meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32),
        symlink_target,
    }
}

fn stat(out: &mut Out, names: &mut Names, path: &str) -> Result<(), Fail> {
    let p = Path::new(path);
    let meta = fs::symlink_metadata(p).map_err(op_err(path, "stat"))?;
    out.message(&Reply::Entry(info(p, &meta, names)))
}

fn list_dir(out: &mut Out, names: &mut Names, path: &str, depth: u32) -> Result<(), Fail> {
    let p = Path::new(path);
    // Follows a final symlink: listing a link to a directory lists the directory.
    let meta = fs::metadata(p).map_err(op_err(path, "stat"))?;
    if !meta.is_dir() {
        return Err(Fail::Op(WireError::new(libc::ENOTDIR, path, "list")));
    }
    let mut entries = Vec::new();
    walk(p, 1, depth.max(1), &mut entries, names).map_err(op_err(path, "read the directory"))?;
    out.message(&Reply::Entries(entries))
}

/// Lists `dir` into `entries`, entering real subdirectories (never symlinks) while `level` is
/// below `depth`. Only `dir` itself must be readable: a subdirectory that is not is listed
/// without its content.
fn walk(
    dir: &Path,
    level: u32,
    depth: u32,
    entries: &mut Vec<EntryInfo>,
    names: &mut Names,
) -> io::Result<()> {
    let mut children: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        // Gone since the directory was read: not there to list.
        let Ok(meta) = fs::symlink_metadata(&child) else {
            continue;
        };
        entries.push(info(&child, &meta, names));
        if meta.is_dir() && level < depth {
            let _ = walk(&child, level + 1, depth, entries, names);
        }
    }
    Ok(())
}

fn create_dirs(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
}

fn make_dir(out: &mut Out, names: &mut Names, path: &str) -> Result<(), Fail> {
    let p = Path::new(path);
    match fs::symlink_metadata(p) {
        Ok(_) => return Err(Fail::Op(WireError::new(libc::EEXIST, path, "mkdir"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(op_err(path, "stat")(e)),
    }
    create_dirs(p).map_err(op_err(path, "mkdir"))?;
    let meta = fs::symlink_metadata(p).map_err(op_err(path, "stat"))?;
    out.message(&Reply::Entry(info(p, &meta, names)))
}

fn rename(out: &mut Out, names: &mut Names, from: &str, to: &str) -> Result<(), Fail> {
    // The source first, so that a missing one is named as such.
    fs::symlink_metadata(from).map_err(op_err(from, "stat"))?;
    let to_path = Path::new(to);
    if let Some(parent) = to_path.parent() {
        create_dirs(parent).map_err(op_err(to, "create the destination's directory"))?;
    }
    fs::rename(from, to_path).map_err(op_err(from, &format!("rename to {to}")))?;
    let meta = fs::symlink_metadata(to_path).map_err(op_err(to, "stat"))?;
    out.message(&Reply::Entry(info(to_path, &meta, names)))
}

fn remove(out: &mut Out, path: &str) -> Result<(), Fail> {
    let meta = fs::symlink_metadata(path).map_err(op_err(path, "stat"))?;
    // remove_dir_all does not follow symlinks inside the tree (it works with openat and
    // O_NOFOLLOW), so a link planted in it does not make it delete elsewhere.
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(op_err(path, "remove the directory"))?;
    } else {
        fs::remove_file(path).map_err(op_err(path, "remove"))?;
    }
    out.message(&Reply::Done)
}

/// Clears O_NONBLOCK, set only so that opening a FIFO could not block.
fn set_blocking(file: &File) -> io::Result<()> {
    // SAFETY: flag changes on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Refuses what cannot be streamed as a file: directories, FIFOs (an open that would wait for
/// a writer, or a reader), sockets.
fn check_streamable(meta: &Metadata, path: &str, doing: &str) -> Result<(), Fail> {
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(Fail::Op(WireError::new(libc::EISDIR, path, doing)));
    }
    if ft.is_fifo() || ft.is_socket() {
        return Err(Fail::Op(WireError {
            errno: libc::EINVAL,
            path: path.to_string(),
            message: format!("{doing}: not a regular file (a FIFO or a socket)"),
        }));
    }
    Ok(())
}

fn read(out: &mut Out, names: &mut Names, path: &str) -> Result<(), Fail> {
    let p = Path::new(path);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(op_err(path, "open"))?;
    let meta = file.metadata().map_err(op_err(path, "stat"))?;
    check_streamable(&meta, path, "read")?;
    set_blocking(&file).map_err(op_err(path, "open"))?;
    out.message(&Reply::Entry(info(p, &meta, names)))?;
    let mut buf = vec![0u8; HEADER_LEN + CHUNK];
    loop {
        let n = match file.read(&mut buf[HEADER_LEN..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(op_err(path, "read")(e)),
        };
        buf[..HEADER_LEN].copy_from_slice(&frame_header(TAG_DATA, n));
        out.raw(&buf[..HEADER_LEN + n])?;
    }
    out.message(&Reply::Done)
}

fn write(out: &mut Out, names: &mut Names, path: &str, mut content: File) -> Result<(), Fail> {
    let p = Path::new(path);
    if let Some(parent) = p.parent() {
        create_dirs(parent).map_err(op_err(path, "create the file's directory"))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(op_err(path, "open"))?;
    let meta = file.metadata().map_err(op_err(path, "stat"))?;
    check_streamable(&meta, path, "write")?;
    set_blocking(&file).map_err(op_err(path, "open"))?;
    out.message(&Reply::Opened)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(op_err(path, "read the content")(e)),
        };
        // EFBIG beyond `limits.file_size` (SIGXFSZ is ignored in this process), ENOSPC on a
        // full volume: reported, and the runner's pipe breaks as this process exits.
        file.write_all(&buf[..n]).map_err(op_err(path, "write"))?;
    }
    let meta = file.metadata().map_err(op_err(path, "stat"))?;
    out.message(&Reply::Entry(info(p, &meta, names)))
}

/// What a watch asks inotify for: fsnotify's set, which E2B's envd reports.
fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// The events one inotify mask stands for, in the order they happened in (a create before a
/// write on the same event cannot be told apart anyway).
pub(crate) fn event_kinds(mask: AddWatchFlags) -> Vec<FsEventKind> {
    let mut kinds = Vec::new();
    for (flags, kind) in [
        (
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
            FsEventKind::Create,
        ),
        (AddWatchFlags::IN_MODIFY, FsEventKind::Write),
        (AddWatchFlags::IN_ATTRIB, FsEventKind::Chmod),
        (AddWatchFlags::IN_DELETE, FsEventKind::Remove),
        (AddWatchFlags::IN_MOVED_FROM, FsEventKind::Rename),
    ] {
        if mask.intersects(flags) {
            kinds.push(kind);
        }
    }
    kinds
}

/// Watched directories: watch descriptor → path relative to the watched root ("" the root).
struct Watches {
    inotify: Inotify,
    root: PathBuf,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Watches {
    fn add(&mut self, rel: &Path) -> nix::Result<()> {
        let wd = self.inotify.add_watch(&self.root.join(rel), watch_mask())?;
        self.dirs.insert(wd, rel.to_owned());
        Ok(())
    }

    /// Watches `rel` and every real directory below it. A subdirectory that cannot be watched
    /// (unreadable, gone meanwhile) is skipped.
    fn add_tree(&mut self, rel: &Path) {
        let mut stack = vec![rel.to_owned()];
        while let Some(dir) = stack.pop() {
            if self.add(&dir).is_err() {
                continue;
            }
            let Ok(children) = fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for child in children.filter_map(Result::ok) {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(dir.join(child.file_name()));
                }
            }
        }
    }

    /// Stops watching `rel` and what is below it (moved away: its events would carry stale
    /// names).
    fn remove_tree(&mut self, rel: &Path) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.starts_with(rel))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            let _ = self.inotify.rm_watch(wd);
            self.dirs.remove(&wd);
        }
    }
}

fn watch(out: &mut Out, path: &str, recursive: bool) -> Result<(), Fail> {
    let root = PathBuf::from(path);
    let meta = fs::metadata(&root).map_err(op_err(path, "stat"))?;
    if !meta.is_dir() {
        return Err(Fail::Op(WireError::new(libc::ENOTDIR, path, "watch")));
    }
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| Fail::Op(WireError::new(e as i32, path, "inotify_init")))?;
    let mut watches = Watches {
        inotify,
        root,
        dirs: HashMap::new(),
    };
    watches
        .add(Path::new(""))
        .map_err(|e| Fail::Op(WireError::new(e as i32, path, "inotify_add_watch")))?;
    if recursive {
        let children: Vec<PathBuf> = fs::read_dir(&watches.root)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|c| PathBuf::from(c.file_name()))
                    .collect()
            })
            .unwrap_or_default();
        for child in children {
            watches.add_tree(&child);
        }
    }
    out.message(&Reply::Watching)?;
    loop {
        let (events_ready, gone) = {
            let mut fds = [
                PollFd::new(watches.inotify.as_fd(), PollFlags::POLLIN),
                // No events asked: a pipe's writer gets POLLERR once every reader is closed.
                PollFd::new(out.0.as_fd(), PollFlags::empty()),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Fail::Op(WireError::new(e as i32, path, "poll"))),
            }
            (
                fds[0].revents().is_some_and(|r| !r.is_empty()),
                fds[1].revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                }),
            )
        };
        if gone {
            return Err(Fail::Gone);
        }
        if !events_ready {
            continue;
        }
        let events = match watches.inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Fail::Op(WireError::new(
                    e as i32,
                    path,
                    "read inotify events",
                )));
            }
        };
        for event in events {
            // Overflowed: events were lost; nothing names them.
            let Some(rel) = watches.dirs.get(&event.wd).cloned() else {
                continue;
            };
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                watches.dirs.remove(&event.wd);
                if rel.as_os_str().is_empty() {
                    // The watched directory itself is gone (removed, or its filesystem).
                    return out.message(&Reply::Done);
                }
                continue;
            }
            // The directory's own DELETE_SELF/MOVE_SELF: its parent reports it by name.
            let Some(name) = event.name else {
                continue;
            };
            let rel_name = rel.join(&name);
            let is_dir = event.mask.contains(AddWatchFlags::IN_ISDIR);
            if recursive && is_dir {
                if event
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    watches.add_tree(&rel_name);
                } else if event.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                    watches.remove_tree(&rel_name);
                }
            }
            for kind in event_kinds(event.mask) {
                out.message(&Reply::Event(FsEvent {
                    name: lossy(&rel_name),
                    kind,
                }))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_their_first_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment\n\
                      daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      toor:x:0:0::/:/bin/sh\n\
                      broken-line\n\
                      bad:x:notanumber:0::/:/bin/sh\n";
        let ids = parse_id_file(passwd);
        assert_eq!(ids.get(&0).map(String::as_str), Some("root"));
        assert_eq!(ids.get(&1).map(String::as_str), Some("daemon"));
        assert_eq!(ids.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(ids.len(), 3);
        let group = "root:x:0:\nadm:x:4:syslog,alice\n";
        assert_eq!(
            parse_id_file(group).get(&4).map(String::as_str),
            Some("adm")
        );
    }

    #[test]
    fn inotify_masks_become_e2b_events() {
        assert_eq!(
            event_kinds(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ISDIR),
            [FsEventKind::Create]
        );
        assert_eq!(
            event_kinds(AddWatchFlags::IN_MOVED_TO),
            [FsEventKind::Create]
        );
        assert_eq!(event_kinds(AddWatchFlags::IN_MODIFY), [FsEventKind::Write]);
        assert_eq!(event_kinds(AddWatchFlags::IN_ATTRIB), [FsEventKind::Chmod]);
        assert_eq!(event_kinds(AddWatchFlags::IN_DELETE), [FsEventKind::Remove]);
        assert_eq!(
            event_kinds(AddWatchFlags::IN_MOVED_FROM),
            [FsEventKind::Rename]
        );
        assert!(event_kinds(AddWatchFlags::IN_CLOSE_WRITE).is_empty());
    }

    /// The operations themselves, unconfined, in a temporary directory of the host (what the
    /// child does after confining itself is plain file work).
    #[test]
    fn operations_answer_in_frames() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_str().unwrap().to_string();
        let run = |op: FileOp, content: Option<&[u8]>| -> Vec<u8> {
            let (r, w) = nix::unistd::pipe().unwrap();
            let content_fd = content.map(|bytes| {
                let (cr, cw) = nix::unistd::pipe().unwrap();
                let mut cw = File::from(cw);
                cw.write_all(bytes).unwrap();
                drop(cw);
                cr
            });
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                File::from(r).read_to_end(&mut all).unwrap();
                all
            });
            serve(op, w, content_fd);
            reader.join().unwrap()
        };
        let messages = |bytes: &[u8]| -> (Vec<Reply>, Vec<u8>) {
            let (mut replies, mut data, mut at) = (Vec::new(), Vec::new(), 0);
            while at < bytes.len() {
                let (tag, len) =
                    crate::files::parse_header(bytes[at..at + HEADER_LEN].try_into().unwrap())
                        .unwrap();
                let payload = &bytes[at + HEADER_LEN..at + HEADER_LEN + len];
                if tag == TAG_DATA {
                    data.extend_from_slice(payload);
                } else {
                    replies.push(serde_json::from_slice(payload).unwrap());
                }
                at += HEADER_LEN + len;
            }
            (replies, data)
        };
        let file = format!("{base}/sub/dir/f.txt");
        let (replies, _) = messages(&run(FileOp::Write { path: file.clone() }, Some(b"content")));
        assert_eq!(replies[0], Reply::Opened);
        let Reply::Entry(e) = &replies[1] else {
            panic!("{replies:?}")
        };
        assert_eq!(
            (e.size, e.name.as_str(), e.kind),
            (7, "f.txt", EntryKind::File)
        );
        let (replies, data) = messages(&run(FileOp::Read { path: file.clone() }, None));
        assert_eq!(data, b"content");
        assert!(matches!(replies.as_slice(), [Reply::Entry(_), Reply::Done]));

        std::os::unix::fs::symlink("sub", format!("{base}/link")).unwrap();
        let (replies, _) = messages(&run(
            FileOp::Stat {
                path: format!("{base}/link"),
            },
            None,
        ));
        let [Reply::Entry(link)] = replies.as_slice() else {
            panic!("{replies:?}")
        };
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(link.symlink_target.as_deref(), Some("sub"));

        let list = |depth| {
            let (replies, _) = messages(&run(
                FileOp::ListDir {
                    path: base.clone(),
                    depth,
                },
                None,
            ));
            let [Reply::Entries(entries)] = replies.as_slice() else {
                panic!("{replies:?}")
            };
            entries
                .iter()
                .map(|e| e.path.strip_prefix(&base).unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(list(1), ["/link", "/sub"]);
        assert_eq!(list(0), ["/link", "/sub"]);
        assert_eq!(list(2), ["/link", "/sub", "/sub/dir"]);
        assert_eq!(list(9), ["/link", "/sub", "/sub/dir", "/sub/dir/f.txt"]);

        let (replies, _) = messages(&run(
            FileOp::MakeDir {
                path: format!("{base}/sub"),
            },
            None,
        ));
        assert!(
            matches!(&replies[..], [Reply::Error(e)] if e.errno == libc::EEXIST),
            "{replies:?}"
        );
        let (replies, _) = messages(&run(
            FileOp::Read {
                path: format!("{base}/sub"),
            },
            None,
        ));
        assert!(
            matches!(&replies[..], [Reply::Error(e)] if e.errno == libc::EISDIR),
            "{replies:?}"
        );
        let (replies, _) = messages(&run(
            FileOp::Remove {
                path: format!("{base}/sub"),
            },
            None,
        ));
        assert_eq!(replies, [Reply::Done]);
        assert!(!Path::new(&format!("{base}/sub")).exists());
    }
}
