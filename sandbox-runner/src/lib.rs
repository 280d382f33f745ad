//! Sandboxes: the policy model, isolation, limits, lifecycle and kill/freeze of jobs.
//!
//! So far this crate owns the policy model ([`policy`]: what a sandbox may use and touch, parsed
//! and checked) and the cgroup a job runs in ([`cgroup`]), which gives the job the id the probes
//! filter on. Enforcing the policy (namespaces, quotas, seccomp, landlock) comes with the rest of
//! the runner issue. This crate depends on no other sandwatch crate: the binary hands the cgroup's id to
//! the collector.

pub mod cgroup;
pub mod limits;
pub mod policy;

pub use cgroup::{CgroupError, CgroupRef, CgroupRoot, JobCgroup};
pub use limits::ResourceLimits;
pub use policy::{PolicyError, SandboxPolicy};
