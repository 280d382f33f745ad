//! Builders: typed events in, `RecordBatch`es out, one builder per table.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
        TimestampNanosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    },
};
use arrow_schema::{ArrowError, SchemaRef};

use crate::{
    Table,
    events::{
        AlertDeliveryRow, AlertRow, ApiCallRow, Common, CountRow, DropRow, FileEvent, NetworkEvent,
        ProcessEvent, SandboxEvent, SandboxMetricsRow, SyscallEvent,
    },
};

/// What every table builder can do without knowing its event type: the batching layer seals
/// builders through this.
pub trait BatchBuilder: Send {
    fn table(&self) -> Table;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn finish(&mut self) -> Result<RecordBatch, ArrowError>;
}

fn time_builder(capacity: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC")
}

fn strings(capacity: usize) -> StringBuilder {
    StringBuilder::with_capacity(capacity, capacity * 16)
}

struct CommonBuilder {
    time: TimestampNanosecondBuilder,
    host: StringBuilder,
    sandbox_id: StringBuilder,
    cgroup_id: UInt64Builder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    ppid: UInt32Builder,
    uid: UInt32Builder,
    gid: UInt32Builder,
    comm: StringBuilder,
    exe: StringBuilder,
    event: StringBuilder,
    syscall: StringBuilder,
    ret: Int64Builder,
}

impl CommonBuilder {
    fn new(capacity: usize) -> Self {
        Self {
            time: time_builder(capacity),
            host: strings(capacity),
            sandbox_id: strings(capacity),
            cgroup_id: UInt64Builder::with_capacity(capacity),
            pid: UInt32Builder::with_capacity(capacity),
            tid: UInt32Builder::with_capacity(capacity),
            ppid: UInt32Builder::with_capacity(capacity),
            uid: UInt32Builder::with_capacity(capacity),
            gid: UInt32Builder::with_capacity(capacity),
            comm: strings(capacity),
            exe: strings(capacity),
            event: strings(capacity),
            syscall: strings(capacity),
            ret: Int64Builder::with_capacity(capacity),
        }
    }

    fn append(&mut self, c: &Common<'_>) {
        self.time.append_value(c.time_ns);
        self.host.append_value(c.host);
        self.sandbox_id.append_option(c.sandbox_id);
        self.cgroup_id.append_value(c.cgroup_id);
        self.pid.append_value(c.pid);
        self.tid.append_value(c.tid);
        self.ppid.append_option(c.ppid);
        self.uid.append_value(c.uid);
        self.gid.append_value(c.gid);
        self.comm.append_value(c.comm);
        self.exe.append_option(c.exe);
        self.event.append_value(c.event);
        self.syscall.append_option(c.syscall);
        self.ret.append_option(c.ret);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.time.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.sandbox_id.finish()),
            Arc::new(self.cgroup_id.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.ppid.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.gid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.exe.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.syscall.finish()),
            Arc::new(self.ret.finish()),
        ]
    }
}

/// Declares a table builder: `$col: $builder = $init` for each table-specific column, and how an
/// event fills them. Columns are finished in declaration order, which is the schema's order.
macro_rules! table_builder {
    (
        $(#[$doc:meta])* $name:ident, $table:expr, $event:ident, common: $has_common:tt,
        columns { $( $col:ident : $ty:ty = $init:expr ),* $(,)? }
        append($self:ident, $e:ident) $body:block
    ) => {
        $(#[$doc])*
        pub struct $name {
            schema: SchemaRef,
            rows: usize,
            common: Option<CommonBuilder>,
            $( $col: $ty, )*
        }

        impl $name {
            pub fn new(capacity: usize) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Self {
                    schema: $table.schema(),
                    rows: 0,
                    common: table_builder!(@common $has_common, capacity),
                    $( $col: ($init)(capacity), )*
                }
            }

            /// Rows appended since the last [`finish`](Self::finish).
            pub fn len(&self) -> usize {
                self.rows
            }

            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }

            pub fn append(&mut $self, $e: &$event<'_>) {
                $self.rows += 1;
                $body
            }

            /// The rows appended so far as one batch; the builder starts empty again.
            pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
                <Self as BatchBuilder>::finish(self)
            }
        }

        impl BatchBuilder for $name {
            fn table(&self) -> Table {
                $table
            }

            fn len(&self) -> usize {
                self.rows
            }

            fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
                let mut columns: Vec<ArrayRef> = match self.common.as_mut() {
                    Some(c) => c.finish(),
                    None => Vec::new(),
                };
                $( columns.push(Arc::new(self.$col.finish())); )*
                self.rows = 0;
                RecordBatch::try_new(self.schema.clone(), columns)
            }
        }
    };
    (@common true, $cap:ident) => { Some(CommonBuilder::new($cap)) };
    (@common false, $cap:ident) => { None };
}

fn append_argv(b: &mut ListBuilder<StringBuilder>, argv: Option<&[u8]>) {
    match argv {
        None => b.append_null(),
        Some(bytes) => {
            let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
            if !bytes.is_empty() {
                for arg in bytes.split(|&c| c == 0) {
                    b.values().append_value(String::from_utf8_lossy(arg));
                }
            }
            b.append(true);
        }
    }
}

table_builder! {
    /// Builds `process_events`.
    ProcessEventsBuilder, Table::ProcessEvents, ProcessEvent, common: true,
    columns {
        filename: StringBuilder = strings,
        argv: ListBuilder<StringBuilder> = |_| ListBuilder::new(StringBuilder::new()),
        argv_truncated: BooleanBuilder = BooleanBuilder::with_capacity,
        cwd: StringBuilder = strings,
        child_pid: UInt32Builder = UInt32Builder::with_capacity,
        clone_flags: UInt64Builder = UInt64Builder::with_capacity,
        exit_code: Int32Builder = Int32Builder::with_capacity,
        exit_signal: Int32Builder = Int32Builder::with_capacity,
        target_pid: Int64Builder = Int64Builder::with_capacity,
        signal: Int32Builder = Int32Builder::with_capacity,
        ptrace_request: Int64Builder = Int64Builder::with_capacity,
        id_args: ListBuilder<Int64Builder> = |_| ListBuilder::new(Int64Builder::new()),
        tty: UInt32Builder = UInt32Builder::with_capacity,
        loginuid: Int64Builder = Int64Builder::with_capacity,
        cap_effective: UInt64Builder = UInt64Builder::with_capacity,
        cap_permitted: UInt64Builder = UInt64Builder::with_capacity,
        cap_inheritable: UInt64Builder = UInt64Builder::with_capacity,
        exe_from_memfd: BooleanBuilder = BooleanBuilder::with_capacity,
        exe_written_in_sandbox: BooleanBuilder = BooleanBuilder::with_capacity,
        exe_ctime: TimestampNanosecondBuilder = time_builder,
    }
    append(self, e) {
        self.common.as_mut().expect("event table").append(&e.common);
        self.filename.append_option(e.filename);
        append_argv(&mut self.argv, e.argv);
        self.argv_truncated.append_option(e.argv_truncated);
        self.cwd.append_option(e.cwd);
        self.child_pid.append_option(e.child_pid);
        self.clone_flags.append_option(e.clone_flags);
        self.exit_code.append_option(e.exit_code);
        self.exit_signal.append_option(e.exit_signal);
        self.target_pid.append_option(e.target_pid);
        self.signal.append_option(e.signal);
        self.ptrace_request.append_option(e.ptrace_request);
        match e.id_args {
            Some(ids) => {
                self.id_args.values().append_slice(ids);
                self.id_args.append(true);
            }
            None => self.id_args.append_null(),
        }
        self.tty.append_option(e.tty);
        self.loginuid.append_option(e.loginuid);
        self.cap_effective.append_option(e.cap_effective);
        self.cap_permitted.append_option(e.cap_permitted);
        self.cap_inheritable.append_option(e.cap_inheritable);
        self.exe_from_memfd.append_option(e.exe_from_memfd);
        self.exe_written_in_sandbox.append_option(e.exe_written_in_sandbox);
        self.exe_ctime.append_option(e.exe_ctime_ns);
    }
}

table_builder! {
    /// Builds `file_events`.
    FileEventsBuilder, Table::FileEvents, FileEvent, common: true,
    columns {
        path: StringBuilder = strings,
        path2: StringBuilder = strings,
        path_truncated: BooleanBuilder = BooleanBuilder::with_capacity,
        dirfd: Int32Builder = Int32Builder::with_capacity,
        flags: Int64Builder = Int64Builder::with_capacity,
        flags_text: StringBuilder = strings,
        mode: UInt32Builder = UInt32Builder::with_capacity,
        owner_uid: Int64Builder = Int64Builder::with_capacity,
        owner_gid: Int64Builder = Int64Builder::with_capacity,
        fstype: StringBuilder = strings,
    }
    append(self, e) {
        self.common.as_mut().expect("event table").append(&e.common);
        self.path.append_option(e.path);
        self.path2.append_option(e.path2);
        self.path_truncated.append_value(e.path_truncated);
        self.dirfd.append_option(e.dirfd);
        self.flags.append_option(e.flags);
        self.flags_text.append_option(e.flags_text);
        self.mode.append_option(e.mode);
        self.owner_uid.append_option(e.owner_uid);
        self.owner_gid.append_option(e.owner_gid);
        self.fstype.append_option(e.fstype);
    }
}

table_builder! {
    /// Builds `network_events`.
    NetworkEventsBuilder, Table::NetworkEvents, NetworkEvent, common: true,
    columns {
        fd: Int64Builder = Int64Builder::with_capacity,
        family: StringBuilder = strings,
        sock_type: StringBuilder = strings,
        protocol: StringBuilder = strings,
        saddr: StringBuilder = strings,
        sport: UInt16Builder = UInt16Builder::with_capacity,
        daddr: StringBuilder = strings,
        dport: UInt16Builder = UInt16Builder::with_capacity,
        verdict: StringBuilder = strings,
        bytes: Int64Builder = Int64Builder::with_capacity,
    }
    append(self, e) {
        self.common.as_mut().expect("event table").append(&e.common);
        self.fd.append_option(e.fd);
        self.family.append_option(e.family);
        self.sock_type.append_option(e.sock_type);
        self.protocol.append_option(e.protocol);
        self.saddr.append_option(e.saddr);
        self.sport.append_option(e.sport);
        self.daddr.append_option(e.daddr);
        self.dport.append_option(e.dport);
        self.verdict.append_option(e.verdict);
        self.bytes.append_option(e.bytes);
    }
}

table_builder! {
    /// Builds `syscall_events`.
    SyscallEventsBuilder, Table::SyscallEvents, SyscallEvent, common: true,
    columns {
        args: ListBuilder<UInt64Builder> = |_| ListBuilder::new(UInt64Builder::new()),
        refused: BooleanBuilder = BooleanBuilder::with_capacity,
    }
    append(self, e) {
        self.common.as_mut().expect("event table").append(&e.common);
        match e.args {
            Some(args) => {
                self.args.values().append_slice(args);
                self.args.append(true);
            }
            None => self.args.append_null(),
        }
        self.refused.append_value(e.refused);
    }
}

table_builder! {
    /// Builds `syscall_counts`.
    CountsBuilder, Table::SyscallCounts, CountRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        sandbox_id: StringBuilder = strings,
        cgroup_id: UInt64Builder = UInt64Builder::with_capacity,
        syscall: StringBuilder = strings,
        syscall_nr: Int32Builder = Int32Builder::with_capacity,
        count: UInt64Builder = UInt64Builder::with_capacity,
        window_ms: UInt32Builder = UInt32Builder::with_capacity,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.sandbox_id.append_option(e.sandbox_id);
        self.cgroup_id.append_value(e.cgroup_id);
        self.syscall.append_value(e.syscall);
        self.syscall_nr.append_value(e.syscall_nr);
        self.count.append_value(e.count);
        self.window_ms.append_value(e.window_ms);
    }
}

table_builder! {
    /// Builds `sandboxes`.
    SandboxesBuilder, Table::Sandboxes, SandboxEvent, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        sandbox_id: StringBuilder = strings,
        event: StringBuilder = strings,
        command: StringBuilder = strings,
        exit_code: Int32Builder = Int32Builder::with_capacity,
        signal: Int32Builder = Int32Builder::with_capacity,
        reason: StringBuilder = strings,
        policy_hash: StringBuilder = |cap| StringBuilder::with_capacity(cap, cap * 64),
        profile: StringBuilder = strings,
        detail: StringBuilder = strings,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.sandbox_id.append_value(e.sandbox_id);
        self.event.append_value(e.event.name());
        self.command.append_option(e.command);
        self.exit_code.append_option(e.exit_code);
        self.signal.append_option(e.signal);
        self.reason.append_option(e.reason);
        self.policy_hash.append_value(e.policy_hash);
        self.profile.append_option(e.profile);
        self.detail.append_option(e.detail);
    }
}

/// Bytes as the `_mb` columns count them: MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

table_builder! {
    /// Builds `sandbox_metrics`.
    SandboxMetricsBuilder, Table::SandboxMetrics, SandboxMetricsRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        sandbox_id: StringBuilder = strings,
        cpu_usage_percent: Float64Builder = Float64Builder::with_capacity,
        memory_usage_mb: Float64Builder = Float64Builder::with_capacity,
        memory_limit_mb: Float64Builder = Float64Builder::with_capacity,
        disk_usage_mb: Float64Builder = Float64Builder::with_capacity,
        network_rx_bytes: UInt64Builder = UInt64Builder::with_capacity,
        network_tx_bytes: UInt64Builder = UInt64Builder::with_capacity,
        process_count: UInt32Builder = UInt32Builder::with_capacity,
        file_descriptors: UInt32Builder = UInt32Builder::with_capacity,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.sandbox_id.append_value(e.sandbox_id);
        self.cpu_usage_percent.append_value(e.cpu_usage_percent);
        self.memory_usage_mb.append_value(mib(e.memory_usage_bytes));
        self.memory_limit_mb.append_option(e.memory_limit_bytes.map(mib));
        self.disk_usage_mb.append_value(mib(e.disk_usage_bytes));
        self.network_rx_bytes.append_option(e.network_rx_bytes);
        self.network_tx_bytes.append_option(e.network_tx_bytes);
        self.process_count.append_value(e.process_count);
        self.file_descriptors.append_value(e.file_descriptors);
    }
}

fn append_texts(b: &mut ListBuilder<StringBuilder>, items: &[String]) {
    for item in items {
        b.values().append_value(item);
    }
    b.append(true);
}

table_builder! {
    /// Builds `alerts`.
    AlertsBuilder, Table::Alerts, AlertRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        alert_id: StringBuilder = strings,
        dedup_key: StringBuilder = strings,
        sandbox_id: StringBuilder = strings,
        rule: StringBuilder = strings,
        priority: StringBuilder = strings,
        tags: ListBuilder<StringBuilder> = |_| ListBuilder::new(StringBuilder::new()),
        output: StringBuilder = |cap| StringBuilder::with_capacity(cap, cap * 128),
        evidence: StringBuilder = |cap| StringBuilder::with_capacity(cap, cap * 128),
        actions: ListBuilder<StringBuilder> = |_| ListBuilder::new(StringBuilder::new()),
        actions_taken: StringBuilder = strings,
        fields: StringBuilder = |cap| StringBuilder::with_capacity(cap, cap * 128),
        event_table: StringBuilder = strings,
        event_time: TimestampNanosecondBuilder = time_builder,
        event_pid: UInt32Builder = UInt32Builder::with_capacity,
        event_tid: UInt32Builder = UInt32Builder::with_capacity,
        score: Float64Builder = Float64Builder::with_capacity,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.alert_id.append_value(e.alert_id);
        self.dedup_key.append_value(e.dedup_key);
        self.sandbox_id.append_option(e.sandbox_id);
        self.rule.append_value(e.rule);
        self.priority.append_value(e.priority);
        append_texts(&mut self.tags, e.tags);
        self.output.append_value(e.output);
        self.evidence.append_value(e.evidence);
        append_texts(&mut self.actions, e.actions);
        self.actions_taken.append_value(e.actions_taken);
        self.fields.append_value(e.fields);
        self.event_table.append_option(e.event.map(|x| x.0));
        self.event_time.append_option(e.event.map(|x| x.1));
        self.event_pid.append_option(e.event.map(|x| x.2));
        self.event_tid.append_option(e.event.map(|x| x.3));
        self.score.append_option(e.score);
    }
}

table_builder! {
    /// Builds `alert_deliveries`.
    AlertDeliveriesBuilder, Table::AlertDeliveries, AlertDeliveryRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        alert_id: StringBuilder = strings,
        dedup_key: StringBuilder = strings,
        hook: StringBuilder = strings,
        hook_type: StringBuilder = strings,
        state: StringBuilder = strings,
        attempts: UInt32Builder = UInt32Builder::with_capacity,
        status_code: UInt16Builder = UInt16Builder::with_capacity,
        error: StringBuilder = strings,
        latency_ms: Float64Builder = Float64Builder::with_capacity,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.alert_id.append_value(e.alert_id);
        self.dedup_key.append_value(e.dedup_key);
        self.hook.append_value(e.hook);
        self.hook_type.append_value(e.hook_type);
        self.state.append_value(e.state.name());
        self.attempts.append_value(e.attempts);
        self.status_code.append_option(e.status_code);
        self.error.append_option(e.error);
        self.latency_ms.append_option(e.latency_ms);
    }
}

table_builder! {
    /// Builds `drops`.
    DropsBuilder, Table::Drops, DropRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        source: StringBuilder = strings,
        kind: StringBuilder = strings,
        count: UInt64Builder = UInt64Builder::with_capacity,
        total: UInt64Builder = UInt64Builder::with_capacity,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.source.append_value(e.source);
        self.kind.append_value(e.kind);
        self.count.append_value(e.count);
        self.total.append_value(e.total);
    }
}

table_builder! {
    /// Builds `api_calls`.
    ApiCallsBuilder, Table::ApiCalls, ApiCallRow, common: false,
    columns {
        time: TimestampNanosecondBuilder = time_builder,
        host: StringBuilder = strings,
        key_fingerprint: StringBuilder = strings,
        api: StringBuilder = strings,
        method: StringBuilder = strings,
        path: StringBuilder = strings,
        sandbox_id: StringBuilder = strings,
        status: UInt16Builder = UInt16Builder::with_capacity,
        latency_ms: Float64Builder = Float64Builder::with_capacity,
        remote_addr: StringBuilder = strings,
        user_agent: StringBuilder = strings,
    }
    append(self, e) {
        self.time.append_value(e.time_ns);
        self.host.append_value(e.host);
        self.key_fingerprint.append_option(e.key_fingerprint);
        self.api.append_value(e.api);
        self.method.append_value(e.method);
        self.path.append_value(e.path);
        self.sandbox_id.append_option(e.sandbox_id);
        self.status.append_value(e.status);
        self.latency_ms.append_value(e.latency_ms);
        self.remote_addr.append_option(e.remote_addr);
        self.user_agent.append_option(e.user_agent);
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{
        Array, Float64Array, Int32Array, ListArray, StringArray, UInt16Array, UInt64Array,
    };

    use crate::{DeliveryState, SandboxLifecycle};

    use super::*;

    fn common() -> Common<'static> {
        Common {
            time_ns: 1,
            host: "h",
            comm: "c",
            event: "execve",
            ..Default::default()
        }
    }

    #[test]
    fn every_builder_matches_its_schema() {
        let mut p = ProcessEventsBuilder::new(4);
        p.append(&ProcessEvent {
            common: common(),
            argv: Some(b"ls\0-l\0"),
            ..Default::default()
        });
        p.append(&ProcessEvent {
            common: common(),
            id_args: Some(&[0, -1]),
            ..Default::default()
        });
        let batch = p.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let argv = batch
            .column_by_name("argv")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        let first = argv.value(0);
        let first = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            (first.value(0), first.value(1), first.len()),
            ("ls", "-l", 2)
        );
        assert!(argv.is_null(1));
        assert_eq!(p.len(), 0, "finish starts a new batch");

        let mut f = FileEventsBuilder::new(1);
        f.append(&FileEvent {
            common: common(),
            path: Some("/etc/hostname"),
            ..Default::default()
        });
        assert_eq!(f.finish().unwrap().num_rows(), 1);
        let mut n = NetworkEventsBuilder::new(1);
        n.append(&NetworkEvent {
            common: common(),
            dport: Some(53),
            ..Default::default()
        });
        assert_eq!(n.finish().unwrap().num_rows(), 1);
        let mut s = SyscallEventsBuilder::new(1);
        s.append(&SyscallEvent {
            common: common(),
            args: Some(&[1, 2]),
            refused: true,
        });
        assert_eq!(s.finish().unwrap().num_rows(), 1);
        let mut c = CountsBuilder::new(1);
        c.append(&CountRow {
            time_ns: 1,
            host: "h",
            sandbox_id: None,
            cgroup_id: 2,
            syscall: "openat",
            syscall_nr: 257,
            count: 3,
            window_ms: 1000,
        });
        assert_eq!(c.finish().unwrap().num_rows(), 1);
        let mut d = DropsBuilder::new(1);
        d.append(&DropRow {
            time_ns: 1,
            host: "h",
            source: "kernel",
            kind: "file",
            count: 1,
            total: 1,
        });
        assert_eq!(d.finish().unwrap().num_rows(), 1);
    }

    /// The facts of an exec row land in their typed columns; a row without them (a clone, an
    /// exec on a kernel that did not give them) has nulls there, never zeroes.
    #[test]
    fn exec_facts_fill_their_columns_or_stay_null() {
        use arrow_array::{BooleanArray, Int64Array, TimestampNanosecondArray, UInt32Array};
        let mut p = ProcessEventsBuilder::new(2);
        p.append(&ProcessEvent {
            common: common(),
            tty: Some(34816),
            loginuid: Some(-1),
            cap_effective: Some(1 << 21),
            cap_permitted: Some(u64::MAX >> 23),
            cap_inheritable: Some(0),
            exe_from_memfd: Some(true),
            exe_written_in_sandbox: Some(false),
            exe_ctime_ns: Some(1_700_000_000_123_456_789),
            ..Default::default()
        });
        p.append(&ProcessEvent {
            common: common(),
            clone_flags: Some(17),
            ..Default::default()
        });
        let batch = p.finish().unwrap();
        assert_eq!(batch.schema(), Table::ProcessEvents.schema());
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let tty = col("tty");
        let tty = tty.as_any().downcast_ref::<UInt32Array>().unwrap();
        assert_eq!(tty.value(0), 34816);
        let loginuid = col("loginuid");
        let loginuid = loginuid.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(loginuid.value(0), -1);
        for (name, want) in [
            ("cap_effective", 1u64 << 21),
            ("cap_permitted", u64::MAX >> 23),
            ("cap_inheritable", 0),
        ] {
            let caps = col(name);
            let caps = caps.as_any().downcast_ref::<UInt64Array>().unwrap();
            assert_eq!(caps.value(0), want, "{name}");
            assert!(caps.is_null(1), "{name} of a clone row");
        }
        let flag = |name: &str| {
            col(name)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone()
        };
        assert!(flag("exe_from_memfd").value(0));
        assert!(!flag("exe_written_in_sandbox").value(0));
        let ctime = col("exe_ctime");
        let ctime = ctime
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(ctime.value(0), 1_700_000_000_123_456_789);
        for name in [
            "tty",
            "loginuid",
            "exe_from_memfd",
            "exe_written_in_sandbox",
            "exe_ctime",
        ] {
            assert!(col(name).is_null(1), "{name} of a clone row");
        }
    }

    #[test]
    fn sandbox_builders_match_their_schemas() {
        let mut s = SandboxesBuilder::new(2);
        let event = SandboxEvent {
            time_ns: 1,
            host: "h",
            sandbox_id: "sw-1",
            event: SandboxLifecycle::Created,
            command: None,
            exit_code: None,
            signal: None,
            reason: None,
            policy_hash: "ab12",
            profile: Some("default"),
            detail: None,
        };
        s.append(&event);
        s.append(&SandboxEvent {
            event: SandboxLifecycle::Killed,
            command: Some("python3 job.py"),
            signal: Some(9),
            reason: Some("timeout"),
            ..event
        });
        let batch = s.finish().unwrap();
        assert_eq!(batch.schema(), Table::Sandboxes.schema());
        let text = |col: &str| {
            batch
                .column_by_name(col)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        assert_eq!(
            (text("event").value(0), text("event").value(1)),
            ("created", "killed")
        );
        assert!(text("reason").is_null(0));
        assert_eq!(text("reason").value(1), "timeout");
        let signal = batch.column_by_name("signal").unwrap();
        let signal = signal.as_any().downcast_ref::<Int32Array>().unwrap();
        assert!(signal.is_null(0));
        assert_eq!(signal.value(1), 9);

        let mut m = SandboxMetricsBuilder::new(2);
        let row = SandboxMetricsRow {
            time_ns: 1,
            host: "h",
            sandbox_id: "sw-1",
            cpu_usage_percent: 150.0,
            memory_usage_bytes: 3 << 19,
            memory_limit_bytes: Some(512 << 20),
            disk_usage_bytes: 1 << 20,
            network_rx_bytes: Some(10),
            network_tx_bytes: Some(20),
            process_count: 2,
            file_descriptors: 7,
        };
        m.append(&row);
        m.append(&SandboxMetricsRow {
            memory_limit_bytes: None,
            network_rx_bytes: None,
            network_tx_bytes: None,
            ..row
        });
        let batch = m.finish().unwrap();
        assert_eq!(batch.schema(), Table::SandboxMetrics.schema());
        let float = |col: &str| {
            batch
                .column_by_name(col)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        assert_eq!(float("memory_usage_mb").value(0), 1.5, "MiB");
        assert_eq!(float("memory_limit_mb").value(0), 512.0);
        assert!(float("memory_limit_mb").is_null(1), "no limit is null");
        assert_eq!(float("disk_usage_mb").value(1), 1.0);
        let rx = batch.column_by_name("network_rx_bytes").unwrap();
        let rx = rx.as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(rx.value(0), 10);
        assert!(rx.is_null(1), "host network: null");
    }

    #[test]
    fn alert_builders_match_their_schemas() {
        let tags = vec!["network".to_owned(), "mitre_exfiltration".to_owned()];
        let actions = vec!["alert".to_owned(), "kill".to_owned()];
        let mut a = AlertsBuilder::new(2);
        let row = AlertRow {
            time_ns: 1,
            host: "h",
            alert_id: "a-1",
            dedup_key: "k1",
            sandbox_id: Some("sw-1"),
            rule: "Sandbox shell connected out",
            priority: "critical",
            tags: &tags,
            output: "shell connected out",
            evidence: r#"[{"table":"network_events","time_ns":1,"pid":2,"tid":2,"event":"connect"}]"#,
            actions: &actions,
            actions_taken: r#"[{"action":"kill","at_ns":2,"ok":true}]"#,
            fields: r#"{"proc.name":"sh"}"#,
            event: Some(("network_events", 1, 2, 2)),
            score: None,
        };
        a.append(&row);
        a.append(&AlertRow {
            sandbox_id: None,
            tags: &[],
            actions: &[],
            ..row
        });
        let batch = a.finish().unwrap();
        assert_eq!(batch.schema(), Table::Alerts.schema());
        let list = |col: &str, row: usize| -> Vec<String> {
            let l = batch
                .column_by_name(col)
                .unwrap()
                .as_any()
                .downcast_ref::<ListArray>()
                .unwrap()
                .value(row);
            let s = l.as_any().downcast_ref::<StringArray>().unwrap();
            s.iter().map(|v| v.unwrap().to_owned()).collect()
        };
        assert_eq!(list("tags", 0), tags);
        assert_eq!(list("actions", 0), actions);
        assert!(list("tags", 1).is_empty(), "no tags: an empty list");
        let sandbox = batch.column_by_name("sandbox_id").unwrap();
        assert!(!sandbox.is_null(0) && sandbox.is_null(1));

        let mut d = AlertDeliveriesBuilder::new(2);
        let row = AlertDeliveryRow {
            time_ns: 3,
            host: "h",
            alert_id: "a-1",
            dedup_key: "k1",
            hook: "oncall",
            hook_type: "webhook",
            state: DeliveryState::Retrying,
            attempts: 1,
            status_code: Some(500),
            error: Some("HTTP 500"),
            latency_ms: Some(1.5),
        };
        d.append(&row);
        d.append(&AlertDeliveryRow {
            state: DeliveryState::Failed,
            attempts: 2,
            status_code: None,
            error: Some("connection refused"),
            latency_ms: None,
            ..row
        });
        let batch = d.finish().unwrap();
        assert_eq!(batch.schema(), Table::AlertDeliveries.schema());
        let state = batch.column_by_name("state").unwrap();
        let state = state.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((state.value(0), state.value(1)), ("retrying", "failed"));
        let status = batch.column_by_name("status_code").unwrap();
        let status = status.as_any().downcast_ref::<UInt16Array>().unwrap();
        assert_eq!(status.value(0), 500);
        assert!(status.is_null(1), "no answer: no status");
    }

    #[test]
    fn api_calls_rows_keep_nulls_and_status() {
        let mut b = ApiCallsBuilder::new(2);
        let row = ApiCallRow {
            time_ns: 7,
            host: "h",
            key_fingerprint: Some("0123456789abcdef"),
            api: "control",
            method: "POST",
            path: "/sandboxes",
            sandbox_id: Some("sw-1"),
            status: 201,
            latency_ms: 2.5,
            remote_addr: Some("127.0.0.1:50000"),
            user_agent: Some("e2b-python-sdk/2.63.0"),
        };
        b.append(&row);
        b.append(&ApiCallRow {
            key_fingerprint: None,
            sandbox_id: None,
            status: 401,
            remote_addr: None,
            user_agent: None,
            ..row
        });
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema(), Table::ApiCalls.schema());
        let status = batch.column_by_name("status").unwrap();
        let status = status.as_any().downcast_ref::<UInt16Array>().unwrap();
        assert_eq!((status.value(0), status.value(1)), (201, 401));
        let key = batch.column_by_name("key_fingerprint").unwrap();
        assert!(!key.is_null(0) && key.is_null(1), "no valid key: null");
    }
}
