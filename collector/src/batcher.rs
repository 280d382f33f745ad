//! Rows in, sealed `RecordBatch`es out: one builder per table, sealed when it holds `max_rows`,
//! when its first row is `max_age` old, or when a row falls into another hour (each batch lies in
//! one `date=/hour=` partition).

use std::time::{Duration, Instant};

use sandwatch_schema::{
    AlertDeliveriesBuilder, AlertsBuilder, ApiCallRow, ApiCallsBuilder, BatchBuilder, CountRow, CountsBuilder, DropRow,
    DropsBuilder, FileEvent, FileEventsBuilder, NetworkEvent, NetworkEventsBuilder, ProcessEvent,
    ProcessEventsBuilder, SandboxEvent, SandboxMetricsBuilder, SandboxMetricsRow, SandboxesBuilder,
    SyscallEvent, SyscallEventsBuilder, Table, TableBatch,
};

use crate::CollectorError;

const NS_PER_HOUR: i64 = 3_600_000_000_000;

#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_age: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_rows: 8192,
            max_age: Duration::from_millis(100),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct SlotState {
    opened: Option<Instant>,
    hour: i64,
}

pub struct Batchers {
    limits: BatchLimits,
    process: ProcessEventsBuilder,
    file: FileEventsBuilder,
    network: NetworkEventsBuilder,
    syscall: SyscallEventsBuilder,
    counts: CountsBuilder,
    sandboxes: SandboxesBuilder,
    sandbox_metrics: SandboxMetricsBuilder,
    alerts: AlertsBuilder,
    alert_deliveries: AlertDeliveriesBuilder,
    drops: DropsBuilder,
    api_calls: ApiCallsBuilder,
    state: [SlotState; Table::ALL.len()],
    sealed: Vec<TableBatch>,
    /// Rows appended per table since start, for the summary.
    pub rows: [u64; Table::ALL.len()],
}

fn index(t: Table) -> usize {
    Table::ALL
        .iter()
        .position(|x| *x == t)
        .expect("every table is in ALL")
}

macro_rules! push_row {
    ($self:ident, $field:ident, $table:expr, $time:expr, $row:expr) => {{
        $self.before($table, $time)?;
        $self.$field.append($row);
        $self.after($table)
    }};
}

impl Batchers {
    pub fn new(limits: BatchLimits) -> Self {
        let cap = limits.max_rows.min(1 << 16);
        Self {
            limits,
            process: ProcessEventsBuilder::new(cap / 8),
            file: FileEventsBuilder::new(cap),
            network: NetworkEventsBuilder::new(cap / 8),
            syscall: SyscallEventsBuilder::new(cap / 8),
            counts: CountsBuilder::new(64),
            sandboxes: SandboxesBuilder::new(8),
            sandbox_metrics: SandboxMetricsBuilder::new(64),
            alerts: AlertsBuilder::new(8),
            alert_deliveries: AlertDeliveriesBuilder::new(8),
            drops: DropsBuilder::new(8),
            api_calls: ApiCallsBuilder::new(64),
            state: Default::default(),
            sealed: Vec::new(),
            rows: [0; Table::ALL.len()],
        }
    }

    fn builder(&mut self, t: Table) -> &mut dyn BatchBuilder {
        match t {
            Table::ProcessEvents => &mut self.process,
            Table::FileEvents => &mut self.file,
            Table::NetworkEvents => &mut self.network,
            Table::SyscallEvents => &mut self.syscall,
            Table::SyscallCounts => &mut self.counts,
            Table::Sandboxes => &mut self.sandboxes,
            Table::SandboxMetrics => &mut self.sandbox_metrics,
            Table::Alerts => &mut self.alerts,
            Table::AlertDeliveries => &mut self.alert_deliveries,
            Table::Drops => &mut self.drops,
            Table::ApiCalls => &mut self.api_calls,
        }
    }

    fn before(&mut self, t: Table, time_ns: i64) -> Result<(), CollectorError> {
        let hour = time_ns.div_euclid(NS_PER_HOUR);
        let i = index(t);
        if self.state[i].opened.is_some() && self.state[i].hour != hour {
            self.seal(t)?;
        }
        if self.state[i].opened.is_none() {
            self.state[i] = SlotState {
                opened: Some(Instant::now()),
                hour,
            };
        }
        Ok(())
    }

    fn after(&mut self, t: Table) -> Result<(), CollectorError> {
        self.rows[index(t)] += 1;
        if self.builder(t).len() >= self.limits.max_rows {
            self.seal(t)?;
        }
        Ok(())
    }

    pub fn process(&mut self, e: &ProcessEvent<'_>) -> Result<(), CollectorError> {
        push_row!(self, process, Table::ProcessEvents, e.common.time_ns, e)
    }

    pub fn file(&mut self, e: &FileEvent<'_>) -> Result<(), CollectorError> {
        push_row!(self, file, Table::FileEvents, e.common.time_ns, e)
    }

    pub fn network(&mut self, e: &NetworkEvent<'_>) -> Result<(), CollectorError> {
        push_row!(self, network, Table::NetworkEvents, e.common.time_ns, e)
    }

    pub fn syscall(&mut self, e: &SyscallEvent<'_>) -> Result<(), CollectorError> {
        push_row!(self, syscall, Table::SyscallEvents, e.common.time_ns, e)
    }

    pub fn count(&mut self, e: &CountRow<'_>) -> Result<(), CollectorError> {
        push_row!(self, counts, Table::SyscallCounts, e.time_ns, e)
    }

    pub fn drop_row(&mut self, e: &DropRow<'_>) -> Result<(), CollectorError> {
        push_row!(self, drops, Table::Drops, e.time_ns, e)
    }

    pub fn sandbox_event(&mut self, e: &SandboxEvent<'_>) -> Result<(), CollectorError> {
        push_row!(self, sandboxes, Table::Sandboxes, e.time_ns, e)
    }

    pub fn sandbox_metrics(&mut self, e: &SandboxMetricsRow<'_>) -> Result<(), CollectorError> {
        push_row!(self, sandbox_metrics, Table::SandboxMetrics, e.time_ns, e)
    }

    pub fn api_call(&mut self, e: &ApiCallRow<'_>) -> Result<(), CollectorError> {
        push_row!(self, api_calls, Table::ApiCalls, e.time_ns, e)
    }

    fn seal(&mut self, t: Table) -> Result<(), CollectorError> {
        // A consumer that follows processes (the rule engine's process tree) must see a
        // process's exec before its file, network and syscall rows: process rows decoded so far
        // go out first.
        if matches!(
            t,
            Table::FileEvents | Table::NetworkEvents | Table::SyscallEvents
        ) && !self.process.is_empty()
        {
            self.seal(Table::ProcessEvents)?;
        }
        self.state[index(t)].opened = None;
        let builder = self.builder(t);
        if builder.is_empty() {
            return Ok(());
        }
        let batch = builder
            .finish()
            .map_err(|e| CollectorError::Internal(format!("building a {t} batch: {e}")))?;
        self.sealed.push(TableBatch { table: t, batch });
        Ok(())
    }

    /// Seals every table whose oldest row has waited `max_age`.
    pub fn seal_aged(&mut self, now: Instant) -> Result<(), CollectorError> {
        for t in Table::ALL {
            if let Some(opened) = self.state[index(t)].opened
                && now.duration_since(opened) >= self.limits.max_age
            {
                self.seal(t)?;
            }
        }
        Ok(())
    }

    pub fn seal_all(&mut self) -> Result<(), CollectorError> {
        for t in Table::ALL {
            self.seal(t)?;
        }
        Ok(())
    }

    /// The batches sealed since the last call.
    pub fn take_sealed(&mut self) -> Vec<TableBatch> {
        std::mem::take(&mut self.sealed)
    }

    /// When the oldest open batch must be sealed, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state
            .iter()
            .filter_map(|s| s.opened)
            .min()
            .map(|t| t + self.limits.max_age)
    }
}

#[cfg(test)]
mod tests {
    use sandwatch_schema::Common;

    use super::*;

    fn file_at(time_ns: i64) -> FileEvent<'static> {
        FileEvent {
            common: Common {
                time_ns,
                host: "h",
                comm: "c",
                event: "openat",
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn seals_by_size_and_by_hour() {
        let mut b = Batchers::new(BatchLimits {
            max_rows: 3,
            max_age: Duration::from_secs(3600),
        });
        for i in 0..7 {
            b.file(&file_at(i)).unwrap();
        }
        let sealed = b.take_sealed();
        assert_eq!(
            sealed
                .iter()
                .map(|s| s.batch.num_rows())
                .collect::<Vec<_>>(),
            vec![3, 3]
        );
        // One row left open in hour 0; a row in hour 1 seals it first.
        b.file(&file_at(NS_PER_HOUR + 5)).unwrap();
        assert_eq!(
            b.take_sealed()
                .iter()
                .map(|s| s.batch.num_rows())
                .collect::<Vec<_>>(),
            vec![1]
        );
        b.seal_all().unwrap();
        assert_eq!(b.take_sealed().len(), 1);
        assert_eq!(b.rows[index(Table::FileEvents)], 8);
    }

    #[test]
    fn seals_by_age() {
        let mut b = Batchers::new(BatchLimits {
            max_rows: 100,
            max_age: Duration::from_millis(100),
        });
        b.file(&file_at(1)).unwrap();
        let deadline = b.next_deadline().unwrap();
        b.seal_aged(deadline - Duration::from_millis(1)).unwrap();
        assert!(b.take_sealed().is_empty());
        b.seal_aged(deadline).unwrap();
        assert_eq!(b.take_sealed().len(), 1);
        assert!(b.next_deadline().is_none());
    }
}
