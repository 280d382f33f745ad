//! What `sandwatch serve` (an E2B-style daemon) needs of the runner, through the library
//! against the real kernel: commands' stdin (a pipe fed to its end, or left unread), signals by
//! handle, file operations in the sandbox's view and identity (round trips, metadata, errors,
//! a planted symlink that must not reach the host, watches that end with their consumer,
//! frozen and ended sandboxes), and the labels a restarted daemon finds on a sandbox its
//! predecessor left.
//!
//! Each test makes its own sandboxes under unique `swt-` ids; a `Sandbox` kills and removes
//! itself when dropped, a failed test too.

mod support;

use std::{
    fs,
    io::{BufRead as _, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use sandwatch_runner::{
    CgroupRoot, EntryKind, FileError, FsEventKind, SandboxPolicy,
    sandbox::{CommandRequest, EndReason, Sandbox, SandboxOptions},
};
use sha2::{Digest as _, Sha256};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Long enough for anything here on a loaded 2-core machine; a hang fails instead of blocking.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {PATIENCE:?}"))
}

/// A sandbox with an empty workspace of its own (kept for the sandbox's life).
async fn new_sandbox(name: &str, policy_yaml: &str) -> Fixture {
    sandbox_in(name, policy_yaml, tempfile::tempdir().unwrap()).await
}

fn random_bytes(n: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    fs::File::open("/dev/urandom")
        .unwrap()
        .take(n)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// stdin and signals

#[tokio::test]
async fn stdin_reaches_the_command_and_its_end_of_file_ends_it() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("stdin-cat", "extends: default\n").await;

    // run_with_input: 1 MiB, many times a pipe's capacity, so feeding and draining overlap.
    let input = random_bytes(1 << 20);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = within(
        "cat fed 1 MiB",
        sandbox.run_with_input(&request(&["cat"]), input.as_slice(), &mut out, &mut err),
    )
    .await
    .unwrap();
    assert_eq!(outcome.status, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(out.len(), input.len());
    assert!(out == input, "cat echoed what it was given");

    // spawn with a stdin pipe: written piece by piece, then dropped (end of file).
    let req = CommandRequest {
        stdin: true,
        ..request(&[
            "sh",
            "-c",
            "while read -r line; do echo \"got $line\"; done; echo eof",
        ])
    };
    let mut running = sandbox.spawn(&req).await.unwrap().unwrap();
    let mut stdin = running.stdin.take().expect("a stdin pipe was asked for");
    stdin.write_all(b"one\ntwo\n").await.unwrap();
    let mut first = vec![0u8; "got one\n".len()];
    within(
        "the first line's answer",
        running.stdout.read_exact(&mut first),
    )
    .await
    .unwrap();
    assert_eq!(
        first, b"got one\n",
        "the command answers while its stdin is open"
    );
    stdin.write_all(b"three\n").await.unwrap();
    drop(stdin);
    let mut rest = String::new();
    within("the rest", running.stdout.read_to_string(&mut rest))
        .await
        .unwrap();
    assert_eq!(rest, "got two\ngot three\neof\n");
    assert_eq!(
        within("the loop to end", running.wait()).await,
        Some((Some(0), None)),
        "end of file ended it"
    );

    // Without asking, stdin is /dev/null, as before.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox
        .run(
            &request(&["sh", "-c", "cat; echo done"]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    assert_eq!((outcome.status, out.as_slice()), (0, b"done\n".as_slice()));
    let plain = sandbox.spawn(&request(&["true"])).await.unwrap().unwrap();
    assert!(plain.stdin.is_none());
    assert_eq!(plain.wait().await, Some((Some(0), None)));
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_command_that_ignores_its_input_does_not_hang_run_with_input() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("stdin-ignored", "extends: default\n").await;

    // An input that never ends (its writer stays open and silent): the command's exit ends
    // the run anyway.
    let (never, _writer_kept_open) = tokio::io::duplex(64);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let outcome = within(
        "true with an endless input",
        sandbox.run_with_input(
            &request(&["sh", "-c", "echo bye"]),
            never,
            &mut out,
            &mut err,
        ),
    )
    .await
    .unwrap();
    assert_eq!((outcome.status, out.as_slice()), (0, b"bye\n".as_slice()));
    assert!(started.elapsed() < Duration::from_secs(10));

    // A big input to a command that exits at once: the broken pipe is normal, not an error.
    let big = vec![b'x'; 16 << 20];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = within(
        "true with 16 MiB of input",
        sandbox.run_with_input(&request(&["true"]), big.as_slice(), &mut out, &mut err),
    )
    .await
    .unwrap();
    assert_eq!(outcome.status, 0);

    // One that reads a little and closes its stdin.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = within(
        "head -c 5",
        sandbox.run_with_input(
            &request(&["head", "-c", "5"]),
            big.as_slice(),
            &mut out,
            &mut err,
        ),
    )
    .await
    .unwrap();
    assert_eq!((outcome.status, out.as_slice()), (0, b"xxxxx".as_slice()));

    // A command writing into a pipe whose reader left dies of SIGPIPE, as anywhere else: init
    // ignores SIGPIPE, and its commands must not inherit that (`yes` would complain of EPIPE).
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox
        .run(
            &request(&["sh", "-c", "yes | head -c 3"]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.status,
            out.as_slice(),
            String::from_utf8_lossy(&err).as_ref()
        ),
        (0, b"y\ny".as_slice(), ""),
        "yes dies of SIGPIPE quietly"
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    sandbox
        .run(
            &request(&["grep", "SigIgn", "/proc/self/status"]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out).split_whitespace().nth(1),
        Some("0000000000000000"),
        "a command starts with no signal ignored"
    );
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn signal_command_by_handle_kills_a_background_command() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("signal-handle", "extends: default\n").await;
    let sleeper = sandbox
        .spawn(&request(&["sleep", "100"]))
        .await
        .unwrap()
        .unwrap();
    let other = sandbox
        .spawn(&request(&["sleep", "100"]))
        .await
        .unwrap()
        .unwrap();
    let handle = sleeper.handle();
    assert_eq!(handle.pid, sleeper.pid);
    // The RunningCommand goes to a waiter; the handle is all the signaller keeps.
    let waiter = tokio::spawn(sleeper.wait());
    wait_for("sleep to run", Duration::from_secs(10), || {
        sandbox_runs(sandbox.id(), "sleep")
    });
    sandbox.signal_command(handle, libc::SIGKILL).await.unwrap();
    let exit = within("the killed sleep", waiter).await.unwrap();
    assert_eq!(exit, Some((None, Some(libc::SIGKILL))));
    // Only that command: the other sleep still runs.
    assert!(sandbox_runs(sandbox.id(), "sleep"), "the other sleep lives");
    sandbox.signal(&other, libc::SIGTERM).await.unwrap();
    assert_eq!(
        within("the other sleep", other.wait()).await,
        Some((None, Some(libc::SIGTERM)))
    );
    sandbox.destroy().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Files

#[tokio::test]
async fn files_round_trip_with_the_sandbox_users_identity() {
    let Fixture { sandbox, workspace } = new_sandbox("files-rt", "user: 1000\n").await;
    let blob = random_bytes(5 << 20);
    let written = within(
        "writing 5 MiB",
        sandbox.write_file_from("dir/sub/blob.bin", blob.as_slice()),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            written.path.as_str(),
            written.name.as_str(),
            written.kind,
            written.size
        ),
        (
            "/workspace/dir/sub/blob.bin",
            "blob.bin",
            EntryKind::File,
            5 << 20
        )
    );
    assert_eq!(
        (written.mode, written.permissions.as_str()),
        (0o644, "-rw-r--r--"),
        "0644 under the usual umask"
    );

    // On the host: the sandbox's uid, parents created too.
    let host = workspace.path().join("dir/sub/blob.bin");
    for p in [&host, &workspace.path().join("dir")] {
        let meta = fs::metadata(p).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (MAPPED_ROOT + 1000, MAPPED_ROOT + 1000),
            "{} belongs to the sandbox's user",
            p.display()
        );
    }
    assert_eq!(sha256(&fs::read(&host).unwrap()), sha256(&blob));

    // Read back, streamed.
    let (info, mut reader) = within(
        "open for reading",
        sandbox.read_file("/workspace/dir/sub/blob.bin"),
    )
    .await
    .unwrap();
    assert_eq!(info.size, 5 << 20);
    let mut back = Vec::new();
    within("reading 5 MiB", reader.read_to_end(&mut back))
        .await
        .unwrap();
    assert_eq!(sha256(&back), sha256(&blob), "the same bytes came back");

    // A command sees it, and a file a command wrote reads back.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox
        .run(
            &request(&[
                "sh",
                "-c",
                "sha256sum dir/sub/blob.bin; echo from-a-command > made.txt",
            ]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, 0, "{}", String::from_utf8_lossy(&err));
    assert!(
        String::from_utf8_lossy(&out).starts_with(&sha256(&blob)),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (info, mut reader) = sandbox.read_file("made.txt").await.unwrap();
    let mut text = String::new();
    reader.read_to_string(&mut text).await.unwrap();
    assert_eq!(text, "from-a-command\n");
    // The sandbox's /etc is the host's, bound read-only: its name for uid 1000, if any.
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let name_1000 = passwd
        .lines()
        .find(|l| l.split(':').nth(2) == Some("1000"))
        .map_or("1000", |l| l.split(':').next().unwrap());
    assert_eq!(info.owner, name_1000);

    // Overwriting truncates.
    let short = sandbox
        .write_file_from("dir/sub/blob.bin", &b"short"[..])
        .await
        .unwrap();
    assert_eq!(short.size, 5);
    assert_eq!(fs::read(&host).unwrap(), b"short");

    // The writer half by half: a FileWriter, then finish().
    let mut writer = sandbox.write_file("/tmp/parts.txt").await.unwrap();
    writer.write_all(b"part one, ").await.unwrap();
    writer.write_all(b"part two").await.unwrap();
    let done = within("finishing a write", writer.finish()).await.unwrap();
    assert_eq!((done.size, done.path.as_str()), (18, "/tmp/parts.txt"));
    let (_, mut reader) = sandbox.read_file("/tmp/parts.txt").await.unwrap();
    let mut text = String::new();
    reader.read_to_string(&mut text).await.unwrap();
    assert_eq!(
        text, "part one, part two",
        "/tmp is the sandbox's, not the host's"
    );
    assert!(!Path::new("/tmp/parts.txt").exists());
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn stat_list_make_rename_and_remove() {
    let Fixture { sandbox, workspace } = new_sandbox("files-ops", "extends: default\n").await;
    let ws = workspace.path();
    fs::create_dir_all(ws.join("a/b/c")).unwrap();
    fs::write(ws.join("a/one.txt"), "1").unwrap();
    fs::write(ws.join("a/b/two.txt"), "22").unwrap();
    fs::write(ws.join("a/b/c/three.txt"), "333").unwrap();
    std::os::unix::fs::symlink("b", ws.join("a/link-to-b")).unwrap();
    // The tree is the sandbox's root's, as if it had made it (host root's would be read-only
    // to it: see /etc below).
    for entry in [
        "a",
        "a/b",
        "a/b/c",
        "a/one.txt",
        "a/b/two.txt",
        "a/b/c/three.txt",
    ] {
        std::os::unix::fs::chown(ws.join(entry), Some(MAPPED_ROOT), Some(MAPPED_ROOT)).unwrap();
    }
    std::os::unix::fs::lchown(ws.join("a/link-to-b"), Some(MAPPED_ROOT), Some(MAPPED_ROOT))
        .unwrap();
    let dir = sandbox.stat("a").await.unwrap();
    assert_eq!((dir.owner.as_str(), dir.group.as_str()), ("root", "root"));
    assert_eq!(
        (dir.kind, dir.path.as_str(), dir.name.as_str()),
        (EntryKind::Directory, "/workspace/a", "a")
    );
    assert!(dir.permissions.starts_with('d'), "{}", dir.permissions);
    let link = sandbox.stat("/workspace/a/link-to-b").await.unwrap();
    assert_eq!(link.kind, EntryKind::Symlink, "lstat: the link itself");
    assert_eq!(link.symlink_target.as_deref(), Some("b"));
    assert!(link.permissions.starts_with('l'));
    let file = sandbox.stat("a/b/c/three.txt").await.unwrap();
    assert_eq!((file.kind, file.size), (EntryKind::File, 3));
    let mtime = fs::metadata(ws.join("a/b/c/three.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(file.modified, mtime);
    let root = sandbox.stat("/").await.unwrap();
    assert_eq!((root.name.as_str(), root.path.as_str()), ("/", "/"));
    let etc = sandbox.stat("/etc/passwd").await.unwrap();
    assert_eq!(
        (etc.owner.as_str(), etc.group.as_str()),
        ("nobody", "nogroup"),
        "host root is outside the sandbox's ids; names come from the sandbox's /etc"
    );

    let names = |entries: Vec<sandwatch_runner::EntryInfo>| -> Vec<String> {
        entries.into_iter().map(|e| e.path).collect()
    };
    assert_eq!(
        names(sandbox.list_dir("a", 1).await.unwrap()),
        [
            "/workspace/a/b",
            "/workspace/a/link-to-b",
            "/workspace/a/one.txt"
        ]
    );
    assert_eq!(
        names(sandbox.list_dir("/workspace/a", 2).await.unwrap()),
        [
            "/workspace/a/b",
            "/workspace/a/b/c",
            "/workspace/a/b/two.txt",
            "/workspace/a/link-to-b",
            "/workspace/a/one.txt"
        ],
        "depth 2: the children's children; the symlinked directory is not entered"
    );
    assert_eq!(sandbox.list_dir("a", 3).await.unwrap().len(), 6);

    // make_dir: parents too; AlreadyExists the second time.
    let made = sandbox.make_dir("new/deep/dir").await.unwrap();
    assert_eq!(
        (made.kind, made.path.as_str()),
        (EntryKind::Directory, "/workspace/new/deep/dir")
    );
    assert!(ws.join("new/deep/dir").is_dir());
    assert_eq!(
        fs::metadata(ws.join("new/deep")).unwrap().uid(),
        MAPPED_ROOT
    );
    let again = sandbox.make_dir("new/deep/dir").await.unwrap_err();
    assert!(
        matches!(again, FileError::AlreadyExists { .. }),
        "{again:?}"
    );

    // rename: a file into a directory that does not exist yet, then a directory.
    let moved = sandbox
        .rename("a/one.txt", "new/elsewhere/uno.txt")
        .await
        .unwrap();
    assert_eq!(
        (moved.path.as_str(), moved.size),
        ("/workspace/new/elsewhere/uno.txt", 1)
    );
    assert!(!ws.join("a/one.txt").exists());
    assert_eq!(
        fs::read_to_string(ws.join("new/elsewhere/uno.txt")).unwrap(),
        "1"
    );
    let moved = sandbox.rename("a/b", "a/bee").await.unwrap();
    assert_eq!(moved.kind, EntryKind::Directory);
    assert!(ws.join("a/bee/c/three.txt").exists());
    let missing = sandbox.rename("a/nothing", "a/x").await.unwrap_err();
    assert!(matches!(missing, FileError::NotFound { .. }), "{missing:?}");

    // remove: a symlink (not its target), a file, a whole tree.
    std::os::unix::fs::symlink("bee", ws.join("a/link-to-bee")).unwrap();
    sandbox.remove("a/link-to-bee").await.unwrap();
    assert!(ws.join("a/bee/c/three.txt").exists(), "the target stays");
    sandbox.remove("new/elsewhere/uno.txt").await.unwrap();
    assert!(!ws.join("new/elsewhere/uno.txt").exists());
    sandbox.remove("a").await.unwrap();
    assert!(!ws.join("a").exists(), "the whole tree");
    let gone = sandbox.remove("a").await.unwrap_err();
    assert!(matches!(gone, FileError::NotFound { .. }), "{gone:?}");

    // The kinds of failure keep their errno.
    let cases: Vec<(FileError, &str)> = vec![
        (sandbox.stat("no/such/file").await.unwrap_err(), "NotFound"),
        (
            sandbox.read_file("no-such-file").await.err().unwrap(),
            "NotFound",
        ),
        (
            sandbox.read_file("new").await.err().unwrap(),
            "IsADirectory",
        ),
        (
            sandbox
                .list_dir("new/deep/dir/../../../a-file", 1)
                .await
                .unwrap_err(),
            "NotFound",
        ),
        (
            sandbox.write_file("/usr/sw-test-file").await.err().unwrap(),
            "PermissionDenied",
        ),
        (
            sandbox.make_dir("/usr/sw-test-dir").await.unwrap_err(),
            "PermissionDenied",
        ),
    ];
    for (err, want) in cases {
        let got = format!("{err:?}");
        assert!(got.starts_with(want), "want {want}, got {got}");
    }
    fs::write(ws.join("plain"), "x").unwrap();
    let not_dir = sandbox.list_dir("plain", 1).await.unwrap_err();
    assert!(
        matches!(not_dir, FileError::NotADirectory { .. }),
        "{not_dir:?}"
    );
    let usr = sandbox.write_file("/usr/sw-test-file").await.err().unwrap();
    assert!(
        matches!(
            usr.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        ),
        "{usr}"
    );
    assert!(!Path::new("/usr/sw-test-file").exists());
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_write_beyond_the_file_size_limit_fails_with_efbig() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox(
        "files-fsize",
        "extends: default\nlimits: { file_size: 64k }\n",
    )
    .await;
    let err = within(
        "a write past limits.file_size",
        sandbox.write_file_from("big", vec![7u8; 1 << 20].as_slice()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EFBIG), "{err:?}");
    // The limit is the command's too; what fits was written.
    assert_eq!(sandbox.stat("big").await.unwrap().size, 64 << 10);
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_planted_symlink_does_not_reach_the_host() {
    let Fixture { sandbox, workspace } = new_sandbox("files-escape", "extends: default\n").await;
    let ws = workspace.path();
    // A secret the sandbox's root cannot see: a host path its tree does not have.
    let secret_dir = tempfile::Builder::new()
        .prefix("swt-secret")
        .tempdir_in("/var/tmp")
        .unwrap();
    let secret = secret_dir.path().join("secret.txt");
    fs::write(&secret, "host secret\n").unwrap();
    let host_shadow = fs::read("/etc/shadow").expect("the host's /etc/shadow (run as root)");
    std::os::unix::fs::symlink("/etc/shadow", ws.join("shadow")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/shadow", ws.join("shadow-rel")).unwrap();
    std::os::unix::fs::symlink(&secret, ws.join("secret")).unwrap();

    for (link, host_bytes) in [
        ("shadow", host_shadow.as_slice()),
        ("shadow-rel", host_shadow.as_slice()),
        ("secret", b"host secret\n".as_slice()),
    ] {
        let got = match sandbox.read_file(link).await {
            Ok((_, mut reader)) => {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).await.map(|_| bytes)
            }
            Err(e) => Err(e.into()),
        };
        eprintln!(
            "reading {link}: {:?}",
            got.as_ref().map(Vec::len).map_err(|e| e.to_string())
        );
        match got {
            Ok(bytes) => assert_ne!(bytes, host_bytes, "{link} read the host's file"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
                ),
                "{link}: {e}"
            ),
        }
        // Nor may a write through it land on the host.
        let _ = sandbox.write_file_from(link, &b"overwritten"[..]).await;
    }
    assert_eq!(fs::read("/etc/shadow").unwrap(), host_shadow);
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret\n");
    // The secret's directory does not exist in the sandbox.
    let err = sandbox.read_file("secret").await.err().unwrap();
    assert!(matches!(err, FileError::NotFound { .. }), "{err:?}");
    sandbox.destroy().await.unwrap();
}

/// The host pids in the sandbox's cgroup.
fn pids_in(sandbox: &Sandbox) -> Vec<i32> {
    sandbox_pids(sandbox.id())
}

#[tokio::test]
async fn a_watch_sees_a_commands_changes_and_ends_with_its_consumer() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("files-watch", "extends: default\n").await;
    sandbox.make_dir("watched/sub").await.unwrap();
    wait_for("only init in the cgroup", Duration::from_secs(10), || {
        pids_in(&sandbox).len() == 1
    });
    let mut watch = within("starting a watch", sandbox.watch_dir("watched", false))
        .await
        .unwrap();
    assert_eq!(pids_in(&sandbox).len(), 2, "init and the watcher");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox
        .run(
            &request(&[
                "sh",
                "-c",
                "echo hi > watched/new.txt; echo nested > watched/sub/deep.txt",
            ]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, 0, "{}", String::from_utf8_lossy(&err));
    let mut seen = Vec::new();
    while !(seen.contains(&("new.txt".to_string(), FsEventKind::Create))
        && seen.contains(&("new.txt".to_string(), FsEventKind::Write)))
    {
        let event = within("an event", watch.next())
            .await
            .expect("the watch goes on")
            .unwrap();
        seen.push((event.name, event.kind));
    }
    assert_eq!(
        seen.first(),
        Some(&("new.txt".to_string(), FsEventKind::Create)),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|(name, _)| name.contains("deep")),
        "not recursive: {seen:?}"
    );

    // Dropping the stream ends the watcher process.
    drop(watch);
    wait_for("the watcher to exit", Duration::from_secs(10), || {
        pids_in(&sandbox).len() == 1
    });

    // Recursive: a file in a subdirectory, and in one made after the watch began.
    let mut watch = sandbox.watch_dir("/workspace/watched", true).await.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    sandbox
        .run(
            &request(&[
                "sh",
                "-c",
                "touch watched/sub/x; mkdir watched/later; sleep 0.2; echo y > watched/later/y; rm watched/new.txt; mv watched/sub/x watched/sub/z; chmod 600 watched/sub/z",
            ]),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
    let want = [
        ("sub/x", FsEventKind::Create),
        ("later", FsEventKind::Create),
        ("later/y", FsEventKind::Create),
        ("later/y", FsEventKind::Write),
        ("new.txt", FsEventKind::Remove),
        ("sub/x", FsEventKind::Rename),
        ("sub/z", FsEventKind::Create),
        ("sub/z", FsEventKind::Chmod),
    ];
    let mut seen = Vec::new();
    while !want
        .iter()
        .all(|(n, k)| seen.contains(&(n.to_string(), *k)))
    {
        let event = within(&format!("more events (so far {seen:?})"), watch.next())
            .await
            .expect("the watch goes on")
            .unwrap();
        seen.push((event.name, event.kind));
    }

    // Removing the watched directory ends the stream.
    sandbox.remove("watched").await.unwrap();
    loop {
        match within("the end of the watch", watch.next()).await {
            None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the watch failed: {e}"),
        }
    }
    wait_for("the watcher to exit", Duration::from_secs(10), || {
        pids_in(&sandbox).len() == 1
    });
    let missing = sandbox.watch_dir("watched", false).await.err().unwrap();
    assert!(matches!(missing, FileError::NotFound { .. }), "{missing:?}");
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn operations_run_concurrently_wait_while_frozen_and_fail_once_ended() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("files-life", "extends: default\n").await;
    let sandbox = Arc::new(sandbox);
    for i in 0..20 {
        sandbox
            .write_file_from(format!("f{i}"), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    // Many at once, beside a running command.
    let busy = sandbox
        .spawn(&request(&["sleep", "30"]))
        .await
        .unwrap()
        .unwrap();
    let stats: Vec<_> = (0..20)
        .map(|i| {
            let sb = sandbox.clone();
            tokio::spawn(async move { sb.stat(format!("f{i}")).await })
        })
        .collect();
    for (i, task) in stats.into_iter().enumerate() {
        let info = within("a concurrent stat", task).await.unwrap().unwrap();
        assert_eq!(info.name, format!("f{i}"));
    }

    // About one fork of init per operation: the median of 200 stats.
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        sandbox.stat("f1").await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "stat: median {:?}, p90 {:?}, min {:?}",
        times[100], times[180], times[0]
    );
    assert!(
        times[100] < Duration::from_millis(50),
        "median {:?}",
        times[100]
    );

    // Frozen: the operation waits, and completes once thawed.
    sandbox.freeze(true).unwrap();
    let pending = {
        let sb = sandbox.clone();
        tokio::spawn(async move { sb.stat("f2").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "a frozen sandbox answers nothing");
    sandbox.freeze(false).unwrap();
    let info = within("the stat after thaw", pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.name, "f2");

    // Ended: in flight (a watch) and afterwards.
    let mut watch = sandbox.watch_dir(".", true).await.unwrap();
    sandbox.kill(EndReason::Order).unwrap();
    match within("the watch's end", watch.next()).await {
        Some(Err(FileError::Ended(id))) => assert_eq!(id, sandbox.id()),
        other => panic!("the watch of a killed sandbox: {other:?}"),
    }
    within("the sandbox's end", sandbox.ended()).await;
    let err = sandbox.stat("f1").await.unwrap_err();
    assert!(matches!(err, FileError::Ended(_)), "{err:?}");
    let busy = busy.wait().await;
    assert!(
        matches!(busy, None | Some((None, Some(libc::SIGKILL)))),
        "{busy:?}"
    );
    let sandbox = Arc::try_unwrap(sandbox).ok().expect("no task holds it");
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_big_file_streams_both_ways() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("files-big", "extends: default\n").await;
    const SIZE: u64 = 100 << 20;
    let started = Instant::now();
    let info = within(
        "writing 100 MiB",
        sandbox.write_file_from("big.bin", tokio::io::repeat(0xa5).take(SIZE)),
    )
    .await
    .unwrap();
    let write_time = started.elapsed();
    assert_eq!(info.size, SIZE);
    let started = Instant::now();
    let (_, mut reader) = sandbox.read_file("big.bin").await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut all_a5) = (0u64, true);
    loop {
        let n = within("reading", reader.read(&mut buf)).await.unwrap();
        if n == 0 {
            break;
        }
        all_a5 &= buf[..n].iter().all(|&b| b == 0xa5);
        total += n as u64;
    }
    let read_time = started.elapsed();
    assert_eq!((total, all_a5), (SIZE, true));
    eprintln!(
        "100 MiB: written in {write_time:?} ({:.0} MiB/s), read in {read_time:?} ({:.0} MiB/s)",
        100.0 / write_time.as_secs_f64(),
        100.0 / read_time.as_secs_f64()
    );
    sandbox.destroy().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Stale sandboxes

const STALE_ENV: &str = "SWT_STALE_SANDBOX";

/// A helper process for [`a_sandbox_left_by_a_dead_runner_is_returned_with_its_labels`]: it
/// creates a labelled sandbox, says so, and waits to be SIGKILLed. Run only by that test.
#[tokio::test]
#[ignore = "a helper process of a_sandbox_left_by_a_dead_runner_is_returned_with_its_labels"]
async fn stale_runner_helper() {
    let spec = std::env::var(STALE_ENV)
        .expect("run by a_sandbox_left_by_a_dead_runner_is_returned_with_its_labels only");
    let (id, runtime) = spec.split_once(':').unwrap();
    let policy = SandboxPolicy::from_yaml("stale", "profile: stale-profile\n").unwrap();
    let mut opts = SandboxOptions::new(id, policy);
    opts.runtime_dir = PathBuf::from(runtime);
    opts.init_exe = sandwatch_bin();
    opts.labels = vec![
        ("template".into(), "base".into()),
        ("owner".into(), "team a".into()),
    ];
    let root = CgroupRoot::discover().unwrap();
    let sandbox = Sandbox::create(&root, opts).await.unwrap();
    let _sleep = sandbox
        .spawn(&request(&["sleep", "100"]))
        .await
        .unwrap()
        .unwrap();
    println!("SWT-READY");
    tokio::time::sleep(Duration::from_secs(120)).await;
    panic!("not killed");
}

/// Kills the helper (a failed test too) and cleans what it left.
struct Helper {
    child: Child,
    runtime: PathBuf,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(root) = CgroupRoot::discover() {
            sandwatch_runner::sandbox::clean_stale(&root, &self.runtime);
        }
    }
}

#[test]
fn a_sandbox_left_by_a_dead_runner_is_returned_with_its_labels() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A runtime directory of its own: no parallel test's clean_stale takes this sandbox.
    let runtime = dir.path().join("runtime");
    let id = unique_id("stale-labels");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["stale_runner_helper", "--exact", "--ignored", "--nocapture"])
        .env(STALE_ENV, format!("{id}:{}", runtime.display()))
        .env("SANDWATCH_BIN", sandwatch_bin())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut helper = Helper {
        child,
        runtime: runtime.clone(),
    };
    let stdout = helper.child.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim() == "SWT-READY")
    });
    wait_for("the helper's sandbox", PATIENCE, || ready.is_finished());
    assert!(ready.join().unwrap(), "the helper made its sandbox");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(runtime.join(&id).join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["profile"], "stale-profile");
    let pids = sandbox_pids(&id);
    assert!(pids.len() >= 2, "init and sleep: {pids:?}");

    helper.child.kill().unwrap();
    helper.child.wait().unwrap();
    wait_for(
        "the sandbox to die with its runner",
        Duration::from_secs(5),
        || sandbox_pids(&id).is_empty(),
    );
    let root = CgroupRoot::discover().unwrap();
    let stale = sandwatch_runner::sandbox::clean_stale(&root, &runtime);
    let policy = SandboxPolicy::from_yaml("stale", "profile: stale-profile\n").unwrap();
    assert_eq!(
        stale,
        [sandwatch_runner::sandbox::StaleSandbox {
            id: id.clone(),
            policy_hash: Some(sandwatch_runner::sandbox::policy_hash(&policy)),
            profile: Some("stale-profile".into()),
            labels: vec![
                ("template".into(), "base".into()),
                ("owner".into(), "team a".into())
            ],
        }]
    );
    for d in sandbox_cgroups(&id) {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    assert!(!runtime.join(&id).exists());
}
