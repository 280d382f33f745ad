//! Sandboxes: the policy model, isolation, limits, lifecycle and kill/freeze of jobs.
//!
//! So far this crate owns one thing: the cgroup a job runs in ([`cgroup`]), which gives the job
//! the id the probes filter on. Namespaces, quotas, seccomp and landlock come with the runner
//! issue. This crate depends on no other sandwatch crate: the binary hands the cgroup's id to
//! the collector.

pub mod cgroup;

pub use cgroup::{CgroupError, CgroupRef, CgroupRoot, JobCgroup};
