//! Where a detector's alerts go: the alerts file (`--alerts`, one JSON object per line), the
//! `alerts` and `alert_deliveries` tables of the audit log, and the hooks dispatcher.
//!
//! The detector task owns one `Outputs` and is the only writer of all three; nothing else may
//! append to the alerts file or to the tables' sink while it runs. The tables are written by
//! their own [`ParquetSink`], not through the collector: alerts raised from the collector's last
//! batches, and deliveries finishing after it stopped, must still be recorded. An alert is in the
//! file and the table's builder, and durable in the hooks' outbox, before `write` returns.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sandwatch_collector::{ParquetOptions, ParquetSink};
use sandwatch_hooks::{
    Alert, DeliveryRecord, DispatchSummary, Dispatcher, DispatcherHandle, HooksConfig, HooksError,
    RecoveryReport,
};
use sandwatch_schema::{AlertDeliveriesBuilder, AlertsBuilder, Table, TableBatch};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::DetectError;

/// Where alerts go besides the detector's summary.
#[derive(Clone, Debug)]
pub struct AlertOutputs {
    /// `--alerts FILE`: one JSON object per line, appended.
    pub file: Option<PathBuf>,
    /// The audit log: `alerts` and `alert_deliveries` tables.
    pub data: PathBuf,
    /// Alert hooks (`--hooks`), when there are any.
    pub hooks: Option<HookOutputs>,
}

/// The hooks file and the outbox's directory (`--hooks`, `--hooks-state`).
#[derive(Clone, Debug)]
pub struct HookOutputs {
    pub config: PathBuf,
    pub state: PathBuf,
}

/// How long the detector's end waits for hooks still delivering; what is left stays in the
/// outbox for the next start.
pub const HOOKS_GRACE: Duration = Duration::from_secs(5);

/// What `Outputs::close` leaves: rows written to the two tables, and the hooks' totals.
pub(crate) struct Closed {
    pub alert_rows: u64,
    pub delivery_rows: u64,
    pub hooks: Option<DispatchSummary>,
}

pub(crate) struct Outputs {
    file: Option<BufWriter<File>>,
    log: AlertLog,
    hooks: Option<(DispatcherHandle, JoinHandle<DispatchSummary>)>,
    /// The hooks' delivery records, for the `alert_deliveries` table.
    pub(crate) records: Option<mpsc::UnboundedReceiver<DeliveryRecord>>,
}

impl Outputs {
    /// Opens the file, starts the hooks (resuming what the outbox owes) and opens the tables'
    /// sink; must run inside a tokio runtime (the hooks' tasks).
    pub(crate) fn open(
        outputs: &AlertOutputs,
    ) -> Result<(Self, Option<RecoveryReport>), DetectError> {
        let file = match &outputs.file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| DetectError::OpenAlertsFile {
                        path: p.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let (hooks, records, recovery) = match &outputs.hooks {
            None => (None, None, None),
            Some(h) => {
                let config = HooksConfig::load(&h.config)?;
                let (tx, rx) = mpsc::unbounded_channel();
                let (handle, done) = Dispatcher::new(config, &h.state)
                    .with_records(tx)
                    .spawn()
                    .map_err(|source| DetectError::StartHooks {
                        state: h.state.clone(),
                        source,
                    })?;
                let recovery = handle.recovery().clone();
                (Some((handle, done)), Some(rx), Some(recovery))
            }
        };
        let log = AlertLog::open(&outputs.data)?;
        Ok((
            Self {
                file: file.map(BufWriter::new),
                log,
                hooks,
                records,
            },
            recovery,
        ))
    }

    /// Writes an alert to the file and the table, then hands it to the hooks. An error of the
    /// hooks (the outbox full, the dispatcher gone) does not stop the detector: it is returned
    /// in `Ok(Some(_))` for the owner to hear about; the alert is in the table regardless.
    pub(crate) async fn write(&mut self, alert: Alert) -> Result<Option<HooksError>, DetectError> {
        if let Some(out) = &mut self.file {
            out.write_all(alert.to_json_line().as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(DetectError::WriteAlertsFile)?;
        }
        self.log.alert(&alert);
        if let Some((hooks, _)) = &self.hooks {
            // Durable in the outbox before this returns; delivery goes on in the background.
            if let Err(e) = hooks.send(alert).await {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    pub(crate) fn delivery(&mut self, r: &DeliveryRecord) {
        self.log.delivery(r);
    }

    /// Writes the tables' pending rows and closes files open longer than the sink's age limit,
    /// so readers of the audit log see them.
    pub(crate) fn flush_tables(&mut self) -> Result<(), DetectError> {
        self.log.flush()?;
        self.log
            .sink
            .rotate_aged(Instant::now())
            .map_err(DetectError::WriteAlertLog)
    }

    /// Flushes the file, gives the hooks [`HOOKS_GRACE`] to deliver, records their last
    /// deliveries and closes the tables.
    pub(crate) async fn close(mut self) -> Result<Closed, DetectError> {
        if let Some(out) = &mut self.file {
            out.flush().map_err(DetectError::WriteAlertsFile)?;
        }
        let mut hooks = None;
        if let Some((handle, done)) = self.hooks.take() {
            handle.shutdown(HOOKS_GRACE);
            drop(handle);
            hooks = Some(done.await.map_err(DetectError::HooksTask)?);
            if let Some(rx) = &mut self.records {
                while let Ok(r) = rx.try_recv() {
                    self.log.delivery(&r);
                }
            }
        }
        let (alert_rows, delivery_rows) = self.log.close()?;
        Ok(Closed {
            alert_rows,
            delivery_rows,
            hooks,
        })
    }
}

/// The `alerts` and `alert_deliveries` tables, written by the detector itself.
struct AlertLog {
    sink: ParquetSink,
    alerts: AlertsBuilder,
    deliveries: AlertDeliveriesBuilder,
    rows: (u64, u64),
}

impl AlertLog {
    fn open(data: &Path) -> Result<Self, DetectError> {
        Ok(Self {
            sink: ParquetSink::open(data, ParquetOptions::default()).map_err(|source| {
                DetectError::OpenAlertLog {
                    data: data.to_owned(),
                    source,
                }
            })?,
            alerts: AlertsBuilder::new(16),
            deliveries: AlertDeliveriesBuilder::new(16),
            rows: (0, 0),
        })
    }

    fn alert(&mut self, a: &Alert) {
        let json = a.row_json();
        self.alerts.append(&a.row(&json));
        self.rows.0 += 1;
    }

    fn delivery(&mut self, r: &DeliveryRecord) {
        self.deliveries.append(&r.row());
        self.rows.1 += 1;
    }

    /// Writes what is pending; the files stay open.
    fn flush(&mut self) -> Result<(), DetectError> {
        for (table, batch) in [
            (
                Table::Alerts,
                (!self.alerts.is_empty()).then(|| self.alerts.finish()),
            ),
            (
                Table::AlertDeliveries,
                (!self.deliveries.is_empty()).then(|| self.deliveries.finish()),
            ),
        ] {
            if let Some(batch) = batch {
                let batch = batch.map_err(DetectError::BuildAlertBatch)?;
                self.sink
                    .write(&TableBatch { table, batch })
                    .map_err(DetectError::WriteAlertLog)?;
            }
        }
        Ok(())
    }

    fn close(mut self) -> Result<(u64, u64), DetectError> {
        self.flush()?;
        self.sink.close().map_err(DetectError::CloseAlertLog)?;
        Ok(self.rows)
    }
}
