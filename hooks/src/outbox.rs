//! The durable outbox: one file per (alert, hook) delivery still owed, in a directory that
//! outlives the process.
//!
//! ```text
//! <dir>/lock           flock: one dispatcher per outbox
//! <dir>/pending/<id>.json   owed: written to tmp/, fsynced, renamed here, directory fsynced
//! <dir>/failed/<id>.json    given up (retries exhausted, or refused for good), with why
//! <dir>/corrupt/<name>      files of pending/ that could not be read, moved aside
//! <dir>/tmp/                writes in progress; whatever is left here was never enqueued
//! ```
//!
//! `enqueue` returns only once the entry and its directory entry are on disk, so an alert whose
//! `send` returned survives a SIGKILL or power loss. Delivery removes the entry and fsyncs the
//! directory (the ack); a crash before that means the entry is delivered again after restart,
//! with the same alert and dedup key: at least once. The entry's name is a hash of alert id
//! and hook, so enqueueing the same alert twice for a hook owes it once.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    alert::{Alert, hex, now_ns},
    config::OutboxLimits,
};

/// Entry files larger than this are not read (they cannot be ours).
const MAX_ENTRY_BYTES: u64 = 16 << 20;
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox: {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "outbox {} is in use by another process (its lock is held); one dispatcher per state directory",
        .path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "outbox {} is full: {pending} deliveries pending, at most {max} (outbox.max_pending); the hooks are not taking alerts",
        .dir.display()
    )]
    Full {
        dir: PathBuf,
        pending: usize,
        max: usize,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError {
    let path = path.to_owned();
    move |source| OutboxError::Io {
        action,
        path,
        source,
    }
}

/// One delivery owed: `alert` to hook `hook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The file's stem; not stored in the file.
    #[serde(skip)]
    pub id: String,
    pub hook: String,
    pub enqueued_ns: i64,
    pub alert: Alert,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    v: u32,
    #[serde(flatten)]
    entry: OutboxEntry,
}

/// Why a delivery was given up, stored beside the entry in `failed/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub at_ns: i64,
    pub attempts: u32,
    pub error: String,
}

#[derive(Serialize)]
struct StoredFailure<'a> {
    v: u32,
    #[serde(flatten)]
    entry: &'a OutboxEntry,
    failure: &'a Failure,
}

/// A file of `pending/` that could not be read, and where it went.
#[derive(Clone, Debug)]
pub struct CorruptEntry {
    pub path: PathBuf,
    /// Under `corrupt/`, unless moving it failed too.
    pub moved_to: Option<PathBuf>,
    pub error: String,
}

/// What `open` found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Deliveries still owed, oldest first.
    pub pending: Vec<OutboxEntry>,
    /// Unreadable files found this time (moved to `corrupt/`).
    pub corrupt: Vec<CorruptEntry>,
    /// Files in `corrupt/` in all, this time's included.
    pub corrupt_total: usize,
    /// Given-up deliveries kept in `failed/`.
    pub failed: usize,
    /// Enqueues a crash interrupted before they returned (their temporary files, removed).
    pub interrupted: usize,
}

/// Counts, for a status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxStatus {
    pub pending: usize,
    pub failed: usize,
}

pub struct Outbox {
    dir: PathBuf,
    pending_dir: PathBuf,
    failed_dir: PathBuf,
    corrupt_dir: PathBuf,
    tmp_dir: PathBuf,
    limits: OutboxLimits,
    pending: AtomicUsize,
    failed: Mutex<usize>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.dir)
            .field("status", &self.status())
            .finish()
    }
}

/// The entry id of `alert_id` for `hook`: 32 hex digits, safe as a file name whatever the two
/// strings hold.
pub fn entry_id(alert_id: &str, hook: &str) -> String {
    let mut h = Sha256::new();
    h.update((alert_id.len() as u64).to_le_bytes());
    h.update(alert_id.as_bytes());
    h.update(hook.as_bytes());
    hex(&h.finalize()[..16])
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `to` (the caller syncs `to`'s directory).
fn write_durably(tmp: &Path, to: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io("creating", tmp))?;
    f.write_all(bytes).map_err(io("writing", tmp))?;
    f.sync_all().map_err(io("syncing", tmp))?;
    fs::rename(tmp, to).map_err(io("renaming into place", to))
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>, OutboxError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io("listing", dir))? {
        let e = e.map_err(io("listing", dir))?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            out.push(e.path());
        }
    }
    Ok(out)
}

fn read_entry(path: &Path) -> Result<OutboxEntry, String> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .ok_or("not an outbox entry name (<id>.json)")?;
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(format!("{} bytes: larger than any entry", meta.len()));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let stored: StoredEntry = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_eof() {
            format!("truncated (a torn write?): {e}")
        } else {
            e.to_string()
        }
    })?;
    if stored.v != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            stored.v
        ));
    }
    let mut entry = stored.entry;
    if entry_id(&entry.alert.id, &entry.hook) != stem {
        return Err("its name does not match its alert id and hook".into());
    }
    entry.id = stem.to_owned();
    Ok(entry)
}

impl Outbox {
    /// Opens (creating it if needed) the outbox in `dir`, takes its lock, and reads what is owed.
    /// Unreadable entries are moved to `corrupt/` and reported, never fatal.
    pub fn open(
        dir: impl Into<PathBuf>,
        limits: OutboxLimits,
    ) -> Result<(Outbox, Recovered), OutboxError> {
        let dir = dir.into();
        let pending_dir = dir.join("pending");
        let failed_dir = dir.join("failed");
        let corrupt_dir = dir.join("corrupt");
        let tmp_dir = dir.join("tmp");
        for d in [&pending_dir, &failed_dir, &corrupt_dir, &tmp_dir] {
            fs::create_dir_all(d).map_err(io("creating", d))?;
        }
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(OutboxError::Locked { path: dir });
            }
            Err((_, e)) => {
                return Err(OutboxError::Io {
                    action: "locking",
                    path: lock_path,
                    source: e.into(),
                });
            }
        };

        let mut recovered = Recovered::default();
        for leftover in files_in(&tmp_dir)? {
            // Never renamed into pending/: its enqueue did not return, so nobody was promised it.
            fs::remove_file(&leftover).map_err(io("removing", &leftover))?;
            recovered.interrupted += 1;
        }
        for path in files_in(&pending_dir)? {
            match read_entry(&path) {
                Ok(entry) => recovered.pending.push(entry),
                Err(error) => {
                    let name = path.file_name().unwrap_or_default();
                    let mut to = corrupt_dir.join(name);
                    if to.exists() {
                        to = corrupt_dir.join(format!("{}.{}", name.to_string_lossy(), now_ns()));
                    }
                    let moved_to = fs::rename(&path, &to).ok().map(|_| to);
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = ?moved_to,
                        "outbox: skipping an unreadable entry: {error}"
                    );
                    recovered.corrupt.push(CorruptEntry {
                        path,
                        moved_to,
                        error,
                    });
                }
            }
        }
        if !recovered.corrupt.is_empty() {
            sync_dir(&pending_dir)?;
            sync_dir(&corrupt_dir)?;
        }
        recovered
            .pending
            .sort_by(|a, b| (a.enqueued_ns, &a.id).cmp(&(b.enqueued_ns, &b.id)));
        recovered.failed = files_in(&failed_dir)?.len();
        recovered.corrupt_total = files_in(&corrupt_dir)?.len();

        let outbox = Outbox {
            pending: AtomicUsize::new(recovered.pending.len()),
            failed: Mutex::new(recovered.failed),
            dir,
            pending_dir,
            failed_dir,
            corrupt_dir,
            tmp_dir,
            limits,
            _lock: lock,
        };
        Ok((outbox, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn status(&self) -> OutboxStatus {
        OutboxStatus {
            pending: self.pending.load(Ordering::Relaxed),
            failed: *self.failed.lock().expect("outbox counter"),
        }
    }

    /// Owes `alert` to each of `hooks`, durably: when this returns Ok, the entries and their
    /// names are on disk. Returns the entries written; an entry already pending for the same
    /// alert and hook is not written again (and not returned).
    pub fn enqueue(&self, alert: &Alert, hooks: &[&str]) -> Result<Vec<OutboxEntry>, OutboxError> {
        let pending = self.pending.load(Ordering::Relaxed);
        if pending + hooks.len() > self.limits.max_pending {
            return Err(OutboxError::Full {
                dir: self.dir.clone(),
                pending,
                max: self.limits.max_pending,
            });
        }
        let enqueued_ns = now_ns();
        let mut written = Vec::with_capacity(hooks.len());
        for hook in hooks {
            let id = entry_id(&alert.id, hook);
            let path = self.pending_dir.join(format!("{id}.json"));
            if path.exists() {
                continue;
            }
            let entry = OutboxEntry {
                id,
                hook: (*hook).to_owned(),
                enqueued_ns,
                alert: alert.clone(),
            };
            let mut bytes = serde_json::to_vec(&StoredEntry {
                v: FORMAT_VERSION,
                entry: entry.clone(),
            })
            .expect("an entry is plain data");
            bytes.push(b'\n');
            let tmp = self.tmp_dir.join(format!("{}.json.tmp", entry.id));
            write_durably(&tmp, &path, &bytes)?;
            written.push(entry);
        }
        if !written.is_empty() {
            sync_dir(&self.pending_dir)?;
            self.pending.fetch_add(written.len(), Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Records that `ids` were delivered: their entries go, durably.
    pub fn ack(&self, ids: &[&str]) -> Result<(), OutboxError> {
        let mut removed = 0;
        for id in ids {
            let path = self.pending_dir.join(format!("{id}.json"));
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing delivered", &path)(e)),
            }
        }
        sync_dir(&self.pending_dir)?;
        self.pending.fetch_sub(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Gives up on `entry`: it moves to `failed/` with `failure`, where it stays for a person to
    /// look at (the oldest go once there are more than `max_failed`).
    pub fn give_up(&self, entry: &OutboxEntry, failure: &Failure) -> Result<(), OutboxError> {
        let name = format!("{}.json", entry.id);
        let mut bytes = serde_json::to_vec(&StoredFailure {
            v: FORMAT_VERSION,
            entry,
            failure,
        })
        .expect("plain data");
        bytes.push(b'\n');
        let to = self.failed_dir.join(&name);
        let existed = to.exists();
        write_durably(&self.tmp_dir.join(format!("{name}.tmp")), &to, &bytes)?;
        sync_dir(&self.failed_dir)?;
        let pending = self.pending_dir.join(&name);
        match fs::remove_file(&pending) {
            Ok(()) => {
                sync_dir(&self.pending_dir)?;
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing given-up", &pending)(e)),
        }
        let mut failed = self.failed.lock().expect("outbox counter");
        if !existed {
            *failed += 1;
        }
        if *failed > self.limits.max_failed {
            *failed -= self.prune_failed(*failed - self.limits.max_failed)?;
        }
        Ok(())
    }

    /// Removes the `n` oldest given-up entries; returns how many went.
    fn prune_failed(&self, n: usize) -> Result<usize, OutboxError> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = files_in(&self.failed_dir)?
            .into_iter()
            .map(|p| {
                let t = fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (t, p)
            })
            .collect();
        files.sort();
        let mut removed = 0;
        for (_, path) in files.into_iter().take(n) {
            fs::remove_file(&path).map_err(io("pruning", &path))?;
            tracing::warn!(
                path = %path.display(),
                max_failed = self.limits.max_failed,
                "outbox: removed the oldest undeliverable entry (outbox.max_failed reached)"
            );
            removed += 1;
        }
        sync_dir(&self.failed_dir)?;
        Ok(removed)
    }

    /// Where unreadable entries go.
    pub fn corrupt_dir(&self) -> &Path {
        &self.corrupt_dir
    }

    /// Where given-up entries go.
    pub fn failed_dir(&self) -> &Path {
        &self.failed_dir
    }

    /// Where owed entries live.
    pub fn pending_dir(&self) -> &Path {
        &self.pending_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Priority;

    fn alert(rule: &str) -> Alert {
        Alert::new(
            now_ns(),
            "h",
            rule,
            Priority::Warning,
            Some("sb".into()),
            "out",
            vec![],
        )
    }

    fn limits() -> OutboxLimits {
        OutboxLimits::default()
    }

    #[test]
    fn entries_survive_reopening_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let a = alert("A");
        let b = alert("B");
        {
            let (outbox, rec) = Outbox::open(dir.path(), limits()).unwrap();
            assert!(rec.pending.is_empty());
            let written = outbox.enqueue(&a, &["w", "pd"]).unwrap();
            assert_eq!(written.len(), 2);
            outbox.enqueue(&b, &["w"]).unwrap();
            assert!(
                outbox.enqueue(&a, &["w"]).unwrap().is_empty(),
                "the same alert owed once per hook"
            );
            assert_eq!(outbox.status().pending, 3);
            outbox.ack(&[written[0].id.as_str()]).unwrap();
        }
        let (outbox, rec) = Outbox::open(dir.path(), limits()).unwrap();
        let got: Vec<(&str, &str)> = rec
            .pending
            .iter()
            .map(|e| (e.alert.rule.as_str(), e.hook.as_str()))
            .collect();
        assert_eq!(got, [("A", "pd"), ("B", "w")], "oldest first, acked gone");
        assert_eq!(rec.pending[0].alert, a);
        assert_eq!(outbox.status().pending, 2);
    }

    #[test]
    fn one_process_per_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Outbox::open(dir.path(), limits()).unwrap();
        let second = Outbox::open(dir.path(), limits()).unwrap_err();
        assert!(matches!(second, OutboxError::Locked { .. }), "{second}");
    }

    #[test]
    fn unreadable_entries_are_reported_moved_aside_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let good = alert("good");
        {
            let (outbox, _) = Outbox::open(dir.path(), limits()).unwrap();
            let e = outbox.enqueue(&alert("torn"), &["w"]).unwrap().remove(0);
            outbox.enqueue(&good, &["w"]).unwrap();
            // A torn write: the entry cut in half.
            let path = outbox.pending_dir().join(format!("{}.json", e.id));
            let bytes = fs::read(&path).unwrap();
            fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            fs::write(outbox.pending_dir().join("stray.txt"), b"hello").unwrap();
            fs::write(
                outbox
                    .pending_dir()
                    .join(format!("{}.json", "0".repeat(32))),
                b"{}",
            )
            .unwrap();
            // An enqueue interrupted before its rename.
            fs::write(dir.path().join("tmp/abc.json.tmp"), b"{\"v\":1").unwrap();
        }
        let (outbox, rec) = Outbox::open(dir.path(), limits()).unwrap();
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].alert, good);
        assert_eq!(rec.interrupted, 1);
        assert_eq!(rec.corrupt.len(), 3, "{:#?}", rec.corrupt);
        let torn = rec
            .corrupt
            .iter()
            .find(|c| c.error.starts_with("truncated"))
            .expect("the torn file is named as such");
        assert!(torn.path.starts_with(outbox.pending_dir()));
        assert!(
            torn.moved_to
                .as_ref()
                .unwrap()
                .starts_with(outbox.corrupt_dir())
        );
        assert_eq!(rec.corrupt_total, 3);
        assert_eq!(files_in(outbox.pending_dir()).unwrap().len(), 1);
        drop(outbox);
        let (_, again) = Outbox::open(dir.path(), limits()).unwrap();
        assert!(again.corrupt.is_empty(), "reported once, then counted");
        assert_eq!(again.corrupt_total, 3);
    }

    #[test]
    fn given_up_entries_are_kept_with_why_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(
            dir.path(),
            OutboxLimits {
                max_pending: 3,
                max_failed: 2,
            },
        )
        .unwrap();
        let mut entries = Vec::new();
        for rule in ["a", "b", "c"] {
            entries.extend(outbox.enqueue(&alert(rule), &["w"]).unwrap());
        }
        let full = outbox.enqueue(&alert("d"), &["w"]).unwrap_err();
        assert!(
            matches!(
                full,
                OutboxError::Full {
                    pending: 3,
                    max: 3,
                    ..
                }
            ),
            "{full}"
        );
        for (n, e) in entries.iter().enumerate() {
            let failure = Failure {
                at_ns: n as i64,
                attempts: 9,
                error: "HTTP 500".into(),
            };
            outbox.give_up(e, &failure).unwrap();
            // Distinct mtimes, so "oldest" is well defined on coarse file systems.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            outbox.status(),
            OutboxStatus {
                pending: 0,
                failed: 2
            }
        );
        let kept = files_in(outbox.failed_dir()).unwrap();
        assert_eq!(kept.len(), 2);
        assert!(
            !outbox
                .failed_dir()
                .join(format!("{}.json", entries[0].id))
                .exists(),
            "the oldest went"
        );
        let text = fs::read_to_string(outbox.failed_dir().join(format!("{}.json", entries[2].id)))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["failure"]["error"], "HTTP 500");
        assert_eq!(v["alert"]["rule"], "c");
        // A person who fixed the hook moves it back by hand: it is owed again.
        let name = format!("{}.json", entries[2].id);
        fs::rename(
            outbox.failed_dir().join(&name),
            outbox.pending_dir().join(&name),
        )
        .unwrap();
        drop(outbox);
        let (_, rec) = Outbox::open(dir.path(), limits()).unwrap();
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].alert.rule, "c");
        assert_eq!(rec.failed, 1);
    }
}
