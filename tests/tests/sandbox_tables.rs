//! The runner's tables (`sandboxes`, `sandbox_metrics`) through a real collector, probes loaded:
//! rows handed to the collector's API land in the Parquet audit log beside the kernel's, count in
//! the summary, and are refused once the collector has stopped. No sandbox is involved: the rows
//! are what a runner would report.

mod support;

use std::time::{Duration, SystemTime};

use sandwatch_collector::{
    Collector, CollectorConfig, CollectorError, SandboxEventRecord, SandboxMetricsRecord,
};
use sandwatch_schema::{SandboxLifecycle, Table};
use support::*;

const POLICY_HASH: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn event(sandbox: &str, what: SandboxLifecycle) -> SandboxEventRecord {
    SandboxEventRecord {
        time: SystemTime::now(),
        sandbox_id: sandbox.into(),
        event: what,
        command: None,
        exit_code: None,
        signal: None,
        reason: None,
        policy_hash: POLICY_HASH.into(),
        profile: Some("strict".into()),
        detail: None,
    }
}

fn sample(sandbox: &str, cpu: f64) -> SandboxMetricsRecord {
    SandboxMetricsRecord {
        time: SystemTime::now(),
        sandbox_id: sandbox.into(),
        cpu_usage_percent: cpu,
        memory_usage_bytes: 3 << 20,
        memory_limit_bytes: None,
        disk_usage_bytes: 5 << 20,
        network_rx_bytes: Some(1000),
        network_tx_bytes: Some(2000),
        process_count: 2,
        file_descriptors: 9,
    }
}

#[test]
fn sandbox_rows_reach_the_audit_log_and_are_refused_after_shutdown() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sandbox = format!("sw-test-rows-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (summary, recorder) = runtime.block_on(async {
        let mut config = CollectorConfig::new(data.clone());
        config.host = "sw-test-host".into();
        let collector = Collector::start(config).expect("the collector starts (root, BPF)");
        collector
            .record_sandbox_event(event(&sandbox, SandboxLifecycle::Created))
            .unwrap();
        collector
            .record_sandbox_event(SandboxEventRecord {
                command: Some("python3 -c 'print(1)'".into()),
                ..event(&sandbox, SandboxLifecycle::Started)
            })
            .unwrap();
        // A sampler on its own task, as the binary will run one per sandbox.
        let recorder = collector.sandbox_recorder();
        let sampler = {
            let (recorder, sandbox) = (recorder.clone(), sandbox.clone());
            tokio::spawn(async move {
                for cpu in [12.5, 99.0] {
                    recorder
                        .record_sandbox_metrics(sample(&sandbox, cpu))
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            })
        };
        sampler.await.unwrap();
        collector
            .record_sandbox_event(SandboxEventRecord {
                command: Some("python3 -c 'print(1)'".into()),
                exit_code: Some(0),
                ..event(&sandbox, SandboxLifecycle::Exited)
            })
            .unwrap();
        // Recorded just before shutdown: still written.
        collector
            .record_sandbox_event(event(&sandbox, SandboxLifecycle::Destroyed))
            .unwrap();
        (collector.shutdown().await.unwrap(), recorder)
    });
    assert_eq!(summary.rows.get(&Table::Sandboxes), Some(&4), "{summary:?}");
    assert_eq!(
        summary.rows.get(&Table::SandboxMetrics),
        Some(&2),
        "{summary:?}"
    );
    let refused = recorder
        .record_sandbox_metrics(sample(&sandbox, 0.0))
        .unwrap_err();
    assert!(
        matches!(refused, CollectorError::Stopped(Table::SandboxMetrics)),
        "{refused}"
    );

    let events = read_table(&data, "sandboxes");
    let kinds: Vec<&str> = events
        .rows
        .iter()
        .map(|r| get(r, "event").unwrap())
        .collect();
    assert_eq!(kinds, ["created", "started", "exited", "destroyed"]);
    for r in &events.rows {
        assert_eq!(get(r, "host"), Some("sw-test-host"));
        assert_eq!(get(r, "sandbox_id"), Some(sandbox.as_str()));
        assert_eq!(get(r, "policy_hash"), Some(POLICY_HASH));
        assert_eq!(get(r, "profile"), Some("strict"));
    }
    let exited = &events.with("event", "exited")[0];
    assert_eq!(get(exited, "exit_code"), Some("0"));
    assert_eq!(get(exited, "signal"), None);
    assert_eq!(get(exited, "command"), Some("python3 -c 'print(1)'"));

    let metrics = read_table(&data, "sandbox_metrics");
    assert_eq!(metrics.len(), 2);
    let first = &metrics.rows[0];
    assert_eq!(get(first, "cpu_usage_percent"), Some("12.5"));
    assert_eq!(get(first, "memory_usage_mb"), Some("3.0"));
    assert_eq!(get(first, "memory_limit_mb"), None);
    assert_eq!(get(first, "disk_usage_mb"), Some("5.0"));
    assert_eq!(get(first, "network_tx_bytes"), Some("2000"));

    // An independent reader sees the same rows, in the documented layout.
    let glob = format!("{}/sandboxes/date=*/hour=*/*.parquet", data.display());
    let rows = duckdb(&format!(
        "select event, exit_code from read_parquet('{glob}') order by time"
    ));
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2], serde_json::json!(["exited", 0]));
    let glob = format!("{}/sandbox_metrics/date=*/hour=*/*.parquet", data.display());
    let rows = duckdb(&format!(
        "select sum(process_count), max(cpu_usage_percent) from read_parquet('{glob}')"
    ));
    assert_eq!(rows, [serde_json::json!([4, 99.0])]);
}
