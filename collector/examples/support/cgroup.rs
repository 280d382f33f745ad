//! A cgroup of the example's own in the unified hierarchy, removed when dropped.

use std::{fs, os::unix::fs::MetadataExt as _, path::PathBuf};

fn unified_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if mounts
            .lines()
            .any(|l| l.contains(&format!(" {p} ")) && l.contains(" - cgroup2 "))
        {
            return PathBuf::from(p);
        }
    }
    panic!("no cgroup2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup");
}

/// `<unified root>/swt-<pid>-<name>`, at depth 1.
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn create(name: &str) -> Self {
        let path = unified_root().join(format!("swt-{}-{name}", std::process::id()));
        fs::create_dir(&path).expect("creating the cgroup");
        Self(path)
    }

    pub fn id(&self) -> u64 {
        fs::metadata(&self.0).expect("the cgroup").ino()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}
