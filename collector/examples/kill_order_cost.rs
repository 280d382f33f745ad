//! What a kill order costs the rest of the host: holds a running collector (every probe
//! attached, nothing watched) and, on SIGUSR1, orders kills on one syscall for an empty cgroup of
//! its own; SIGUSR2 lifts the order. A benchmark then times the same workload with and without
//! the order, pair by pair (the figures and the command are in docs/architecture.md):
//!
//! ```text
//! kill_order_cost getppid &          # prints "ready PID" when the probes are attached
//! for i in $(seq 20); do             # pairs, so that the machine's drift hits both alike
//!   kill -USR1 PID; sleep 0.3; /usr/bin/time -f %U+%S -a -o /tmp/on sw-getppid-loop 2000000
//!   kill -USR2 PID; sleep 0.3; /usr/bin/time -f %U+%S -a -o /tmp/off sw-getppid-loop 2000000
//! done
//! ```
//!
//! Root only. SIGINT or SIGTERM ends it; it removes its cgroup and data directory.

use sandwatch_collector::{Collector, CollectorConfig, KernelKillOrder};
use tokio::signal::unix::{SignalKind, signal};

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::Cgroup;

#[tokio::main]
async fn main() {
    let syscall = std::env::args()
        .nth(1)
        .expect("usage: kill_order_cost SYSCALL");
    let dir = tempfile::tempdir().expect("a data directory");
    let cgroup = Cgroup::create("kill-cost");
    let id = cgroup.id();
    let collector = Collector::start(CollectorConfig::new(dir.path().join("data")))
        .expect("the collector starts (root, BPF)");
    let (mut on, mut off) = (
        signal(SignalKind::user_defined1()).unwrap(),
        signal(SignalKind::user_defined2()).unwrap(),
    );
    let (mut int, mut term) = (
        signal(SignalKind::interrupt()).unwrap(),
        signal(SignalKind::terminate()).unwrap(),
    );
    println!("ready {}", std::process::id());
    let order = [KernelKillOrder {
        syscall: syscall.clone(),
        rule_id: 1,
    }];
    loop {
        tokio::select! {
            _ = on.recv() => {
                let unsupported = collector.kill_on_syscalls(id, 1, &order).expect("ordering");
                assert!(unsupported.is_empty(), "{syscall} has no entry tracepoint here");
            }
            _ = off.recv() => collector.clear_kill_orders(id).expect("lifting the order"),
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    collector.clear_kill_orders(id).expect("lifting the order");
    collector.shutdown().await.expect("the collector stops");
    drop(cgroup);
}
