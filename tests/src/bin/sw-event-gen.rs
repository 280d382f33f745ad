//! Benchmark workload: `sw-event-gen TOTAL RATE_PER_SEC` makes TOTAL file events (an `openat`
//! of a path that does not exist, which the probes record with its `-ENOENT`) at no more than
//! RATE_PER_SEC on average (0: as fast as it can), then prints `sent=N elapsed_ns=T`.
//!
//! Pacing is a busy-wait against CLOCK_MONOTONIC on a fixed schedule (event i is due at
//! start + i/RATE): sleeping would overshoot by far more than the gap between two events. After
//! a long preemption the generator catches up at full speed, but by at most `MAX_DEBT` worth of
//! events, so the rate never exceeds the target over any window longer than that.

use std::{ffi::CStr, process::ExitCode};

/// The path opened: absent on any sane host, recognisable in the audit log.
const PATH: &CStr = c"/nonexistent-sandwatch-bench";
/// How far behind schedule the generator may fall before it forgets the backlog (ns).
const MAX_DEBT_NS: u64 = 10_000_000;
const NS_PER_S: u64 = 1_000_000_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [total, rate] => total.parse::<u64>().ok().zip(rate.parse::<u64>().ok()),
        _ => None,
    };
    let Some((total, rate)) = parsed else {
        eprintln!("usage: sw-event-gen TOTAL RATE_PER_SEC   (RATE 0: unthrottled)");
        return ExitCode::from(2);
    };

    let start = now_ns();
    // Schedule in fixed point: event i is due at `start + i * 1e9 / rate`, computed from `due`
    // (ns) plus a remainder, so that no rounding error accumulates over millions of events.
    let (step, step_rem) = (NS_PER_S.checked_div(rate).unwrap_or(0), NS_PER_S.checked_rem(rate).unwrap_or(0));
    let mut due = start;
    let mut rem = 0u64;
    for _ in 0..total {
        if rate != 0 {
            let mut t = now_ns();
            while t < due {
                std::hint::spin_loop();
                t = now_ns();
            }
            // Far behind (preempted): forget the backlog beyond MAX_DEBT_NS.
            if t - due > MAX_DEBT_NS {
                due = t - MAX_DEBT_NS;
            }
            due += step;
            rem += step_rem;
            if rem >= rate {
                rem -= rate;
                due += 1;
            }
        }
        // SAFETY: a NUL-terminated constant path; a descriptor, if one comes back, is closed.
        let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, PATH.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd as i32) };
        }
    }
    let elapsed = now_ns() - start;
    println!("sent={total} elapsed_ns={elapsed}");
    ExitCode::SUCCESS
}
