//! The sandbox's filesystem: a minimal root assembled in init's private mount namespace, then
//! made the root with `pivot_root`.
//!
//! Layout: a small read-only tmpfs as `/`; the policy's read-only paths bound from the host and
//! remounted read-only (symlinks such as a merged-usr `/bin -> usr/bin` are recreated, not
//! followed); volumes (the workspace) bound read-write; other writable paths and `/tmp` as
//! private tmpfs; a fresh `/proc` with `/proc/sys` and friends read-only and kernel-revealing
//! files masked; a minimal `/dev`; no `/sys`. Forbidden paths that exist in that tree are masked
//! (an empty read-only tmpfs over a directory, `/dev/null` over a file): Landlock cannot carve
//! a path out of an allowed parent, mounts can.
//!
//! Volumes are the one part made outside: the runner, still root on the host, clones each
//! volume's directory into a detached mount ([`detached_volume`]) and hands init the mount's
//! descriptor. Init, an unprivileged host uid, could not bind a path it cannot walk to (a
//! workspace below a 0700 `/root`); moving a mount it was given needs no path lookup.

use std::{
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{
            ffi::OsStrExt as _,
            fs::{PermissionsExt as _, symlink},
        },
    },
    path::{Path, PathBuf},
};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::{policy::FilesystemPolicy, protocol::SetupPlan};

/// A failed setup step, named for the runner's error message.
#[derive(Debug)]
pub struct MountError {
    pub step: String,
    pub error: io::Error,
}

impl MountError {
    fn at(step: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Self {
        let step = step.into();
        move |e| Self {
            step,
            error: io::Error::from(e),
        }
    }
    fn io(step: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let step = step.into();
        move |error| Self { step, error }
    }
}

type Result<T> = std::result::Result<T, MountError>;

/// Files of `/proc` that reveal or change the kernel: masked with `/dev/null`.
const PROC_MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "sysrq-trigger",
];
/// Directories of `/proc` that hold host-wide knobs: read-only.
const PROC_READ_ONLY: &[&str] = &["sys", "bus", "fs", "irq"];
/// Directories of `/proc` about host hardware: hidden under an empty tmpfs.
const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi", "asound"];
/// Device nodes bound from the host's `/dev`: the harmless ones.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn nodev_nosuid() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV
}

fn mount_tmpfs(target: &Path, options: &str, flags: MsFlags) -> Result<()> {
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options)).map_err(MountError::at(
        format!("mount tmpfs on {}", target.display()),
    ))
}

fn bind(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(MountError::at(format!(
        "bind {} to {}",
        source.display(),
        target.display()
    )))
}

/// Remounts a bind mount read-only. A mount inherited from the host keeps its locked flags
/// (nosuid, nodev, noexec, atime): a remount that drops one fails with EPERM, so they are
/// read back and repeated.
fn remount_read_only(target: &Path, extra: MsFlags) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(target)
        .map_err(MountError::at(format!("statvfs {}", target.display())))?;
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra;
    for (have, want) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(have) {
            flags |= want;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(MountError::at(format!(
        "remount {} read-only",
        target.display()
    )))
}

/// `staging` + an absolute in-sandbox path.
fn inside(staging: &Path, path: &Path) -> PathBuf {
    staging.join(path.strip_prefix("/").unwrap_or(path))
}

fn mkdirs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(MountError::io(format!("create {}", path.display())))
}

fn touch(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        mkdirs(parent)?;
    }
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(MountError::io(format!("create {}", path.display())))
}

/// Binds a host path at the same place inside, read-only; a host symlink becomes the same
/// symlink. Paths the host lacks are skipped: presets list directories some systems do not have.
/// A path init cannot reach (below a directory its unprivileged uid may not enter) is an error,
/// not a silent hole in the sandbox's tree.
fn bind_read_only(staging: &Path, path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!("read-only path {} is not on this host", path.display());
            return Ok(());
        }
        Err(e) => {
            return Err(MountError::io(format!(
                "reach read-only path {} as the sandbox's unprivileged uid",
                path.display()
            ))(e));
        }
    };
    let target = inside(staging, path);
    if meta.file_type().is_symlink() {
        let link =
            fs::read_link(path).map_err(MountError::io(format!("readlink {}", path.display())))?;
        if let Some(parent) = target.parent() {
            mkdirs(parent)?;
        }
        return match symlink(&link, &target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(MountError::io(format!("symlink {}", target.display()))(e))
            }
            _ => Ok(()),
        };
    }
    if meta.is_dir() {
        mkdirs(&target)?;
    } else {
        touch(&target)?;
    }
    bind(path, &target)?;
    remount_read_only(&target, nodev_nosuid())
}

/// Hides a path of the new tree, if it is there.
fn mask(staging: &Path, path: &Path) -> Result<()> {
    let target = inside(staging, path);
    let Ok(meta) = fs::symlink_metadata(&target) else {
        return Ok(());
    };
    if meta.is_dir() {
        mount_tmpfs(
            &target,
            "mode=000",
            MsFlags::MS_RDONLY | nodev_nosuid() | MsFlags::MS_NOEXEC,
        )
    } else if meta.file_type().is_symlink() {
        // A symlink cannot be mounted over; what it points to is masked on its own.
        Ok(())
    } else {
        bind(&staging.join("dev/null"), &target)
    }
}

fn setup_proc(staging: &Path) -> Result<()> {
    let proc = staging.join("proc");
    mkdirs(&proc)?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        nodev_nosuid() | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(MountError::at("mount a fresh /proc"))?;
    for dir in PROC_READ_ONLY {
        let p = proc.join(dir);
        if p.exists() {
            bind(&p, &p)?;
            remount_read_only(&p, MsFlags::empty())?;
        }
    }
    for dir in PROC_MASKED_DIRS {
        mask(staging, &Path::new("/proc").join(dir))?;
    }
    for file in PROC_MASKED_FILES {
        mask(staging, &Path::new("/proc").join(file))?;
    }
    Ok(())
}

fn setup_dev(staging: &Path, shm_size: u64) -> Result<()> {
    let dev = staging.join("dev");
    mkdirs(&dev)?;
    mount_tmpfs(
        &dev,
        "mode=0755,size=64k",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
    )?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        touch(&target)?;
        bind(&host, &target)?;
    }
    let pts = dev.join("pts");
    mkdirs(&pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(MountError::at("mount a private /dev/pts"))?;
    let shm = dev.join("shm");
    mkdirs(&shm)?;
    mount_tmpfs(
        &shm,
        &format!("mode=1777,size={shm_size}"),
        nodev_nosuid() | MsFlags::MS_NOEXEC,
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(MountError::io(format!("symlink /dev/{link}")))?;
    }
    remount_read_only(&dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)
}

/// Clones the tree at `host` into a detached mount, private (nothing mounted in the sandbox
/// below it reaches the host's peers), nosuid and nodev. Runs in the runner, as root on the host.
pub fn detached_volume(host: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(host.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (its size given) on the mount behind `fd`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Moves a detached mount from [`detached_volume`] onto `target`.
fn attach(volume: &OwnedFd, target: &Path) -> Result<()> {
    let step = || format!("attach a volume at {}", target.display());
    let to = CString::new(target.as_os_str().as_bytes()).map_err(|_| MountError {
        step: step(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"),
    })?;
    // SAFETY: move_mount reads two NUL-terminated paths; the descriptor is ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            volume.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(MountError {
            step: step(),
            error: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Builds the sandbox's root on `plan.staging` and pivots into it. Runs in init, inside the
/// sandbox's user and mount namespaces, before any command. `volumes` are the detached mounts
/// of `plan.volumes`, in the same order.
pub fn build_root(plan: &SetupPlan, volumes: &[OwnedFd]) -> Result<()> {
    let fs_policy: &FilesystemPolicy = &plan.policy.filesystem;
    let staging = plan.staging.as_path();
    // Nothing we mount may reach the host, and nothing the host mounts later reaches us.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(MountError::at("make the mount tree private"))?;
    mount_tmpfs(staging, "mode=0755,size=1m", nodev_nosuid())?;

    for path in &fs_policy.read_only_paths {
        bind_read_only(staging, path)?;
    }
    let tmpfs_size = fs_policy.tmpfs_size.map_or(64 << 20, |b| b.0);
    for (name, target) in &fs_policy.volume_mounts {
        let dir = inside(staging, target);
        mkdirs(&dir)?;
        match plan.volumes.iter().position(|(n, _)| n == name) {
            Some(i) => {
                let volume = volumes.get(i).ok_or_else(|| MountError {
                    step: format!("attach volume {name}"),
                    error: io::Error::other("the runner sent no mount for it"),
                })?;
                // Already nosuid and nodev, its whole tree: the runner set that on the clone.
                attach(volume, &dir)?;
            }
            None => mount_tmpfs(
                &dir,
                &format!("mode=0755,size={tmpfs_size}"),
                nodev_nosuid(),
            )?,
        }
    }
    for path in &fs_policy.writable_paths {
        if fs_policy.volume_mounts.values().any(|v| v == path) {
            continue;
        }
        let dir = inside(staging, path);
        mkdirs(&dir)?;
        mount_tmpfs(
            &dir,
            &format!("mode=1777,size={tmpfs_size}"),
            nodev_nosuid(),
        )?;
    }
    setup_dev(staging, tmpfs_size)?;
    setup_proc(staging)?;
    for path in &fs_policy.forbidden_paths {
        mask(staging, path)?;
    }
    // The workspace is the sandbox root's home; the root tmpfs itself gets no more writes.
    fs::set_permissions(staging, fs::Permissions::from_mode(0o755))
        .map_err(MountError::io("chmod the new root"))?;

    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached at
    // once; no directory for it is needed in the read-only new root.
    nix::unistd::chdir(staging).map_err(MountError::at("chdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(MountError::at("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(MountError::at("detach the host's root"))?;
    nix::unistd::chdir("/").map_err(MountError::at("chdir /"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | nodev_nosuid(),
        None::<&str>,
    )
    .map_err(MountError::at("remount / read-only"))?;
    Ok(())
}

/// Brings the loopback interface of a fresh network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket and two interface ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let result = if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(sock);
        result
    }
}
