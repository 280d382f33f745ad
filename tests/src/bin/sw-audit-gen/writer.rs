//! Rows into batches, batches to the Parquet sink: as the collector's batcher does it, a batch
//! per table holds at most 8192 rows and lies in one hour, so each lands in one `date=/hour=`
//! partition.

use std::{cmp::Reverse, collections::BinaryHeap, sync::mpsc::SyncSender};

use sandwatch_schema::{
    AlertRow, AlertsBuilder, BatchBuilder, Common, FileEvent, FileEventsBuilder, NetworkEvent,
    NetworkEventsBuilder, ProcessEvent, ProcessEventsBuilder, SandboxEvent, SandboxMetricsBuilder,
    SandboxMetricsRow, SandboxesBuilder, SyscallEvent, SyscallEventsBuilder, Table, TableBatch,
};

use crate::{
    rng::Rng,
    sandbox::{Ev, Row, Spec},
};

/// The collector's largest batch.
const BATCH_ROWS: usize = 8192;
const HOUR_NS: i64 = 3_600_000_000_000;

/// The tables the generator writes, in the order of `Writer::builders`.
pub const TABLES: [Table; 7] = [
    Table::ProcessEvents,
    Table::FileEvents,
    Table::NetworkEvents,
    Table::SyscallEvents,
    Table::Sandboxes,
    Table::SandboxMetrics,
    Table::Alerts,
];

struct PendingAlert {
    time: i64,
    seq: u64,
    sandbox_id: String,
    rule: &'static str,
    priority: &'static str,
    tags: Vec<String>,
    actions: Vec<String>,
    output: String,
    fields: String,
    evidence: String,
    actions_taken: String,
    event: (&'static str, i64, u32, u32),
}

impl PartialEq for PendingAlert {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for PendingAlert {}
impl PartialOrd for PendingAlert {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PendingAlert {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

pub struct Writer {
    host: String,
    process: ProcessEventsBuilder,
    file: FileEventsBuilder,
    network: NetworkEventsBuilder,
    syscall: SyscallEventsBuilder,
    sandboxes: SandboxesBuilder,
    metrics: SandboxMetricsBuilder,
    alerts: AlertsBuilder,
    /// The hour (ns / 1 h) of the rows each builder holds.
    hours: [i64; 7],
    tx: SyncSender<TableBatch>,
    /// Rows written per table (`TABLES` order).
    pub rows: [u64; 7],
    pending: BinaryHeap<Reverse<PendingAlert>>,
    alert_seq: u64,
    rng: Rng,
}

impl Writer {
    pub fn new(host: &str, seed: u64, tx: SyncSender<TableBatch>) -> Self {
        Self {
            host: host.to_owned(),
            process: ProcessEventsBuilder::new(BATCH_ROWS),
            file: FileEventsBuilder::new(BATCH_ROWS),
            network: NetworkEventsBuilder::new(BATCH_ROWS),
            syscall: SyscallEventsBuilder::new(1024),
            sandboxes: SandboxesBuilder::new(1024),
            metrics: SandboxMetricsBuilder::new(BATCH_ROWS),
            alerts: AlertsBuilder::new(256),
            hours: [i64::MIN; 7],
            tx,
            rows: [0; 7],
            pending: BinaryHeap::new(),
            alert_seq: 0,
            rng: Rng::new(seed ^ 0xA1E7),
        }
    }

    fn builder(&mut self, slot: usize) -> &mut dyn BatchBuilder {
        match slot {
            0 => &mut self.process,
            1 => &mut self.file,
            2 => &mut self.network,
            3 => &mut self.syscall,
            4 => &mut self.sandboxes,
            5 => &mut self.metrics,
            _ => &mut self.alerts,
        }
    }

    fn seal(&mut self, slot: usize) -> anyhow::Result<()> {
        let b = self.builder(slot);
        if b.is_empty() {
            return Ok(());
        }
        let batch = b.finish()?;
        self.tx
            .send(TableBatch {
                table: TABLES[slot],
                batch,
            })
            .map_err(|_| anyhow::anyhow!("the Parquet sink stopped (see its error)"))
    }

    /// Before a row of `slot` at `time`: seals the builder if the row is in another hour.
    fn enter(&mut self, slot: usize, time: i64) -> anyhow::Result<()> {
        let hour = time.div_euclid(HOUR_NS);
        if self.hours[slot] != hour {
            self.seal(slot)?;
            self.hours[slot] = hour;
        }
        Ok(())
    }

    fn appended(&mut self, slot: usize) -> anyhow::Result<()> {
        self.rows[slot] += 1;
        if self.builder(slot).len() >= BATCH_ROWS {
            self.seal(slot)?;
        }
        Ok(())
    }

    fn common<'a>(host: &'a str, spec: &'a Spec, ev: &'a Ev) -> Common<'a> {
        let uid = spec.profile.uid;
        Common {
            time_ns: ev.time,
            host,
            sandbox_id: Some(&spec.id),
            cgroup_id: spec.cgroup_id,
            pid: ev.pid,
            tid: ev.tid,
            ppid: Some(ev.ppid),
            uid,
            gid: uid,
            comm: &ev.comm,
            exe: Some(&ev.exe),
            event: ev.event,
            syscall: (ev.event != "exit").then_some(ev.event),
            ret: ev.ret,
        }
    }

    /// Alerts whose time has come (they follow their event by a few ms).
    fn flush_alerts(&mut self, until: i64) -> anyhow::Result<()> {
        while self.pending.peek().is_some_and(|a| a.0.time <= until) {
            let Reverse(a) = self.pending.pop().expect("peeked");
            self.enter(6, a.time)?;
            let alert_id = format!("{:016x}-{:016x}", a.time, self.rng.next_u64());
            let dedup_key = self.rng.hex(32);
            self.alerts.append(&AlertRow {
                time_ns: a.time,
                host: &self.host,
                alert_id: &alert_id,
                dedup_key: &dedup_key,
                sandbox_id: Some(&a.sandbox_id),
                rule: a.rule,
                priority: a.priority,
                tags: &a.tags,
                output: &a.output,
                evidence: &a.evidence,
                actions: &a.actions,
                actions_taken: &a.actions_taken,
                fields: &a.fields,
                event: Some(a.event),
                score: None,
            });
            self.appended(6)?;
        }
        Ok(())
    }

    fn queue_alert(&mut self, spec: &Spec, table: &'static str, ev: &Ev) {
        let Some(alert) = &ev.alert else { return };
        let time = ev.time + alert.latency_ns;
        let kills = alert.actions.contains(&"kill");
        let actions_taken = if kills {
            format!(
                r#"[{{"action":"kill","at_ns":{},"ok":true,"detail":"cgroup.kill","latency_ms":{:.2}}}]"#,
                time + 300_000,
                (alert.latency_ns + 300_000) as f64 / 1e6
            )
        } else {
            "[]".to_owned()
        };
        self.alert_seq += 1;
        self.pending.push(Reverse(PendingAlert {
            time,
            seq: self.alert_seq,
            sandbox_id: spec.id.clone(),
            rule: alert.rule,
            priority: alert.priority,
            tags: alert.tags.iter().map(|t| (*t).to_owned()).collect(),
            actions: alert.actions.iter().map(|t| (*t).to_owned()).collect(),
            output: alert.output.clone(),
            fields: alert.fields.clone(),
            evidence: format!(
                r#"[{{"table":"{table}","time_ns":{},"pid":{},"tid":{},"event":"{}"}}]"#,
                ev.time, ev.pid, ev.tid, ev.event
            ),
            actions_taken,
            event: (table, ev.time, ev.pid, ev.tid),
        }));
    }

    pub fn append(&mut self, spec: &Spec, row: &Row) -> anyhow::Result<()> {
        self.flush_alerts(row.time())?;
        match row {
            Row::Process {
                ev,
                filename,
                argv,
                cwd,
                child_pid,
                clone_flags,
                exit_code,
                exit_signal,
                id_args,
                target,
                facts,
            } => {
                self.enter(0, ev.time)?;
                let common = Self::common(&self.host, spec, ev);
                let e = ProcessEvent {
                    common,
                    filename: filename.as_deref(),
                    argv: argv.as_deref(),
                    argv_truncated: argv.as_ref().map(|_| false),
                    cwd: *cwd,
                    child_pid: *child_pid,
                    clone_flags: *clone_flags,
                    exit_code: *exit_code,
                    exit_signal: *exit_signal,
                    target_pid: target.map(|t| t.0),
                    signal: target.map(|t| t.1),
                    ptrace_request: None,
                    id_args: id_args.as_ref().map(|a| &a[..]),
                    tty: facts.as_ref().map(|_| 0),
                    loginuid: facts.as_ref().map(|_| -1),
                    cap_effective: facts.as_ref().map(|_| 0),
                    cap_permitted: facts.as_ref().map(|_| 0),
                    cap_inheritable: facts.as_ref().map(|_| 0),
                    exe_from_memfd: facts.as_ref().map(|_| false),
                    exe_written_in_sandbox: facts.as_ref().map(|f| f.written_in_sandbox),
                    exe_ctime_ns: facts.as_ref().map(|f| f.ctime_ns),
                };
                self.process.append(&e);
                self.appended(0)?;
                self.queue_alert(spec, "process_events", ev);
            }
            Row::File {
                ev,
                path,
                path2,
                flags,
                flags_text,
                mode,
            } => {
                self.enter(1, ev.time)?;
                let e = FileEvent {
                    common: Self::common(&self.host, spec, ev),
                    path: Some(path),
                    path2: path2.as_deref(),
                    path_truncated: false,
                    dirfd: Some(-100),
                    flags: *flags,
                    flags_text: *flags_text,
                    mode: *mode,
                    owner_uid: None,
                    owner_gid: None,
                    fstype: None,
                };
                self.file.append(&e);
                self.appended(1)?;
                self.queue_alert(spec, "file_events", ev);
            }
            Row::Network {
                ev,
                fd,
                family,
                sock_type,
                protocol,
                saddr,
                sport,
                daddr,
                dport,
                bytes,
            } => {
                self.enter(2, ev.time)?;
                let e = NetworkEvent {
                    common: Self::common(&self.host, spec, ev),
                    fd: Some(*fd),
                    family: Some(family),
                    sock_type: Some(sock_type),
                    protocol: Some(protocol),
                    saddr: *saddr,
                    sport: *sport,
                    daddr: daddr.as_deref(),
                    dport: *dport,
                    verdict: None,
                    bytes: *bytes,
                };
                self.network.append(&e);
                self.appended(2)?;
                self.queue_alert(spec, "network_events", ev);
            }
            Row::Syscall { ev, args, refused } => {
                self.enter(3, ev.time)?;
                let e = SyscallEvent {
                    common: Self::common(&self.host, spec, ev),
                    args: args.as_ref().map(|a| &a[..]),
                    refused: *refused,
                };
                self.syscall.append(&e);
                self.appended(3)?;
                self.queue_alert(spec, "syscall_events", ev);
            }
            Row::Lifecycle {
                time,
                event,
                command,
                exit_code,
                signal,
                reason,
            } => {
                self.enter(4, *time)?;
                let e = SandboxEvent {
                    time_ns: *time,
                    host: &self.host,
                    sandbox_id: &spec.id,
                    event: *event,
                    command: command.as_deref(),
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: *reason,
                    policy_hash: &spec.policy_hash,
                    profile: Some(spec.profile.name),
                    detail: None,
                };
                self.sandboxes.append(&e);
                self.appended(4)?;
            }
            Row::Metrics {
                time,
                cpu_percent,
                memory_bytes,
                memory_limit_bytes,
                disk_bytes,
                network_bytes,
                processes,
                fds,
            } => {
                self.enter(5, *time)?;
                let e = SandboxMetricsRow {
                    time_ns: *time,
                    host: &self.host,
                    sandbox_id: &spec.id,
                    cpu_usage_percent: *cpu_percent,
                    memory_usage_bytes: *memory_bytes,
                    memory_limit_bytes: Some(*memory_limit_bytes),
                    disk_usage_bytes: *disk_bytes,
                    network_rx_bytes: network_bytes.map(|n| n.0),
                    network_tx_bytes: network_bytes.map(|n| n.1),
                    process_count: *processes,
                    file_descriptors: *fds,
                };
                self.metrics.append(&e);
                self.appended(5)?;
            }
        }
        Ok(())
    }

    /// Writes the alerts still pending and seals every builder.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_alerts(i64::MAX)?;
        for slot in 0..TABLES.len() {
            self.seal(slot)?;
        }
        Ok(())
    }
}
