//! Sandboxes: the policy model, isolation, limits, lifecycle and kill/freeze of jobs.
//!
//! This crate depends on no other sandwatch crate: the binary hands the sandbox's cgroup id to
//! the collector and turns lifecycle records and metrics samples into table rows.

pub mod cgroup;
pub mod files;
pub mod fs_access;
pub mod init;
mod init_files;
pub mod limits;
pub mod metrics;
mod mounts;
pub mod policy;
mod protocol;
pub mod sandbox;
pub mod seccomp;
mod zygote;

pub use cgroup::{CgroupError, CgroupRef, CgroupRoot, JobCgroup};
pub use files::{
    EntryInfo, EntryKind, FileError, FileReader, FileWriter, FsEvent, FsEventKind, WatchStream,
};
pub use limits::ResourceLimits;
pub use policy::{PolicyError, SandboxPolicy};
pub use seccomp::{SeccompError, SyscallFilter};
