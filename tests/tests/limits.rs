//! Resource limits hold on this kernel: the job cgroup's memory, pids and CPU limits, applied
//! through v1 controllers on a hybrid host or v2 controllers where delegated.

mod support;

use std::{
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, Output},
};

use sandwatch_runner::{CgroupRoot, JobCgroup, ResourceLimits};
use support::require_root;

/// Runs `python3 -c CODE` inside the job's cgroups.
fn run_in(job: &JobCgroup, code: &str) -> Output {
    let fds = job.procs_fds();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]);
    // SAFETY: only write(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.output().expect("python3 runs")
}

fn job(name: &str, limits: ResourceLimits) -> JobCgroup {
    let root = CgroupRoot::discover().unwrap();
    JobCgroup::create_with_limits(
        &root,
        &format!("test-limits-{}-{name}", std::process::id()),
        &limits,
    )
    .unwrap()
}

#[test]
fn a_memory_bomb_is_oom_killed_at_the_limit() {
    require_root();
    let limits = ResourceLimits {
        memory_max: Some(64 << 20),
        swap_max: 0,
        ..Default::default()
    };
    let job = job("memory", limits);
    let out = run_in(&job, "x = bytearray(256 * 1024 * 1024); print('survived')");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "killed: {out:?}");
    assert!(
        job.oom_killed(),
        "the memory controller reports the OOM kill"
    );
    let small = run_in(&job, "x = bytearray(16 * 1024 * 1024); print('ok')");
    assert!(small.status.success(), "under the limit it runs: {small:?}");
    job.remove().unwrap();
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    require_root();
    let job = job(
        "pids",
        ResourceLimits {
            pids_max: Some(16),
            ..Default::default()
        },
    );
    let out = run_in(
        &job,
        "import os, time\nn = 0\nkids = []\nfor _ in range(64):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2); os._exit(0)\n    kids.append(pid)\nprint(len(kids))\nfor k in kids: os.kill(k, 9)\n",
    );
    assert!(out.status.success(), "{out:?}");
    let forked: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        forked < 16,
        "at most pids.max (16) processes, python included: forked {forked}"
    );
    assert!(
        forked >= 8,
        "the limit is not far below 16: forked {forked}"
    );
    job.remove().unwrap();
}

#[test]
fn a_cpu_spinner_gets_its_quota() {
    require_root();
    let limits = ResourceLimits {
        cpu_quota_us: Some(50_000),
        cpu_period_us: 100_000,
        ..Default::default()
    };
    let job = job("cpu", limits);
    // Spin for 2 s of wall time; report the CPU time it got.
    let out = run_in(
        &job,
        "import time\nt = time.time()\nwhile time.time() - t < 2.0: pass\nprint(time.process_time())",
    );
    assert!(out.status.success(), "{out:?}");
    let cpu: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Quota: 0.5 core × 2 s = 1.0 s. The cap is exact; the floor allows for a busy host.
    assert!(
        cpu <= 1.2,
        "at most the quota (+20%): got {cpu:.2} s of CPU in 2 s"
    );
    assert!(cpu >= 0.5, "the spinner got CPU at all: {cpu:.2} s");
    job.remove().unwrap();
}
