//! The Landlock ruleset a sandboxed command runs under: which files it may read, execute and
//! write, and that it may neither signal processes nor connect to abstract unix sockets outside
//! its Landlock domain. It is applied to the command's own process right before `execve`, after
//! `pivot_root`, so every path here is a path inside the sandbox.
//!
//! Each [`FsAccess::restrict_self`] call makes a new domain, shared only by the processes the
//! caller starts afterwards. Two commands restricted separately are outside each other's domain:
//! one cannot signal the other, nor reach its abstract sockets (pathname sockets, pipes and
//! loopback TCP are not scoped). Where commands of one sandbox must do that, restrict once in a
//! process they all descend from.
//!
//! Landlock is defence in depth: the mount layer already shows the command only what the policy
//! allows (read-only binds, writable workspace and volumes, masked forbidden paths). If a mount is
//! ever wrong, these rules still hold.
//!
//! Rights per path class (what is not granted is denied):
//!
//! | paths | rights |
//! |---|---|
//! | `/` | list directories |
//! | `read_only_paths` | read files, list directories, execute |
//! | `writable_paths`, volume mount targets | the above, plus write, truncate, create and remove files, directories, symlinks, sockets and fifos, rename and link across directories |
//! | `/dev/shm` | as writable, without execute |
//! | `/proc` | read files, list directories |
//! | `/dev/null`, `/dev/zero`, `/dev/full` | read, write |
//! | `/dev/tty`, `/dev/pts`, `/dev/ptmx` | read, write, device ioctls |
//! | `/dev/random`, `/dev/urandom` | read |
//!
//! Rights are inherited by everything beneath a path and a rule can only add rights, so:
//! - listing on `/` reaches every directory of the sandbox's root: names are visible everywhere,
//!   file contents only where a rule allows them. Inside the sandbox the root holds only what the
//!   mount layer put there, so a listing shows the policy, not the host;
//! - a forbidden path gets no rule, and neither does anything beneath it, even if the policy also
//!   lists it as readable or writable; but Landlock cannot take rights away from a path beneath an
//!   allowed one (`/proc/kcore` under `/proc`, a read-only directory inside `/workspace`). The
//!   mount layer masks those.
//!
//! Landlock never restricts `stat`, `chdir`, `readlink`, `O_PATH` opens or metadata changes
//! (`chmod`, `chown`, `utime`, xattrs): read-only mounts stop the last ones.

use std::{fmt, path::PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, make_bitflags,
};
use nix::{
    errno::Errno,
    fcntl::{OFlag, open},
    sys::stat::{Mode, SFlag, fstat},
};

use crate::policy::FilesystemPolicy;

/// The newest ABI whose rights were tested here (Linux 6.15+). ABI 7 adds only audit-log flags
/// to ABI 6; their defaults are kept: denials before `execve` are logged (they would be ours),
/// the command's own denials are not, since the eBPF probes already record every failed open
/// and exec, and a job must not be able to flood the host's audit log.
const TARGET_ABI: ABI = ABI::V7;

const LIST: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadDir});
const READ_EXEC: BitFlags<AccessFs> = make_bitflags!(AccessFs::{Execute | ReadFile | ReadDir});
/// Neither device nodes (nothing a job does needs one, and a user namespace cannot make them)
/// nor device ioctls (no devices live in a workspace).
const READ_WRITE: BitFlags<AccessFs> = make_bitflags!(AccessFs::{
    Execute | ReadFile | ReadDir | WriteFile | Truncate | MakeReg | MakeDir | MakeSym | MakeSock
        | MakeFifo | RemoveFile | RemoveDir | Refer
});
/// Shared memory is data; nothing legitimate runs programs from it.
const SHM: BitFlags<AccessFs> = make_bitflags!(AccessFs::{
    ReadFile | ReadDir | WriteFile | Truncate | MakeReg | MakeDir | MakeSym | MakeSock | MakeFifo
        | RemoveFile | RemoveDir | Refer
});
/// No writes: the writable files of `/proc/self` (`oom_score_adj`, `uid_map`, `attr/*`, ...)
/// only serve process managers and nested sandboxes. Reopening `/proc/self/fd/N` is checked
/// against the file it points to, not against `/proc`, so `/dev/stdout` still works.
const PROC: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadFile | ReadDir});
const DEV_RW: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadFile | WriteFile});
/// Terminals are useless without their ioctls (`isatty`, window size, opening a pty).
const TTY: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadFile | WriteFile | IoctlDev});
const DEV_RO: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadFile});

/// What every program needs to run, whatever the policy says.
const RUNTIME: [(&str, BitFlags<AccessFs>); 11] = [
    ("/", LIST),
    ("/proc", PROC),
    ("/dev/null", DEV_RW),
    ("/dev/zero", DEV_RW),
    ("/dev/full", DEV_RW),
    ("/dev/tty", TTY),
    ("/dev/pts", TTY),
    ("/dev/ptmx", TTY),
    ("/dev/random", DEV_RO),
    ("/dev/urandom", DEV_RO),
    ("/dev/shm", SHM),
];

/// The filesystem access a sandboxed command keeps, as Landlock rules (paths as seen inside the
/// sandbox). Built once per sandbox; [`FsAccess::restrict_self`] applies it per command.
#[derive(Debug, Clone, Default)]
pub struct FsAccess {
    /// One entry per path; none lies at or beneath a forbidden path.
    rules: Vec<(PathBuf, BitFlags<AccessFs>)>,
    forbidden: Vec<PathBuf>,
}

impl FsAccess {
    /// Nothing allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy's paths in their classes, plus what every program needs (see the module doc).
    pub fn from_policy(fs: &FilesystemPolicy) -> Self {
        let mut access = fs
            .forbidden_paths
            .iter()
            .fold(Self::new(), |a, p| a.forbidden(p));
        for (path, rights) in RUNTIME {
            access = access.allow(path.into(), rights);
        }
        for p in &fs.read_only_paths {
            access = access.read_only(p);
        }
        for p in fs.writable_paths.iter().chain(fs.volume_mounts.values()) {
            access = access.writable(p);
        }
        access
    }

    /// Read files, list directories and execute at and beneath `path`.
    pub fn read_only(self, path: impl Into<PathBuf>) -> Self {
        self.allow(path.into(), READ_EXEC)
    }

    /// Everything but device nodes and device ioctls at and beneath `path`.
    pub fn writable(self, path: impl Into<PathBuf>) -> Self {
        self.allow(path.into(), READ_WRITE)
    }

    /// No rule at or beneath `path`, whether added before or after. Cannot deny it beneath
    /// another rule's path (see the module doc).
    pub fn forbidden(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.rules.retain(|(p, _)| !p.starts_with(&path));
        self.forbidden.push(path);
        self
    }

    fn allow(mut self, path: PathBuf, rights: BitFlags<AccessFs>) -> Self {
        if self.forbidden.iter().any(|f| path.starts_with(f)) {
            return self;
        }
        // Landlock would OR two rules on one inode anyway; merging saves an open per duplicate.
        match self.rules.iter_mut().find(|(p, _)| *p == path) {
            Some((_, r)) => *r |= rights,
            None => self.rules.push((path, rights)),
        }
        self
    }

    /// Restricts the calling thread and the processes it starts from now on, with the best ABI
    /// the kernel has, up to the one tested here. Sets no_new_privs (Landlock requires it
    /// without CAP_SYS_ADMIN). Paths that do not exist get no rule. Each call stacks a new domain
    /// (at most 16 per thread; see the module doc for what separate domains cannot do).
    pub fn restrict_self(&self) -> Result<FsAccessStatus, FsAccessError> {
        let mut ruleset = Ruleset::default()
            // ABI 1 has no refer right, so under it every rename or link across directories fails
            // with EXDEV, writable paths included (git, package managers). A sandbox without
            // Landlock behind its mounts beats one where those tools break: enforce nothing there.
            .set_compatibility(CompatLevel::SoftRequirement)
            .handle_access(AccessFs::Refer)
            .and_then(|r| {
                r.set_compatibility(CompatLevel::BestEffort)
                    .handle_access(AccessFs::from_all(TARGET_ABI))
            })
            .and_then(|r| r.scope(Scope::from_all(TARGET_ABI)))
            .and_then(Ruleset::create)
            .map_err(FsAccessError::Create)?;
        let file_rights = AccessFs::from_file(TARGET_ABI);
        for (path, rights) in &self.rules {
            let path_err = |action, source| FsAccessError::Path {
                action,
                path: path.clone(),
                source,
            };
            // Follows symlinks: the rule belongs to what the command would reach.
            let fd = match open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => {
                    tracing::debug!(path = %path.display(), "landlock: no such path, no rule");
                    continue;
                }
                Err(e) => return Err(path_err("open", e)),
            };
            let mode = fstat(&fd).map_err(|e| path_err("stat", e))?.st_mode;
            // The kernel rejects directory rights on a file rule.
            let rights = if SFlag::from_bits_truncate(mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                *rights
            } else {
                *rights & file_rights
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(|source| FsAccessError::AddRule {
                    path: path.clone(),
                    source,
                })?;
        }
        let status = ruleset.restrict_self().map_err(FsAccessError::Restrict)?;
        Ok(FsAccessStatus::new(status.ruleset, status.landlock))
    }
}

/// What the kernel enforced. The caller warns on anything but `Full`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsAccessStatus {
    /// Every right and scope of the module doc, with this kernel ABI.
    Full { abi: ABI },
    /// The kernel's ABI lacks these rights or scopes; what they guard stays unrestricted, the
    /// rest is enforced.
    Partial { abi: ABI, missing: Vec<String> },
    /// Nothing; only no_new_privs was set.
    NotEnforced { reason: &'static str },
}

impl FsAccessStatus {
    fn new(ruleset: RulesetStatus, landlock: LandlockStatus) -> Self {
        let abi = match landlock {
            LandlockStatus::NotImplemented => {
                return Self::NotEnforced {
                    reason: "the kernel is built without Landlock",
                };
            }
            LandlockStatus::NotEnabled => {
                return Self::NotEnforced {
                    reason: "Landlock is not enabled (missing from the kernel's lsm= list)",
                };
            }
            LandlockStatus::Available { effective_abi, .. } => effective_abi,
        };
        if ruleset == RulesetStatus::NotEnforced {
            // The soft requirement on the refer right is the only way to get here.
            return Self::NotEnforced {
                reason: "Landlock ABI 1 cannot allow renames and links across directories",
            };
        }
        let missing_fs = AccessFs::from_all(TARGET_ABI) & !AccessFs::from_all(abi);
        let missing_scopes = Scope::from_all(TARGET_ABI) & !Scope::from_all(abi);
        let missing: Vec<String> = missing_fs
            .iter()
            .map(|r| format!("{r:?}"))
            .chain(missing_scopes.iter().map(|s| format!("scope {s:?}")))
            .collect();
        if missing.is_empty() {
            Self::Full { abi }
        } else {
            Self::Partial { abi, missing }
        }
    }
}

impl fmt::Display for FsAccessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { abi } => write!(f, "landlock enforced (ABI {abi})"),
            Self::Partial { abi, missing } => write!(
                f,
                "landlock partially enforced: kernel ABI {abi} lacks {}, which stay unrestricted",
                missing.join(", ")
            ),
            Self::NotEnforced { reason } => write!(f, "landlock not enforced: {reason}"),
        }
    }
}

/// Why the restriction could not be applied; the command must not start without it.
#[derive(Debug, thiserror::Error)]
pub enum FsAccessError {
    #[error("landlock: cannot create the ruleset: {0}")]
    Create(#[source] RulesetError),
    #[error("landlock: cannot {action} {path} for its rule: {source}")]
    Path {
        action: &'static str,
        path: PathBuf,
        source: Errno,
    },
    #[error("landlock: cannot add the rule for {path}: {source}")]
    AddRule { path: PathBuf, source: RulesetError },
    #[error("landlock: cannot restrict the process: {0}")]
    Restrict(#[source] RulesetError),
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        fs,
        io::{self, Read, Write},
        os::{
            fd::AsRawFd,
            linux::net::SocketAddrExt,
            unix::{
                fs::PermissionsExt,
                net::{SocketAddr, UnixListener, UnixStream},
            },
        },
        path::Path,
        process::Command,
        thread,
        time::{Duration, Instant},
    };

    use nix::{sys::signal::kill, unistd::Pid};

    use super::*;
    use crate::policy::SandboxPolicy;

    /// Runs `f` on a fresh thread restricted by `access`: Landlock binds only the calling thread,
    /// so the test harness stays unrestricted.
    fn restricted<T: Send + 'static>(
        access: FsAccess,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (FsAccessStatus, T) {
        thread::spawn(move || {
            let status = access.restrict_self().expect("restrict_self");
            (status, f())
        })
        .join()
        .expect("the restricted thread's checks")
    }

    fn errno<T>(r: io::Result<T>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    /// `a`, `b`, `c`, `d` under a temporary directory, each holding `file` ("x") and an
    /// executable copy of `true`.
    fn layout() -> (tempfile::TempDir, [PathBuf; 4]) {
        let dir = tempfile::tempdir().unwrap();
        let subs = ["a", "b", "c", "d"].map(|s| dir.path().join(s));
        for sub in &subs {
            fs::create_dir(sub).unwrap();
            fs::write(sub.join("file"), "x").unwrap();
            fs::copy("/usr/bin/true", sub.join("true")).unwrap();
            fs::set_permissions(sub.join("true"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        (dir, subs)
    }

    /// Where `true`'s loader and libraries live on this host (merged /usr or not).
    fn with_system_libraries(access: FsAccess) -> FsAccess {
        access
            .read_only("/usr")
            .read_only("/lib")
            .read_only("/lib64")
    }

    #[test]
    fn rights_follow_the_path_class() {
        let (_dir, [a, b, c, d]) = layout();
        let access = FsAccess::new()
            .read_only(&a)
            .writable(&b)
            .read_only(&c)
            .forbidden(&c);
        let (status, ()) = restricted(access, move || {
            assert_eq!(fs::read_to_string(a.join("file")).unwrap(), "x");
            assert_eq!(fs::read_dir(&a).unwrap().count(), 2);
            for denied in [
                fs::write(a.join("file"), "y"),
                fs::write(a.join("new"), "y"),
                fs::remove_file(a.join("file")),
                fs::create_dir(a.join("sub")),
            ] {
                assert_eq!(errno(denied), Some(libc::EACCES));
            }

            fs::write(b.join("file"), "truncated and rewritten").unwrap();
            fs::write(b.join("new"), "y").unwrap();
            fs::create_dir(b.join("sub")).unwrap();
            fs::rename(b.join("new"), b.join("sub/moved")).unwrap();
            fs::hard_link(b.join("file"), b.join("sub/link")).unwrap();
            std::os::unix::fs::symlink("moved", b.join("sub/sym")).unwrap();
            fs::remove_dir_all(b.join("sub")).unwrap();

            // Forbidden wins over read_only; unlisted gets nothing, not even a listing.
            for dir in [&c, &d] {
                assert_eq!(errno(fs::read(dir.join("file"))), Some(libc::EACCES));
                assert_eq!(errno(fs::read_dir(dir)), Some(libc::EACCES));
                assert_eq!(errno(fs::write(dir.join("new"), "")), Some(libc::EACCES));
            }
            // Moving a file out of a writable path into an unlisted one is a create there.
            assert_eq!(
                errno(fs::rename(b.join("file"), d.join("stolen"))),
                Some(libc::EACCES)
            );
        });
        assert!(matches!(status, FsAccessStatus::Full { .. }), "{status}");
    }

    #[test]
    fn execute_needs_a_rule_for_the_program() {
        let (_dir, [a, b, _, d]) = layout();
        let access = with_system_libraries(FsAccess::new())
            .read_only(&a)
            .writable(&b);
        let (_, ()) = restricted(access, move || {
            assert!(Command::new(a.join("true")).status().unwrap().success());
            assert!(Command::new(b.join("true")).status().unwrap().success());
            assert_eq!(
                errno(Command::new(d.join("true")).status()),
                Some(libc::EACCES)
            );
        });
    }

    #[test]
    fn paths_that_do_not_exist_get_no_rule() {
        let (dir, [a, ..]) = layout();
        let access = FsAccess::new()
            .read_only(dir.path().join("nowhere"))
            .writable("/nonexistent/volume")
            // ENOTDIR: a path through a file.
            .read_only(a.join("file/below"))
            .read_only(&a);
        let (status, text) = restricted(access, move || fs::read_to_string(a.join("file")));
        assert_eq!(text.unwrap(), "x");
        assert!(matches!(status, FsAccessStatus::Full { .. }), "{status}");
    }

    fn rights(access: &FsAccess, path: &str) -> Option<BitFlags<AccessFs>> {
        let path = Path::new(path);
        access
            .rules
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, r)| *r)
    }

    #[test]
    fn the_policy_maps_to_rules() {
        let policy = FilesystemPolicy {
            read_only_paths: ["/usr", "/srv/secret/keys", "/proc/sys"]
                .map(PathBuf::from)
                .into(),
            writable_paths: ["/workspace", "/tmp"].map(PathBuf::from).into(),
            forbidden_paths: ["/srv/secret", "/proc/kcore", "/dev/mem"]
                .map(PathBuf::from)
                .into(),
            volume_mounts: BTreeMap::from([
                ("cache".into(), "/cache".into()),
                ("scratch".into(), "/tmp/".into()),
            ]),
            tmpfs_size: None,
        };
        let access = FsAccess::from_policy(&policy);
        assert_eq!(rights(&access, "/"), Some(LIST));
        assert_eq!(rights(&access, "/usr"), Some(READ_EXEC));
        for w in ["/workspace", "/tmp", "/cache"] {
            assert_eq!(rights(&access, w), Some(READ_WRITE), "{w}");
        }
        assert_eq!(
            access
                .rules
                .iter()
                .filter(|(p, _)| p == Path::new("/tmp"))
                .count(),
            1,
            "one rule per path"
        );
        assert_eq!(
            rights(&access, "/srv/secret/keys"),
            None,
            "beneath a forbidden path"
        );
        // Cannot be carved out of /proc: the mount layer masks it.
        assert_eq!(rights(&access, "/proc"), Some(PROC));
        assert_eq!(rights(&access, "/proc/sys"), Some(READ_EXEC));
        assert_eq!(rights(&access, "/dev/pts"), Some(TTY));
        assert_eq!(rights(&access, "/dev/urandom"), Some(DEV_RO));
        assert_eq!(rights(&access, "/dev/shm"), Some(SHM));
        assert!(
            (READ_WRITE & (AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::IoctlDev))
                .is_empty()
        );
        assert!(
            READ_WRITE.contains(SHM) && (READ_WRITE & !SHM) == AccessFs::Execute,
            "/dev/shm is writable, not executable"
        );
    }

    /// The policy's rules on this host's real paths: programs run, reach their devices and
    /// /proc, and nothing else.
    #[test]
    fn a_program_runs_with_the_policy_and_no_more() {
        let (_dir, [a, b, c, _]) = layout();
        let policy = FilesystemPolicy {
            read_only_paths: vec![a.clone(), "/usr".into(), "/lib".into(), "/lib64".into()],
            writable_paths: vec![b.clone()],
            forbidden_paths: vec![c],
            volume_mounts: BTreeMap::new(),
            tmpfs_size: None,
        };
        let shm = PathBuf::from(format!(
            "/dev/shm/sandwatch-fs-access-{}",
            std::process::id()
        ));
        let (status, ()) = restricted(FsAccess::from_policy(&policy), move || {
            let out = Command::new("/usr/bin/sh")
                .arg("-c")
                .arg(format!(
                    "ls / >/dev/null && echo hi >/dev/null && head -c 8 /dev/urandom | wc -c \
                     && cat {a}/file && cd {b} && echo y >new && mv new renamed && rm renamed \
                     && echo . >/dev/stdout",
                    a = a.display(),
                    b = b.display()
                ))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "8\nx.\n");

            assert!(fs::read_to_string("/proc/self/status").is_ok());
            assert_eq!(
                errno(fs::write("/proc/self/oom_score_adj", "500")),
                Some(libc::EACCES)
            );
            assert_eq!(
                errno(fs::OpenOptions::new().write(true).open("/dev/urandom")),
                Some(libc::EACCES)
            );
            assert_eq!(errno(fs::read("/etc/passwd")), Some(libc::EACCES));
            // Listing is inherited from `/`; contents are not.
            assert!(fs::read_dir("/etc").is_ok());
            // Reopening through /proc is checked against the file itself.
            let read_only = fs::File::open(a.join("file")).unwrap();
            let via_proc = format!("/proc/self/fd/{}", read_only.as_raw_fd());
            assert_eq!(fs::read_to_string(&via_proc).unwrap(), "x");
            assert_eq!(
                errno(fs::OpenOptions::new().append(true).open(&via_proc)),
                Some(libc::EACCES)
            );

            let mut zero = [1u8; 4];
            fs::File::open("/dev/zero")
                .unwrap()
                .read_exact(&mut zero)
                .unwrap();
            assert_eq!(zero, [0; 4]);
            fs::File::create(&shm).unwrap().write_all(b"s").unwrap();
            fs::remove_file(&shm).unwrap();
        });
        assert!(matches!(status, FsAccessStatus::Full { .. }), "{status}");
    }

    #[test]
    fn signals_and_abstract_sockets_stay_inside() {
        let outside = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();
        let outside_pid = Pid::from_raw(outside.id() as i32);
        let name = format!("sandwatch-fs-access-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _listener = UnixListener::bind_addr(&addr).unwrap();
        let access = with_system_libraries(FsAccess::new());
        let (_, ()) = restricted(access.clone(), move || {
            assert_eq!(kill(outside_pid, None), Err(Errno::EPERM));
            assert_eq!(errno(UnixStream::connect_addr(&addr)), Some(libc::EPERM));
            // Its own children are in its domain.
            let mut inside = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();
            assert_eq!(kill(Pid::from_raw(inside.id() as i32), None), Ok(()));
            inside.kill().unwrap();
            inside.wait().unwrap();
        });
        // Same rules, another restrict_self: another domain.
        let (_, earlier) = restricted(access.clone(), || {
            Command::new("/usr/bin/sleep").arg("30").spawn().unwrap()
        });
        let earlier_pid = Pid::from_raw(earlier.id() as i32);
        let (_, ()) = restricted(access, move || {
            assert_eq!(kill(earlier_pid, None), Err(Errno::EPERM));
        });
        for mut child in [outside, earlier] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn the_status_names_what_an_older_kernel_lacks() {
        let kernel = |abi| LandlockStatus::Available {
            effective_abi: abi,
            kernel_abi: None,
        };
        let status = |ruleset, landlock| FsAccessStatus::new(ruleset, landlock);
        assert_eq!(
            status(RulesetStatus::FullyEnforced, kernel(ABI::V7)),
            FsAccessStatus::Full { abi: ABI::V7 }
        );
        assert_eq!(
            status(RulesetStatus::FullyEnforced, kernel(ABI::V9)),
            FsAccessStatus::Full { abi: ABI::V9 }
        );
        let partial = status(RulesetStatus::PartiallyEnforced, kernel(ABI::V3));
        assert_eq!(
            partial,
            FsAccessStatus::Partial {
                abi: ABI::V3,
                missing: ["IoctlDev", "scope AbstractUnixSocket", "scope Signal"]
                    .map(String::from)
                    .into()
            }
        );
        assert_eq!(
            partial.to_string(),
            "landlock partially enforced: kernel ABI 3 lacks IoctlDev, scope AbstractUnixSocket, \
             scope Signal, which stay unrestricted"
        );
        for (ruleset, landlock) in [
            (RulesetStatus::NotEnforced, kernel(ABI::V1)),
            (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled),
            (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented),
        ] {
            assert!(matches!(
                status(ruleset, landlock),
                FsAccessStatus::NotEnforced { .. }
            ));
        }
    }

    /// Not an assertion: the number goes into the log (`--nocapture`).
    #[test]
    fn restrict_self_timing() {
        let policy = SandboxPolicy::preset("default").unwrap();
        let started = Instant::now();
        let access = FsAccess::from_policy(&policy.filesystem);
        let prepared = started.elapsed();
        let mut times: Vec<Duration> = (0..50)
            .map(|_| {
                let access = access.clone();
                thread::spawn(move || {
                    let started = Instant::now();
                    access.restrict_self().unwrap();
                    started.elapsed()
                })
                .join()
                .unwrap()
            })
            .collect();
        times.sort();
        eprintln!(
            "fs_access: from_policy {prepared:?}; restrict_self with {} rules: min {:?}, median {:?}, max {:?} (50 runs)",
            access.rules.len(),
            times[0],
            times[25],
            times[49]
        );
    }
}
