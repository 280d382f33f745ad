//! The generic webhook against a real HTTP server: signature, dedup key, the alert's fields,
//! retries, giving up, rate limiting, grouping, filters, and shutdown leaving the rest owed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hmac::Mac as _;
use sandwatch_hooks::{DeliveryState, HooksError, Priority};

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_signed_alert_arrives_with_its_fields_and_dedup_key() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: oncall, type: webhook, url: \"{}\", secret: s3cr3t, headers: {{ Authorization: Bearer t0k }} }}\n",
            rx.url("/alerts")
        ),
        state.path(),
    );
    let mut sent = alert(
        "Sandbox shell connected out",
        "sb-1",
        Priority::Critical,
        10,
    );
    sent.actions = vec!["alert".into(), "kill".into()];
    let routed = d.handle.send(sent.clone()).await.unwrap();
    assert_eq!(routed.hooks, ["oncall"]);
    let got = rx.wait_for(1, T).await;
    let req = &got[0];
    assert_eq!(req.path, "/alerts");
    // The signature, checked independently of the sender's code: HMAC-SHA256 of the raw body.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cr3t").unwrap();
    mac.update(&req.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        req.header("X-Sandwatch-Signature"),
        Some(format!("sha256={want}").as_str())
    );
    assert_eq!(
        req.header("X-Sandwatch-Dedup-Key"),
        Some(sent.dedup_key.as_str())
    );
    assert_eq!(req.header("authorization"), Some("Bearer t0k"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["id"], routed.alert_id);
    assert_eq!(body["dedup_key"], sent.dedup_key);
    assert_eq!(body["time"], sent.time);
    assert_eq!(body["rule"], "Sandbox shell connected out");
    assert_eq!(body["priority"], "critical");
    assert_eq!(
        body["tags"],
        serde_json::json!(["process", "mitre_execution"])
    );
    assert_eq!(body["sandbox_id"], "sb-1");
    assert_eq!(body["output"], sent.output);
    assert_eq!(body["actions"], serde_json::json!(["alert", "kill"]));
    assert_eq!(body["evidence"][0]["pid"], 10);

    let records = d.wait_state(DeliveryState::Delivered, 1, T).await;
    let r = records.last().unwrap();
    assert_eq!(
        (r.hook.as_str(), r.hook_type, r.attempts, r.status_code),
        ("oncall", "webhook", 1, Some(200))
    );
    assert_eq!(r.alert_id, routed.alert_id);
    assert!(r.latency_ms.unwrap() > 0.0);
    assert_eq!(d.handle.outbox_status().pending, 0, "acked");
    let summary = d.stop(Duration::from_secs(1)).await;
    assert_eq!(
        (summary.delivered, summary.failed, summary.left_pending),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_alert_until_accepted() {
    let rx = Receiver::start().await;
    rx.script([Reply::Status(500), Reply::Status(503), Reply::Status(429)]);
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: w, type: webhook, url: \"{}\", retries: {{ max: 5, initial: 50ms, max_delay: 200ms }} }}\n",
            rx.url("/")
        ),
        state.path(),
    );
    let sent = alert("R", "sb-1", Priority::Warning, 1);
    d.handle.send(sent.clone()).await.unwrap();
    let records = d.wait_state(DeliveryState::Delivered, 1, T).await;
    let states: Vec<(DeliveryState, u32, Option<u16>)> = records
        .iter()
        .map(|r| (r.state, r.attempts, r.status_code))
        .collect();
    assert_eq!(
        states,
        [
            (DeliveryState::Retrying, 1, Some(500)),
            (DeliveryState::Retrying, 2, Some(503)),
            (DeliveryState::Retrying, 3, Some(429)),
            (DeliveryState::Delivered, 4, Some(200)),
        ]
    );
    assert_eq!(
        records[0].error.as_deref(),
        Some("HTTP 500 Internal Server Error: answer 500")
    );
    let got = rx.received();
    assert_eq!(got.len(), 4);
    for r in &got {
        assert_eq!(r.body, got[0].body, "every attempt sends the same alert");
        assert_eq!(
            r.header("X-Sandwatch-Dedup-Key"),
            Some(sent.dedup_key.as_str())
        );
    }
    // Back-off: at least the initial delay between attempts, growing.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(45)),
        "{gaps:?}"
    );
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn deliveries_given_up_are_reported_and_kept_in_the_outbox() {
    let rx = Receiver::start().await;
    // Three failures exhaust `max: 2`; then a 400 is refused for good at once.
    rx.script([
        Reply::Status(502),
        Reply::Status(502),
        Reply::Status(502),
        Reply::Status(400),
    ]);
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: w, type: webhook, url: \"{}\", retries: {{ max: 2, initial: 20ms, max_delay: 50ms }} }}\n",
            rx.url("/")
        ),
        state.path(),
    );
    let first = alert("R1", "sb-1", Priority::Warning, 1);
    d.handle.send(first.clone()).await.unwrap();
    let records = d.wait_state(DeliveryState::Failed, 1, T).await;
    let failed = records.last().unwrap();
    assert_eq!((failed.attempts, failed.status_code), (3, Some(502)));
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 3 attempts: HTTP 502"),
        "{failed:?}"
    );
    let second = alert("R2", "sb-1", Priority::Warning, 2);
    d.handle.send(second.clone()).await.unwrap();
    let records = d.wait_state(DeliveryState::Failed, 1, T).await;
    let refused = records.last().unwrap();
    assert_eq!((refused.attempts, refused.status_code), (1, Some(400)));
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .starts_with("refused, not retried: HTTP 400")
    );

    let summary = d.stop(Duration::from_secs(1)).await;
    assert_eq!(
        (summary.delivered, summary.failed, summary.left_pending),
        (0, 2, 0)
    );
    let kept: Vec<serde_json::Value> = std::fs::read_dir(state.path().join("outbox/failed"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let mut rules: Vec<&str> = kept
        .iter()
        .map(|v| v["alert"]["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(rules, ["R1", "R2"]);
    // A restart reports them and does not send them again.
    let d = start(
        &format!(
            "hooks:\n  - {{ name: w, type: webhook, url: \"{}\" }}\n",
            rx.url("/")
        ),
        state.path(),
    );
    assert_eq!(d.handle.recovery().failed_kept, 2);
    assert_eq!(d.handle.recovery().resumed, 0);
    d.stop(Duration::from_secs(1)).await;
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test]
async fn the_rate_limit_spaces_messages_and_loses_none() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: w, type: webhook, url: \"{}\", rate_limit: 2/s }}\n",
            rx.url("/")
        ),
        state.path(),
    );
    let start = Instant::now();
    for i in 0..5 {
        d.handle
            .send(alert(&format!("R{i}"), "sb-1", Priority::Warning, i))
            .await
            .unwrap();
    }
    let got = rx.wait_for(5, T).await;
    d.wait_state(DeliveryState::Delivered, 5, T).await;
    let since: Vec<Duration> = got.iter().map(|r| r.at - start).collect();
    // A burst of 2, then one every 500 ms: the 3rd no sooner than ~0.5 s, the 5th ~1.5 s.
    assert!(since[2] >= Duration::from_millis(450), "{since:?}");
    assert!(since[4] >= Duration::from_millis(1450), "{since:?}");
    let mut rules: Vec<String> = got
        .iter()
        .map(|r| r.json()["rule"].as_str().unwrap().to_owned())
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        ["R0", "R1", "R2", "R3", "R4"],
        "rate limited, not dropped"
    );
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn alerts_of_one_rule_in_one_sandbox_within_the_window_go_as_one_array() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: w, type: webhook, url: \"{}\", group_window: 400ms }}\n",
            rx.url("/")
        ),
        state.path(),
    );
    let start = Instant::now();
    let a: Vec<_> = (1..=3)
        .map(|pid| alert("A", "sb-1", Priority::Error, pid))
        .collect();
    for x in &a {
        d.handle.send(x.clone()).await.unwrap();
    }
    d.handle
        .send(alert("A", "sb-2", Priority::Error, 4))
        .await
        .unwrap();
    d.handle
        .send(alert("B", "sb-1", Priority::Error, 5))
        .await
        .unwrap();
    let got = rx.wait_for(3, T).await;
    d.wait_state(DeliveryState::Delivered, 5, T).await;
    assert!(
        got[0].at - start >= Duration::from_millis(350),
        "the window is waited out: {:?}",
        got[0].at - start
    );
    let mut shapes: Vec<(String, String, usize)> = got
        .iter()
        .map(|r| {
            let v = r.json();
            let arr = v.as_array().expect("a grouping hook sends arrays");
            (
                arr[0]["rule"].as_str().unwrap().to_owned(),
                arr[0]["sandbox_id"].as_str().unwrap().to_owned(),
                arr.len(),
            )
        })
        .collect();
    shapes.sort();
    assert_eq!(
        shapes,
        [
            ("A".into(), "sb-1".into(), 3),
            ("A".into(), "sb-2".into(), 1),
            ("B".into(), "sb-1".into(), 1)
        ]
    );
    let group = got
        .iter()
        .find(|r| r.json().as_array().unwrap().len() == 3)
        .unwrap();
    let keys: Vec<String> = a.iter().map(|x| x.dedup_key.clone()).collect();
    assert_eq!(
        group.header("X-Sandwatch-Dedup-Key"),
        Some(keys.join(",").as_str())
    );
    assert_eq!(rx.received().len(), 3, "nothing else was sent");
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn hooks_take_only_the_alerts_their_filters_let_through() {
    let rx = Receiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut d = start(
        &format!(
            "hooks:\n  - {{ name: net, type: webhook, url: \"{}\", min_priority: warning, rules: [\"Sandbox *\"], tags: [network] }}\n  - {{ name: all, type: webhook, url: \"{}\" }}\n",
            rx.url("/net"),
            rx.url("/all")
        ),
        state.path(),
    );
    let mut net = alert("Sandbox shell connected out", "sb-1", Priority::Critical, 1);
    net.tags = vec!["network".into()];
    let mut low = alert("Sandbox shell connected out", "sb-1", Priority::Notice, 2);
    low.tags = vec!["network".into()];
    let untagged = alert("Sandbox ptrace", "sb-1", Priority::Critical, 3);
    let mut other_rule = alert("Terminal shell", "sb-1", Priority::Critical, 4);
    other_rule.tags = vec!["network".into()];
    assert_eq!(d.handle.send(net).await.unwrap().hooks, ["net", "all"]);
    for a in [low, untagged, other_rule] {
        assert_eq!(d.handle.send(a).await.unwrap().hooks, ["all"]);
    }
    let got = rx.wait_for(5, T).await;
    d.wait_state(DeliveryState::Delivered, 5, T).await;
    let to_net: Vec<_> = got.iter().filter(|r| r.path == "/net").collect();
    assert_eq!(to_net.len(), 1);
    assert_eq!(to_net[0].json()["priority"], "critical");
    d.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_leaves_what_it_could_not_deliver_owed_for_the_next_start() {
    let rx = Receiver::start().await;
    rx.script([Reply::Stall]);
    let state = tempfile::tempdir().unwrap();
    let yaml = format!(
        "hooks:\n  - {{ name: w, type: webhook, url: \"{}\", timeout: 30s }}\n",
        rx.url("/")
    );
    let d = start(&yaml, state.path());
    let sent = alert("R", "sb-1", Priority::Warning, 1);
    d.handle.send(sent.clone()).await.unwrap();
    rx.wait_for(1, T).await;
    let handle = d.handle.clone();
    let begun = Instant::now();
    let summary = d.stop(Duration::from_millis(300)).await;
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "the grace period bounds shutdown"
    );
    assert_eq!((summary.delivered, summary.left_pending), (0, 1));
    assert!(matches!(
        handle
            .send(alert("late", "sb-1", Priority::Warning, 2))
            .await,
        Err(HooksError::Stopped)
    ));
    drop(handle);

    let mut again = start(&yaml, state.path());
    assert_eq!(again.handle.recovery().resumed, 1);
    let records = again.wait_state(DeliveryState::Delivered, 1, T).await;
    assert_eq!(records.last().unwrap().dedup_key, sent.dedup_key);
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body, "the same alert, resent");
    let summary = again.stop(Duration::from_secs(1)).await;
    assert_eq!((summary.delivered, summary.left_pending), (1, 0));
}
