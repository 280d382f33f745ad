//! The daemon's own numbers for Prometheus (`GET /metrics`): sandboxes by state, creations and
//! ends, rows per table and records lost per kind (counted off the live batch stream every
//! consumer sees), rule evaluation time, alerts and deliveries, and API latency.
//!
//! Everything here is cheap to update from any task (atomics behind `prometheus-client`'s
//! families); the endpoint reads the gauges that are states (sandboxes, pool) at scrape time.

use std::sync::Arc;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sandwatch_schema::{Table, TableBatch};

type Labels = Vec<(&'static str, String)>;

fn latency_buckets() -> Histogram {
    // 0.1 ms to ~6.5 s: a create from the pool is ~1 ms, a streamed command may be seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17))
}

pub struct Stats {
    registry: Registry,
    pub sandboxes: Family<Labels, Gauge>,
    pub pool_ready: Family<Labels, Gauge>,
    creations: Family<Labels, Counter>,
    ends: Family<Labels, Counter>,
    rows: Family<Labels, Counter>,
    drops: Family<Labels, Counter>,
    pub rule_seconds: Histogram,
    pub alerts: Family<Labels, Counter>,
    pub deliveries: Family<Labels, Counter>,
    api: Family<Labels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stats")
    }
}

impl Stats {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("sandwatch");
        let sandboxes = Family::<Labels, Gauge>::default();
        registry.register("sandboxes", "Live sandboxes by state", sandboxes.clone());
        let pool_ready = Family::<Labels, Gauge>::default();
        registry.register(
            "warm_pool_ready",
            "Sandboxes made ahead and ready, by template",
            pool_ready.clone(),
        );
        let creations = Family::<Labels, Counter>::default();
        registry.register(
            "sandbox_creations",
            "Sandboxes created, by template and whether the warm pool had one",
            creations.clone(),
        );
        let ends = Family::<Labels, Counter>::default();
        registry.register("sandbox_ends", "Sandboxes ended, by reason", ends.clone());
        let rows = Family::<Labels, Counter>::default();
        registry.register("rows", "Rows recorded, by table", rows.clone());
        let drops = Family::<Labels, Counter>::default();
        registry.register(
            "records_lost",
            "Records lost, by where (kernel, collector) and kind; see the drops table",
            drops.clone(),
        );
        let rule_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.0, 16),
        );
        registry.register(
            "rule_evaluation_seconds",
            "Time to evaluate the rules (and baselines) on one live batch",
            rule_seconds.clone(),
        );
        let alerts = Family::<Labels, Counter>::default();
        registry.register("alerts", "Alerts raised, by priority", alerts.clone());
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alert delivery attempts to hooks, by hook and state",
            deliveries.clone(),
        );
        let api = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_buckets as fn() -> Histogram,
        );
        registry.register(
            "api_request_duration_seconds",
            "API requests, from arrival to the response's head, by api, method, route and status",
            api.clone(),
        );
        Arc::new(Self {
            registry,
            sandboxes,
            pool_ready,
            creations,
            ends,
            rows,
            drops,
            rule_seconds,
            alerts,
            deliveries,
            api,
        })
    }

    /// A sandbox created from `template`, taken from the warm pool or made on demand.
    pub fn created(&self, template: &str, from_pool: bool) {
        self.creations
            .get_or_create(&vec![
                ("template", template.to_owned()),
                ("source", if from_pool { "warm_pool" } else { "cold" }.to_owned()),
            ])
            .inc();
    }

    pub fn ended(&self, reason: &str) {
        self.ends
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    pub fn api_call(&self, api: &str, method: &str, route: &str, status: u16, seconds: f64) {
        self.api
            .get_or_create(&vec![
                ("api", api.to_owned()),
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .observe(seconds);
    }

    /// Counts a live batch: its rows, and for the drops table the records it says were lost.
    pub fn batch(&self, b: &TableBatch) {
        self.rows
            .get_or_create(&vec![("table", b.table.name().to_owned())])
            .inc_by(b.batch.num_rows() as u64);
        if b.table == Table::Drops {
            use arrow_array::{Array as _, StringArray, UInt64Array};
            let col = |n: &str| b.batch.column_by_name(n).cloned();
            let (Some(source), Some(kind), Some(count)) = (col("source"), col("kind"), col("count"))
            else {
                return;
            };
            let (Some(source), Some(kind), Some(count)) = (
                source.as_any().downcast_ref::<StringArray>(),
                kind.as_any().downcast_ref::<StringArray>(),
                count.as_any().downcast_ref::<UInt64Array>(),
            ) else {
                return;
            };
            for i in 0..b.batch.num_rows() {
                if count.is_valid(i) {
                    self.drops
                        .get_or_create(&vec![
                            ("source", source.value(i).to_owned()),
                            ("kind", kind.value(i).to_owned()),
                        ])
                        .inc_by(count.value(i));
                }
            }
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("metrics encoding: {e}");
        }
        out
    }
}

/// The detector's numbers: evaluation time per live batch, alerts by priority, deliveries by
/// hook and state.
impl sandwatch_detect::DetectObserver for Stats {
    fn batch_evaluated(&self, _table: Table, _rows: usize, took: std::time::Duration) {
        self.rule_seconds.observe(took.as_secs_f64());
    }

    fn alert(&self, alert: &sandwatch_hooks::Alert) {
        self.alerts
            .get_or_create(&vec![("priority", alert.priority.name().to_owned())])
            .inc();
    }

    fn delivery(&self, record: &sandwatch_hooks::DeliveryRecord) {
        self.deliveries
            .get_or_create(&vec![
                ("hook", record.hook.clone()),
                ("state", record.state.name().to_owned()),
            ])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latency_appear_in_the_text() {
        let s = Stats::new();
        s.created("default", true);
        s.ended("timeout");
        s.api_call("control", "POST", "/sandboxes", 201, 0.002);
        s.sandboxes
            .get_or_create(&vec![("state", "running".to_owned())])
            .set(3);
        let text = s.encode();
        assert!(
            text.contains("sandwatch_sandbox_creations_total{template=\"default\",source=\"warm_pool\"} 1"),
            "{text}"
        );
        assert!(text.contains("sandwatch_sandbox_ends_total{reason=\"timeout\"} 1"));
        assert!(text.contains("sandwatch_sandboxes{state=\"running\"} 3"));
        assert!(text.contains(
            "sandwatch_api_request_duration_seconds_count{api=\"control\",method=\"POST\",route=\"/sandboxes\",status=\"201\"} 1"
        ));
    }
}
