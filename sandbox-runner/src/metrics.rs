//! (in progress: being written on a branch; this placeholder has the agreed interface)
use std::path::PathBuf;
pub struct MetricsSource {
    pub unified_cgroup: PathBuf,
    pub memory_cgroup: Option<PathBuf>,
    pub workspace: PathBuf,
    pub net_pid: Option<i32>,
}
