//! Benchmark workload: `sw-getppid-loop N [--elapsed]` makes N `getppid` syscalls, the cheapest
//! syscall there is, so that any per-syscall cost the probes add shows at full size.
//!
//! Prints nothing, unless `--elapsed` is given: then one line `elapsed_ns=T` on stdout, the wall
//! time of the loop alone (CLOCK_MONOTONIC), without process start-up and exit.

use std::{process::ExitCode, time::Instant};

fn main() -> ExitCode {
    let mut n: Option<u64> = None;
    let mut print_elapsed = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--elapsed" => print_elapsed = true,
            s => match s.parse() {
                Ok(v) if n.is_none() => n = Some(v),
                _ => {
                    eprintln!("usage: sw-getppid-loop N [--elapsed]");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let Some(n) = n else {
        eprintln!("usage: sw-getppid-loop N [--elapsed]");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid takes no arguments and cannot fail. The raw syscall, not libc's
        // getppid(), so that nothing can cache it.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    let elapsed = start.elapsed();
    if print_elapsed {
        println!("elapsed_ns={}", elapsed.as_nanos());
    }
    ExitCode::SUCCESS
}
