//! Slack incoming-webhook and PagerDuty Events API v2 messages, as a real HTTP server receives
//! them.

mod common;

use std::time::Duration;

use common::*;
use sandwatch_hooks::{ActionTaken, DeliveryState, Priority};

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn slack_gets_text_and_blocks_with_rule_priority_sandbox_and_output() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: chat, type: slack, url: \"{}\" }}\n",
            rx.url("/services/T0/B0/XYZ")
        ),
        state.path(),
    );
    let mut sent = alert("Sandbox read of private key", "sb-7", Priority::Warning, 3);
    sent.output = "private key /root/.ssh/id_rsa read by cat <pid 3>".into();
    sent.actions = vec!["alert".into(), "kill".into()];
    sent.actions_taken = vec![ActionTaken {
        action: "kill".into(),
        at_ns: sent.time_ns + 1_000_000,
        ok: true,
        detail: None,
        latency_ms: None,
    }];
    d.handle.send(sent.clone()).await.unwrap();
    let got = rx.wait_for(1, T).await;
    d.wait_state(DeliveryState::Delivered, 1, T).await;
    assert_eq!(got[0].path, "/services/T0/B0/XYZ");
    let v = got[0].json();
    assert_eq!(
        v["text"],
        format!(
            "[WARNING] Sandbox read of private key in sandbox sb-7: {}",
            sent.output
        )
    );
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["text"]["text"], "*Sandbox read of private key*");
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Priority*\nwarning",
            "*Sandbox*\nsb-7",
            "*Host*\ntest-host",
            "*Actions*\nkill done"
        ]
    );
    let output = blocks[2]["text"]["text"].as_str().unwrap();
    assert_eq!(
        output,
        format!(
            "`{}` private key /root/.ssh/id_rsa read by cat &lt;pid 3&gt;",
            sent.time
        )
    );
    assert!(
        blocks.last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&sent.dedup_key)
    );
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn slack_groups_a_burst_into_one_message() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: chat, type: slack, url: \"{}\", group_window: 300ms }}\n",
            rx.url("/s")
        ),
        state.path(),
    );
    for pid in 1..=4 {
        d.handle
            .send(alert("Sandbox ptrace", "sb-1", Priority::Warning, pid))
            .await
            .unwrap();
    }
    d.wait_state(DeliveryState::Delivered, 4, T).await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "one message for the burst");
    let v = got[0].json();
    assert_eq!(
        v["text"],
        "4 alerts: [WARNING] Sandbox ptrace in sandbox sb-1"
    );
    assert_eq!(v["blocks"].as_array().unwrap().len(), 2 + 4 + 1);
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pagerduty_gets_a_trigger_per_dedup_key_with_mapped_severity() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: pd, type: pagerduty, routing_key: R0UT1NG, url: \"{}\", group_window: 300ms }}\n",
            rx.url("/v2/enqueue")
        ),
        state.path(),
    );
    let first = alert("Sandbox crypto miner started", "sb-3", Priority::Alert, 11);
    // The same incident raised twice (same rule, sandbox and first event) and another one.
    let repeat = sandwatch_hooks::Alert {
        id: String::new(),
        ..first.clone()
    };
    let other = alert("Sandbox crypto miner started", "sb-3", Priority::Alert, 12);
    for a in [&first, &repeat, &other] {
        d.handle.send(a.clone()).await.unwrap();
    }
    d.wait_state(DeliveryState::Delivered, 3, T).await;
    let got = rx.received();
    assert_eq!(got.len(), 2, "one event per dedup key");
    let events: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    let e = events
        .iter()
        .find(|e| e["dedup_key"] == first.dedup_key.as_str())
        .expect("the first incident's event");
    assert_eq!(got[0].path, "/v2/enqueue");
    assert_eq!(e["routing_key"], "R0UT1NG");
    assert_eq!(e["event_action"], "trigger");
    let p = &e["payload"];
    assert_eq!(
        p["summary"],
        format!("Sandbox crypto miner started: {}", first.output)
    );
    assert_eq!(p["source"], "test-host");
    assert_eq!(p["severity"], "critical", "alert maps to critical");
    assert_eq!(p["timestamp"], first.time);
    assert_eq!(p["component"], "sb-3");
    assert_eq!(p["custom_details"]["rule"], "Sandbox crypto miner started");
    assert_eq!(p["custom_details"]["priority"], "alert");
    assert_eq!(p["custom_details"]["evidence"][0]["pid"], 11);
    assert_eq!(
        p["custom_details"]["grouped_alert_ids"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(
        events
            .iter()
            .any(|e| e["dedup_key"] == other.dedup_key.as_str())
    );

    // Severity for the lower priorities, one event each without grouping.
    let rx2 = Receiver::start().await;
    let state2 = tempfile::tempdir().unwrap();
    let mut d2 = start(
        &format!(
            "hooks:\n  - {{ name: pd, type: pagerduty, routing_key: K, url: \"{}\" }}\n",
            rx2.url("/v2/enqueue")
        ),
        state2.path(),
    );
    let cases = [
        (Priority::Error, "error"),
        (Priority::Warning, "warning"),
        (Priority::Notice, "info"),
    ];
    for (n, (p, _)) in cases.iter().enumerate() {
        d2.handle
            .send(alert(&format!("R{n}"), "sb", *p, n as u32))
            .await
            .unwrap();
    }
    d2.wait_state(DeliveryState::Delivered, 3, T).await;
    for r in rx2.received() {
        let v = r.json();
        let n: usize = v["payload"]["group"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(v["payload"]["severity"], cases[n].1);
    }
    d.stop(Duration::from_secs(1)).await;
    d2.stop(Duration::from_secs(1)).await;
}
