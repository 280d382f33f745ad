//! At least once across a SIGKILL: a delivering process (`sw-hooks-deliver`, a test-only binary)
//! is killed while its hook holds the request unanswered; started again on the same state
//! directory, it delivers everything, and every dedup key the receiver saw stands for one alert.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::*;
use sandwatch_hooks::Priority;

const T: Duration = Duration::from_secs(30);

/// A helper process, SIGKILLed when dropped so a failing test leaves nothing running; its
/// stdout lines arrive on `lines`.
struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Helper {
    fn spawn(config: &Path, state: &Path, alerts: &[String]) -> Helper {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sw-hooks-deliver"))
            .arg(config)
            .arg(state)
            .args(alerts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sw-hooks-deliver");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper { child, lines }
    }

    /// Lines until one starts with `prefix` (that one included).
    fn until(&self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(T) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no {prefix:?} line ({e}); saw {seen:#?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_killed_midway_is_resent_after_restart_under_the_same_dedup_key() {
    let rx = Receiver::start().await;
    // The first request is taken and never answered: the process is killed while waiting.
    rx.script([Reply::Stall]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hooks.yaml");
    std::fs::write(
        &config,
        format!(
            "hooks:\n  - {{ name: oncall, type: webhook, url: \"{}\", timeout: 60s }}\n",
            rx.url("/alerts")
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let alerts = [
        alert("Sandbox reverse shell", "sb-k", Priority::Critical, 1),
        alert("Sandbox ptrace", "sb-k", Priority::Warning, 2),
    ];
    let json: Vec<String> = alerts.iter().map(|a| a.to_json_line()).collect();

    let first = Helper::spawn(&config, &state, &json);
    let enqueued = [first.until("enqueued"), first.until("enqueued")];
    // The stalled request is in the receiver's hands: kill the sender mid-delivery.
    rx.wait_for(1, T).await;
    drop(first);
    let pending = std::fs::read_dir(state.join("outbox/pending"))
        .unwrap()
        .count();
    assert_eq!(
        pending, 2,
        "both deliveries still owed on disk after the kill: {enqueued:?}"
    );

    let second = Helper::spawn(&config, &state, &[]);
    let lines = second.until("done");
    assert_eq!(
        lines.last().unwrap(),
        "done delivered=2 failed=0 left=0",
        "{lines:#?}"
    );
    let got = rx.received();
    assert!(got.len() >= 3, "the stalled one, then both again: {got:#?}");

    // Every dedup key names one alert; both alerts arrived.
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &got {
        let v = r.json();
        let key = r.header("X-Sandwatch-Dedup-Key").unwrap().to_owned();
        assert_eq!(v["dedup_key"], key.as_str(), "header and body agree");
        by_key
            .entry(key)
            .or_default()
            .insert(v["id"].as_str().unwrap().to_owned());
    }
    let want: BTreeMap<String, BTreeSet<String>> = alerts
        .iter()
        .map(|a| (a.dedup_key.clone(), BTreeSet::from([a.id.clone()])))
        .collect();
    assert_eq!(by_key, want);
    // The resent request is the killed one, byte for byte.
    let killed = &got[0];
    assert!(
        got[1..].iter().any(|r| r.body == killed.body),
        "the interrupted alert was sent again"
    );
    assert_eq!(
        std::fs::read_dir(state.join("outbox/pending"))
            .unwrap()
            .count(),
        0
    );
}
