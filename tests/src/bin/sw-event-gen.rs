//! Benchmark workload: `sw-event-gen TOTAL RATE_PER_SEC [THREADS]` makes TOTAL file events at no
//! more than RATE_PER_SEC on average (0: as fast as it can), split over THREADS threads (default
//! 1), then prints `sent=N elapsed_ns=T`.
//!
//! Each event is an `openat` of a relative path against an invalid directory fd: the kernel
//! copies the path in and refuses with `-EBADF` before any lookup, and the probes record it
//! (path, flags, dirfd, result) like any other open. The generator's own syscall is as cheap as
//! a recorded file syscall gets, so the benchmark finds the pipeline's ceiling rather than the
//! path walk's: an absolute path that does not exist costs ~1.5 µs of lookup here.
//!
//! Pacing is a busy-wait against CLOCK_MONOTONIC on a fixed schedule (event i is due at
//! start + i/RATE): sleeping would overshoot by far more than the gap between two events. After
//! a long preemption the generator catches up at full speed, but by at most `MAX_DEBT` worth of
//! events, so the rate never exceeds the target over any window longer than that.

use std::{ffi::CStr, process::ExitCode};

/// The path opened: recognisable in the audit log.
const PATH: &CStr = c"nonexistent-sandwatch-bench";
/// Not a descriptor: the open fails with EBADF at once.
const BAD_DIRFD: i64 = -1;
/// How far behind schedule the generator may fall before it forgets the backlog (ns).
const MAX_DEBT_NS: u64 = 10_000_000;
const NS_PER_S: u64 = 1_000_000_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Makes `total` events at no more than `rate`/s (0: unthrottled) on this thread.
fn generate(total: u64, rate: u64) {
    let start = now_ns();
    // Schedule in fixed point: event i is due at `start + i * 1e9 / rate`, computed from `due`
    // (ns) plus a remainder, so that no rounding error accumulates over millions of events.
    let (step, step_rem) = (
        NS_PER_S.checked_div(rate).unwrap_or(0),
        NS_PER_S.checked_rem(rate).unwrap_or(0),
    );
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
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                BAD_DIRFD,
                PATH.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd as i32) };
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [total, rate] => total
            .parse::<u64>()
            .ok()
            .zip(rate.parse::<u64>().ok())
            .map(|(t, r)| (t, r, 1)),
        [total, rate, threads] => match (
            total.parse::<u64>(),
            rate.parse::<u64>(),
            threads.parse::<u64>(),
        ) {
            (Ok(t), Ok(r), Ok(n)) if n >= 1 => Some((t, r, n)),
            _ => None,
        },
        _ => None,
    };
    let Some((total, rate, threads)) = parsed else {
        eprintln!(
            "usage: sw-event-gen TOTAL RATE_PER_SEC [THREADS]   (RATE 0: unthrottled; TOTAL and RATE are split over the threads)"
        );
        return ExitCode::from(2);
    };

    let start = now_ns();
    std::thread::scope(|scope| {
        for i in 0..threads {
            // Thread i makes its share; the first ones take the remainders.
            let share = total / threads + u64::from(i < total % threads);
            let rate_share = if rate == 0 {
                0
            } else {
                (rate / threads + u64::from(i < rate % threads)).max(1)
            };
            scope.spawn(move || generate(share, rate_share));
        }
    });
    let elapsed = now_ns() - start;
    println!("sent={total} elapsed_ns={elapsed}");
    ExitCode::SUCCESS
}
