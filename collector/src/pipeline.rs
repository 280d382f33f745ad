//! The running collector: one task reads the ring buffer, decodes and batches; every window it
//! drains the in-kernel syscall counts and drop counters; sealed batches go on the bus to the
//! sinks. Shutdown drains what the kernel still holds, seals and flushes everything.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use sandwatch_probes_abi::{NR_SLOTS, kind};
use sandwatch_schema::{CountRow, DropRow, Table, TableBatch};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, warn};

use crate::{
    CollectorError,
    batcher::{BatchLimits, Batchers},
    bus::BatchBus,
    clock::BootClock,
    decode::{Decoder, KernelKill},
    enrich::{RegistryView, SandboxRegistry},
    parquet_sink::{self, ParquetOptions, ParquetSink, SinkSummary},
    probes::{
        CounterSlots, KernelKillOrder, MappedCounts, KernelPathOrder, PathOrderLeft, ProbeConfig, ProbeSet,
        ProbeStreams,
    },
    sandbox_rows::{
        self, SandboxEventRecord, SandboxMetricsRecord, SandboxRecorder, SandboxRowQueue,
    },
};

/// Records decoded per wake-up before the reader publishes and yields.
const DRAIN_CHUNK: usize = 32 * 1024;
/// How often the reader looks at the ring buffer without being woken.
const RING_POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub data_dir: PathBuf,
    pub host: String,
    pub batch: BatchLimits,
    /// Window of the `syscall_counts` table, and how often drop counters are read.
    pub counts_window: Duration,
    pub parquet: ParquetOptions,
    pub probes: ProbeConfig,
    /// When set, a live consumer (the rule engine) gets every sealed batch through
    /// [`Collector::take_live_batches`], and no row waits longer than this to be sealed and
    /// handed over (the ring buffer is polled at this pace too).
    pub live: Option<Duration>,
}

impl CollectorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            host: hostname(),
            batch: BatchLimits::default(),
            counts_window: Duration::from_secs(1),
            parquet: ParquetOptions::default(),
            probes: ProbeConfig::default(),
            live: None,
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// A cgroup to record, and the sandbox its events are attributed to.
#[derive(Clone, Debug)]
pub struct WatchTarget {
    pub cgroup_id: u64,
    pub level: u32,
    pub sandbox_id: String,
}

/// Records lost, per source and record kind.
#[derive(Clone, Debug, Default)]
pub struct DropTotals {
    pub kernel: HashMap<&'static str, u64>,
    pub collector: HashMap<&'static str, u64>,
}

impl DropTotals {
    pub fn total(&self) -> u64 {
        self.kernel.values().sum::<u64>() + self.collector.values().sum::<u64>()
    }
}

/// What a collector run recorded.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub data_dir: PathBuf,
    /// Rows per table, as written to Parquet.
    pub rows: HashMap<Table, u64>,
    pub drops: DropTotals,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub records: u64,
}

struct ReaderStats {
    drops: DropTotals,
    records: u64,
}

pub struct Collector {
    probes: Arc<Mutex<ProbeSet>>,
    registry: SandboxRegistry,
    sandbox_rows: SandboxRecorder,
    stop: watch::Sender<bool>,
    reader: JoinHandle<Result<ReaderStats, CollectorError>>,
    sink: std::thread::JoinHandle<Result<SinkSummary, CollectorError>>,
    data_dir: PathBuf,
    live: Option<mpsc::Receiver<Arc<TableBatch>>>,
    kernel_kills: Option<mpsc::UnboundedReceiver<KernelKill>>,
}

impl Collector {
    /// Opens the audit log, loads and attaches the probes and starts reading. Call from within a
    /// tokio runtime.
    pub fn start(config: CollectorConfig) -> Result<Self, CollectorError> {
        let sink = ParquetSink::open(&config.data_dir, config.parquet.clone())?;
        let (probes, streams) = ProbeSet::load(&config.probes)?;
        let refusals: HashSet<i64> = config
            .probes
            .refusal_syscalls
            .iter()
            .filter_map(|n| n.parse::<syscalls::Sysno>().ok())
            .map(|s| s.id() as i64)
            .collect();
        let registry = SandboxRegistry::default();
        let mut bus = BatchBus::default();
        let parquet_rx = bus.subscribe("parquet", 64);
        // The live consumer's queue is deeper: it evaluates small, frequent batches, and a slow
        // moment there must not stall the reader at once.
        let live = config.live.map(|_| bus.subscribe("rules", 1024));
        let mut batch = config.batch;
        let mut ring_poll = RING_POLL;
        if let Some(l) = config.live {
            batch.max_age = batch.max_age.min(l);
            ring_poll = ring_poll.min(l);
        }
        let sink = parquet_sink::spawn(sink, parquet_rx, tokio::runtime::Handle::current());
        let (stop, stop_rx) = watch::channel(false);
        let (sandbox_rows, row_queue) = sandbox_rows::queue();
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        let decoder = Decoder::new(&config.host, registry.clone(), refusals, kill_tx);
        let reader = Reader {
            decoder,
            batchers: Batchers::new(batch),
            ring_poll,
            bus,
            host: config.host.clone(),
            registry: registry.view(),
            counts_window: config.counts_window,
            last_counts: HashMap::new(),
            last_kernel_drops: [0; kind::COUNT as usize],
            collector_drops: [0; kind::COUNT as usize],
            reported_collector_drops: [0; kind::COUNT as usize],
            last_poll: Instant::now(),
            records: 0,
        };
        let reader = tokio::spawn(reader.run(streams, row_queue, stop_rx));
        Ok(Self {
            probes: Arc::new(Mutex::new(probes)),
            registry,
            sandbox_rows,
            stop,
            reader,
            sink,
            data_dir: config.data_dir,
            live,
            kernel_kills: Some(kill_rx),
        })
    }

    /// The live batch stream ([`CollectorConfig::live`]), once. Every sealed batch of every
    /// table arrives here as it goes to Parquet; the stream ends after [`Collector::shutdown`]
    /// has flushed the last one.
    pub fn take_live_batches(&mut self) -> Option<mpsc::Receiver<Arc<TableBatch>>> {
        self.live.take()
    }

    /// Starts recording a cgroup (and its descendants), attributing its events to a sandbox.
    pub fn watch(&self, target: &WatchTarget) -> Result<(), CollectorError> {
        self.registry.insert(target.cgroup_id, &target.sandbox_id);
        self.probes
            .lock()
            .expect("probe lock")
            .watch(target.cgroup_id, target.level)
    }

    /// Snapshots who `pid` is (parent, executable) while it lives: for a process started before
    /// its cgroup was watched that never forks or executes in view, such as a sandbox's init,
    /// whose records may be decoded after it is gone.
    pub fn note_process(&self, pid: u32) {
        self.registry.note_process(pid);
    }

    pub fn unwatch(&self, target: &WatchTarget) -> Result<(), CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .unwatch(target.cgroup_id, target.level)
    }

    /// Refuses (EPERM) connect() and destination-naming sendmsg()/sendto() to `ports` for the
    /// processes of a cgroup below `<unified>/sandwatch` (at depth `level`) and its descendants:
    /// a sandbox policy's `network.blocked_ports`, enforced in the kernel.
    pub fn block_ports(
        &self,
        cgroup_id: u64,
        level: u32,
        ports: &[u16],
    ) -> Result<(), CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .block_ports(cgroup_id, level, ports)
    }

    /// Lifts every port blocked for the cgroup.
    pub fn unblock_ports(&self, cgroup_id: u64) -> Result<(), CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .unblock_ports(cgroup_id)
    }

    /// Kill orders, decided in the kernel: a process of the cgroup (at depth `level`) or of its
    /// descendants that enters one of the ordered syscalls is sent SIGKILL at the syscall's entry
    /// and never runs another instruction; each kill is reported through
    /// [`take_kernel_kills`](Self::take_kernel_kills) with the order's rule id. The syscall itself
    /// still runs (a tracepoint cannot cancel it): its effect may happen, its result is never seen.
    ///
    /// Adds to the cgroup's orders. Returns the syscalls this kernel has no entry tracepoint for
    /// (e.g. `init_module` here): not ordered, left to the caller to enforce in user space. An
    /// unknown syscall name is an error and places no order.
    pub fn kill_on_syscalls(
        &self,
        cgroup_id: u64,
        level: u32,
        orders: &[KernelKillOrder],
    ) -> Result<Vec<String>, CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .kill_on_syscalls(cgroup_id, level, orders)
    }

    /// Path kill orders, decided in the kernel as a file syscall returns: a process of the
    /// cgroup (at depth `level`, which must be watched) or of its descendants whose file syscall
    /// names a path an order matches (the path as given, or the file an open's new descriptor
    /// names) is sent SIGKILL before it returns to user space: it never sees the result. Each
    /// kill is reported through [`take_kernel_kills`](Self::take_kernel_kills). The syscall's
    /// effect has happened (the file was opened; another thread of the process could use the
    /// descriptor before it dies).
    ///
    /// Adds to the cgroup's orders. Returns what the kernel does not decide (patterns it cannot
    /// hold, syscalls without a path probe here), for the caller to decide in user space.
    pub fn kill_on_paths(
        &self,
        cgroup_id: u64,
        level: u32,
        orders: &[KernelPathOrder],
    ) -> Result<Vec<PathOrderLeft>, CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .kill_on_paths(cgroup_id, level, orders)
    }

    /// Distinct patterns the cgroup's path kill orders hold in the kernel.
    pub fn path_order_patterns(&self, cgroup_id: u64) -> usize {
        self.probes
            .lock()
            .expect("probe lock")
            .path_order_patterns(cgroup_id)
    }

    /// Lifts every kill order of the cgroup, syscall and path orders.
    pub fn clear_kill_orders(&self, cgroup_id: u64) -> Result<(), CollectorError> {
        self.probes
            .lock()
            .expect("probe lock")
            .clear_kill_orders(cgroup_id)
    }

    /// The kills kill orders made, each sent as soon as the reader sees its record (the probe
    /// wakes the reader for it). Once: later calls return None. Kills are queued from the start,
    /// taken or not.
    pub fn take_kernel_kills(&mut self) -> Option<mpsc::UnboundedReceiver<KernelKill>> {
        self.kernel_kills.take()
    }

    /// The syscalls whose entry tracepoint carries the kill program now (none without orders).
    pub fn kill_tracepoints(&self) -> Vec<String> {
        self.probes.lock().expect("probe lock").kill_tracepoints()
    }

    /// The kernel's id of the (loaded, maybe unattached) kill program.
    pub fn kill_program_id(&self) -> Result<u32, CollectorError> {
        self.probes.lock().expect("probe lock").kill_program_id()
    }

    /// Records a sandbox lifecycle event (`sandboxes`). Never waits; fails once the collector
    /// has stopped.
    pub fn record_sandbox_event(&self, event: SandboxEventRecord) -> Result<(), CollectorError> {
        self.sandbox_rows.record_sandbox_event(event)
    }

    /// Records a sandbox metrics sample (`sandbox_metrics`). Never waits; fails once the
    /// collector has stopped.
    pub fn record_sandbox_metrics(
        &self,
        sample: SandboxMetricsRecord,
    ) -> Result<(), CollectorError> {
        self.sandbox_rows.record_sandbox_metrics(sample)
    }

    /// A handle that records sandbox rows from other tasks, and outlives [`shutdown`]
    /// (its sends then fail with [`CollectorError::Stopped`]).
    ///
    /// [`shutdown`]: Collector::shutdown
    pub fn sandbox_recorder(&self) -> SandboxRecorder {
        self.sandbox_rows.clone()
    }

    /// Number of tracepoints and programs attached.
    pub fn attached(&self) -> usize {
        self.probes.lock().expect("probe lock").attached
    }

    /// Stops reading after draining everything the kernel recorded and every sandbox row queued
    /// so far, flushes every table to disk and reports what was recorded.
    pub async fn shutdown(self) -> Result<Summary, CollectorError> {
        let _ = self.stop.send(true);
        let reader = self
            .reader
            .await
            .map_err(|e| CollectorError::Internal(format!("reader task: {e}")));
        // The reader dropped the bus: the sink sees the end of its queue and closes its files.
        let sink = tokio::task::spawn_blocking(move || self.sink.join())
            .await
            .map_err(|e| CollectorError::Internal(format!("sink thread: {e}")))?
            .map_err(|_| CollectorError::Internal("the parquet sink thread panicked".into()))?;
        let stats = reader??;
        let sink = sink?;
        Ok(Summary {
            data_dir: self.data_dir,
            rows: sink.rows,
            drops: stats.drops,
            files: sink.files,
            bytes: sink.bytes,
            records: stats.records,
        })
    }
}

struct Reader {
    decoder: Decoder,
    batchers: Batchers,
    ring_poll: Duration,
    bus: BatchBus,
    host: String,
    registry: RegistryView,
    counts_window: Duration,
    /// Last total read per (slot, syscall number).
    /// Per counter slot, the totals last read, in the order of the counted syscalls.
    last_counts: HashMap<u32, Vec<u64>>,
    last_kernel_drops: [u64; kind::COUNT as usize],
    collector_drops: [u64; kind::COUNT as usize],
    reported_collector_drops: [u64; kind::COUNT as usize],
    last_poll: Instant,
    records: u64,
}

impl Reader {
    async fn run(
        mut self,
        streams: ProbeStreams,
        mut sandbox_rows: SandboxRowQueue,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ReaderStats, CollectorError> {
        let ProbeStreams {
            events,
            counts,
            slots,
            counted,
            drops,
            log,
        } = streams;
        // SAFETY: the logger owns its ring buffer's fd for as long as the AsyncFd owns the logger.
        let mut log = log
            .and_then(|l| unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }.ok());
        // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as long as
        // the AsyncFd owns the ring buffer.
        let mut events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| CollectorError::Probe(format!("polling the ring buffer: {e}")))?;
        // Records below the wakeup threshold do not wake us (see settings::WAKEUP_BYTES): look
        // for them on this timer.
        let mut poll = tokio::time::interval(self.ring_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(self.counts_window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self
                .batchers
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard.map_err(|e| CollectorError::Probe(format!("polling the ring buffer: {e}")))?;
                    if self.drain(guard.get_inner_mut(), DRAIN_CHUNK)? {
                        guard.clear_ready();
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    self.batchers.seal_aged(Instant::now())?;
                }
                _ = poll.tick() => {
                    while !self.drain(events.get_mut(), DRAIN_CHUNK)? {
                        self.publish().await?;
                    }
                }
                _ = tick.tick() => {
                    self.poll_counters(&counts, &slots, &counted, &drops)?;
                }
                Some(row) = sandbox_rows.recv() => {
                    sandbox_rows.append_waiting(row, &mut self.batchers, &self.host)?;
                }
                guard = async { log.as_mut().expect("guarded by the if").readable_mut().await }, if log.is_some() => {
                    if let Ok(mut guard) = guard {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                }
                _ = stop.changed() => break,
            }
            self.publish().await?;
        }
        // Everything the job did is in the ring buffer by now: the probes run synchronously in
        // the job's own syscalls.
        while !self.drain(events.get_mut(), DRAIN_CHUNK)? {
            self.publish().await?;
        }
        sandbox_rows.close_and_drain(&mut self.batchers, &self.host)?;
        self.poll_counters(&counts, &slots, &counted, &drops)?;
        self.batchers.seal_all()?;
        self.publish().await?;
        Ok(ReaderStats {
            drops: self.drop_totals(),
            records: self.records,
        })
    }

    /// Decodes up to `max` records; true when the ring buffer is empty.
    fn drain(&mut self, rb: &mut RingBuf<MapData>, max: usize) -> Result<bool, CollectorError> {
        for _ in 0..max {
            let Some(item) = rb.next() else {
                return Ok(true);
            };
            self.records += 1;
            if let Err(bad) = self.decoder.decode(&item, &mut self.batchers)? {
                self.collector_drops[(bad.kind as usize).min(kind::COUNT as usize - 1)] += 1;
            }
        }
        Ok(false)
    }

    async fn publish(&mut self) -> Result<(), CollectorError> {
        for batch in self.batchers.take_sealed() {
            self.bus.publish(batch).await?;
        }
        Ok(())
    }

    fn poll_counters(
        &mut self,
        counts: &MappedCounts,
        slots: &Mutex<CounterSlots>,
        counted: &[u32],
        drops: &PerCpuArray<MapData, u64>,
    ) -> Result<(), CollectorError> {
        let now_ns = BootClock::unix_now_ns();
        let window_ms = self.last_poll.elapsed().as_millis().min(u32::MAX as u128) as u32;
        self.last_poll = Instant::now();
        self.decoder.clock = BootClock::now();
        let (active, retired) = {
            let mut slots = slots.lock().expect("slot lock");
            let active: Vec<(u64, u32)> =
                slots.active.iter().map(|(id, slot)| (*id, *slot)).collect();
            (active, std::mem::take(&mut slots.retired))
        };
        for &(watch_id, slot) in active.iter().chain(&retired) {
            let last = self
                .last_counts
                .entry(slot)
                .or_insert_with(|| vec![0; counted.len()]);
            let mut sandbox = None;
            for (i, &nr) in counted.iter().enumerate() {
                let total = counts.get(slot * NR_SLOTS + nr);
                if total <= last[i] {
                    continue;
                }
                let delta = total - last[i];
                last[i] = total;
                let sandbox = sandbox.get_or_insert_with(|| self.registry.get(watch_id));
                let name = syscalls::Sysno::new(nr as usize).map_or("unknown", |s| s.name());
                self.batchers.count(&CountRow {
                    time_ns: now_ns,
                    host: &self.host,
                    sandbox_id: sandbox.as_deref(),
                    cgroup_id: watch_id,
                    syscall: name,
                    syscall_nr: nr as i32,
                    count: delta,
                    window_ms,
                })?;
            }
        }
        // Unwatched since the last window: their final counts are in; clean the slot for reuse.
        for &(_, slot) in &retired {
            counts.clear_slot(slot);
            self.last_counts.remove(&slot);
            slots.lock().expect("slot lock").release(slot);
        }
        for k in 0..kind::COUNT {
            let total: u64 = drops
                .get(&k, 0)
                .map_err(|e| CollectorError::Probe(format!("reading drop counters: {e}")))?
                .iter()
                .sum();
            let last = std::mem::replace(&mut self.last_kernel_drops[k as usize], total);
            if total > last {
                let kind_name = kind::name(k as u8);
                warn!(
                    kind = kind_name,
                    lost = total - last,
                    total,
                    "kernel dropped records (ring buffer full)"
                );
                self.batchers.drop_row(&DropRow {
                    time_ns: now_ns,
                    host: &self.host,
                    source: "kernel",
                    kind: kind_name,
                    count: total - last,
                    total,
                })?;
            }
            let total = self.collector_drops[k as usize];
            let last = std::mem::replace(&mut self.reported_collector_drops[k as usize], total);
            if total > last {
                let kind_name = kind::name(k as u8);
                warn!(kind = kind_name, lost = total - last, "undecodable records");
                self.batchers.drop_row(&DropRow {
                    time_ns: now_ns,
                    host: &self.host,
                    source: "collector",
                    kind: kind_name,
                    count: total - last,
                    total,
                })?;
            }
        }
        debug!(records = self.records, "counters polled");
        Ok(())
    }

    fn drop_totals(&self) -> DropTotals {
        let mut d = DropTotals::default();
        for k in 0..kind::COUNT as usize {
            if self.last_kernel_drops[k] > 0 {
                d.kernel
                    .insert(kind::name(k as u8), self.last_kernel_drops[k]);
            }
            if self.collector_drops[k] > 0 {
                d.collector
                    .insert(kind::name(k as u8), self.collector_drops[k]);
            }
        }
        d
    }
}
