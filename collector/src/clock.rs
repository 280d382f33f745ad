//! Kernel timestamps (`bpf_ktime_get_boot_ns`, monotonic since boot, counting suspend) to UTC.

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The offset from CLOCK_BOOTTIME to CLOCK_REALTIME, refreshed as the pipeline runs so that a
/// wall-clock step (NTP) shows up in the next records.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    offset_ns: i64,
}

impl BootClock {
    pub fn now() -> Self {
        // Bracket the realtime read between two boottime reads; take the midpoint.
        let b0 = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        let b1 = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            offset_ns: real - (b0 + (b1 - b0) / 2),
        }
    }

    pub fn to_unix_ns(self, boot_ns: u64) -> i64 {
        boot_ns as i64 + self.offset_ns
    }

    pub fn unix_now_ns() -> i64 {
        clock_ns(libc::CLOCK_REALTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_maps_to_now() {
        let c = BootClock::now();
        let mapped = c.to_unix_ns(clock_ns(libc::CLOCK_BOOTTIME) as u64);
        assert!(
            (mapped - BootClock::unix_now_ns()).abs() < 50_000_000,
            "within 50 ms"
        );
    }
}
