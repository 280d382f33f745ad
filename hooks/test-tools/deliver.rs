//! Test helper, built with the `test-tools` feature only: a process that delivers alerts through
//! the durable outbox, so a test can SIGKILL it mid-delivery and start it again.
//!
//! `sw-hooks-deliver CONFIG STATE_DIR [ALERT_JSON...]` sends each alert (printing
//! `enqueued <alert_id> <dedup_key>` once `send` has returned), prints every delivery record as
//! `record <state> <alert_id> <dedup_key> <attempts>`, and once nothing is pending prints
//! `done delivered=<n> failed=<n> left=<n>` and exits 0 (2 if that takes over a minute).

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use sandwatch_hooks::{Alert, Dispatcher, HooksConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, state, alerts @ ..] = args.as_slice() else {
        eprintln!("usage: sw-hooks-deliver CONFIG STATE_DIR [ALERT_JSON...]");
        std::process::exit(64);
    };
    let config = HooksConfig::load(config).unwrap_or_else(|e| fail(&e.to_string()));
    let (tx, mut records) = tokio::sync::mpsc::unbounded_channel();
    let (hooks, done) = Dispatcher::new(config, state)
        .with_records(tx)
        .spawn()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let printer = tokio::spawn(async move {
        while let Some(r) = records.recv().await {
            say(&format!(
                "record {} {} {} {}",
                r.state.name(),
                r.alert_id,
                r.dedup_key,
                r.attempts
            ));
        }
    });
    for json in alerts {
        let alert: Alert =
            serde_json::from_str(json).unwrap_or_else(|e| fail(&format!("alert JSON: {e}")));
        let routed = hooks
            .send(alert)
            .await
            .unwrap_or_else(|e| fail(&e.to_string()));
        say(&format!(
            "enqueued {} {}",
            routed.alert_id, routed.dedup_key
        ));
    }
    let start = Instant::now();
    while hooks.outbox_status().pending > 0 {
        if start.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "sw-hooks-deliver: still {} pending after a minute",
                hooks.outbox_status().pending
            );
            std::process::exit(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hooks.shutdown(Duration::from_secs(1));
    let summary = done.await.expect("dispatcher task");
    // The workers are gone, and with them the records' senders: the printer ends.
    drop(hooks);
    printer.await.expect("record printer");
    say(&format!(
        "done delivered={} failed={} left={}",
        summary.delivered, summary.failed, summary.left_pending
    ));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(message: &str) -> ! {
    eprintln!("sw-hooks-deliver: {message}");
    std::process::exit(1);
}
