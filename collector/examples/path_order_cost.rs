//! What path kill orders cost a file syscall: runs a workload of `open` + `close` of one file in a
//! watched cgroup of its own, round after round, in three settings taken in turn:
//!
//! - `none`: no path order anywhere (the exit probe reads one setting more than before);
//! - `other`: orders for another cgroup at the same depth (the probe also looks the task's
//!   ancestor up in the ordered cgroups, and finds nothing);
//! - `ordered`: orders for the workload's own cgroup that do not match its file (the probe hands
//!   over to the path program, which looks up the path as given and the path the new descriptor
//!   names, rebuilt from its dentries).
//!
//! Each round forks a child that joins the cgroup, makes OPENS opens (and closes) and exits; its
//! CPU time (user + system, from `wait4`) divided by OPENS is the round's figure. Two workloads:
//! a file that exists (the open returns a descriptor: both lookups and the walk run) and one
//! that does not (ENOENT: the path as given only). Prints the median and the spread per
//! workload and setting, and the differences of the medians:
//!
//! ```text
//! cargo build --release -p sandwatch-collector --example path_order_cost
//! target/release/examples/path_order_cost [ROUNDS [OPENS]]     # defaults: 21 200000
//! ```
//!
//! Root only. It removes its cgroups and data directory.

use std::{ffi::CString, fs, os::unix::ffi::OsStrExt as _, path::Path};

use sandwatch_collector::{Collector, CollectorConfig, KernelPathOrder, PathMatch, WatchTarget};

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::Cgroup;

/// Forks a child that joins `cgroup`, opens (and closes) `file` `opens` times and exits;
/// returns its CPU time per open, in ns.
fn round(cgroup: &Cgroup, file: &Path, opens: u64) -> f64 {
    let procs = CString::new(cgroup.0.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    let file = CString::new(file.as_os_str().as_bytes()).unwrap();
    // SAFETY: the child makes raw syscalls only, on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(101);
            }
            libc::close(fd);
            for _ in 0..opens {
                let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: a zeroed rusage to fill, for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the workload failed (status {status:#x}): was it killed by an order?"
    );
    let ns = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    (ns(usage.ru_utime) + ns(usage.ru_stime)) / opens as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(21, |a| a.parse().expect("ROUNDS"));
    let opens: u64 = args.next().map_or(200_000, |a| a.parse().expect("OPENS"));
    let dir = tempfile::tempdir().expect("a data directory");
    // The file opened: three components below the root, as /workspace/src/main.py would be.
    let file = dir.path().join("src/main.py");
    fs::create_dir(dir.path().join("src")).unwrap();
    fs::write(&file, "print()\n").unwrap();
    let work = Cgroup::create("path-cost");
    let other = Cgroup::create("path-cost-other");
    let collector = Collector::start(CollectorConfig::new(dir.path().join("data")))
        .expect("the collector starts (root, BPF)");
    let target = |c: &Cgroup, name: &str| WatchTarget {
        cgroup_id: c.id(),
        level: 1,
        sandbox_id: name.into(),
    };
    collector.watch(&target(&work, "work")).unwrap();
    collector.watch(&target(&other, "other")).unwrap();
    // What a sandbox's rules would order: a few prefixes and whole paths, none matching.
    let orders: Vec<KernelPathOrder> = [
        PathMatch::Prefix("/etc/ssh/".into()),
        PathMatch::Prefix("/proc/sys/".into()),
        PathMatch::Exact("/etc/shadow".into()),
        PathMatch::Exact("/proc/kcore".into()),
        PathMatch::InDirectory("/root".into()),
    ]
    .into_iter()
    .map(|path| KernelPathOrder {
        path,
        syscalls: None,
        rule_id: 1,
    })
    .collect();
    let settings = ["none", "other", "ordered"];
    let workloads = [file.clone(), dir.path().join("src/missing.py")];
    // figures[workload][setting]: one per round.
    let mut figures = vec![vec![Vec::new(); settings.len()]; workloads.len()];
    round(&work, &file, opens / 10);
    for _ in 0..rounds {
        for (w, path) in workloads.iter().enumerate() {
            for (i, setting) in settings.iter().enumerate() {
                match *setting {
                    "other" => {
                        collector.kill_on_paths(other.id(), 1, &orders).unwrap();
                    }
                    "ordered" => {
                        collector.kill_on_paths(work.id(), 1, &orders).unwrap();
                    }
                    _ => {}
                }
                figures[w][i].push(round(&work, path, opens));
                collector.clear_kill_orders(other.id()).unwrap();
                collector.clear_kill_orders(work.id()).unwrap();
            }
        }
    }
    println!("{rounds} rounds of {opens} opens, CPU ns per open:");
    for (w, path) in workloads.iter().enumerate() {
        println!("{}:", path.display());
        let medians: Vec<f64> = figures[w].iter_mut().map(|f| median(f)).collect();
        for (i, setting) in settings.iter().enumerate() {
            let f = &figures[w][i];
            println!(
                "  {setting:8} median {:7.0}  min {:7.0}  max {:7.0}",
                medians[i],
                f[0],
                f[f.len() - 1]
            );
        }
        println!(
            "  other - none: {:+.0} ns; ordered - none: {:+.0} ns",
            medians[1] - medians[0],
            medians[2] - medians[0]
        );
    }
    collector.unwatch(&target(&work, "work")).unwrap();
    collector.unwatch(&target(&other, "other")).unwrap();
    let summary = collector.shutdown().await.expect("the collector stops");
    println!("  records lost: {}", summary.drops.total());
}
