//! Delivery to a real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! `cargo xtask setup`), started by the test on 127.0.0.1, which lists the alert through its own
//! API afterwards.

mod common;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use sandwatch_hooks::{ActionTaken, DeliveryState, Priority};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const T: Duration = Duration::from_secs(20);

/// A running Alertmanager, killed when dropped (so also when the test fails).
struct Alertmanager {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_alertmanager(dir: &Path) -> Alertmanager {
    if !Path::new(ALERTMANAGER).exists() {
        // Never a silent skip: under CI and on a developer machine alike.
        panic!(
            "{ALERTMANAGER} is missing (Debian package prometheus-alertmanager{}): run `cargo xtask setup`",
            if std::env::var("CI").as_deref() == Ok("true") {
                "; CI must install it"
            } else {
                ""
            }
        );
    }
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("alertmanager.log");
    let child = Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Empty: no cluster, no gossip port.
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start alertmanager");
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    // reqwest is built without a bundled crypto provider (see the dispatcher).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + T;
    loop {
        if let Ok(r) = client.get(format!("{}/-/ready", am.url)).send().await
            && r.status().is_success()
        {
            return am;
        }
        if Instant::now() > deadline {
            panic!(
                "alertmanager not ready within {T:?}; its log:\n{}",
                am.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn alertmanager_lists_the_delivered_alert_with_its_labels_and_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let am = start_alertmanager(dir.path()).await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: am, type: alertmanager, url: \"{}\" }}\n",
            am.url
        ),
        state.path(),
    );
    let mut sent = alert(
        "Sandbox non-root process asked for root",
        "sb-am",
        Priority::Critical,
        21,
    );
    sent.actions = vec!["alert".into(), "kill".into()];
    sent.actions_taken = vec![ActionTaken {
        action: "kill".into(),
        at_ns: sent.time_ns + 2_000_000,
        ok: true,
        detail: Some("cgroup.kill".into()),
        latency_ms: Some(2.0),
    }];
    d.handle.send(sent.clone()).await.unwrap();
    let records = d.wait_state(DeliveryState::Delivered, 1, T).await;
    assert_eq!(
        records.last().unwrap().status_code,
        Some(200),
        "{records:#?}"
    );

    // filter=dedup_key="<hex>", URL-encoded.
    let body = reqwest::Client::new()
        .get(format!(
            "{}/api/v2/alerts?filter=dedup_key%3D%22{}%22",
            am.url, sent.dedup_key
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let alerts = listed.as_array().expect("a list of alerts");
    assert_eq!(alerts.len(), 1, "{listed:#}\nlog:\n{}", am.log());
    let a = &alerts[0];
    let labels = &a["labels"];
    assert_eq!(
        labels["alertname"],
        "Sandbox non-root process asked for root"
    );
    assert_eq!(labels["rule"], "Sandbox non-root process asked for root");
    assert_eq!(labels["priority"], "critical");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["sandbox_id"], "sb-am");
    assert_eq!(labels["host"], "test-host");
    assert_eq!(labels["dedup_key"], sent.dedup_key);
    assert_eq!(a["annotations"]["summary"], sent.output);
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("actions: kill done (cgroup.kill)"),
        "{description}"
    );
    assert!(
        description.contains("evidence: process_events execve pid 21"),
        "{description}"
    );
    assert_eq!(
        a["generatorURL"],
        format!("sandwatch://test-host/alerts/{}", sent.id)
    );
    // Alertmanager keeps the time we gave, at its own precision.
    let starts = chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).unwrap();
    let ours = chrono::DateTime::parse_from_rfc3339(&sent.time).unwrap();
    assert!(
        (starts - ours).num_milliseconds().abs() < 1,
        "{starts} vs {ours}"
    );
    assert_eq!(a["status"]["state"], "active");
    d.stop(Duration::from_secs(1)).await;
}
