//! What `sandwatch run` writes about the sandbox itself: its lifecycle in `sandboxes` and its
//! numbers in `sandbox_metrics`, read back from Parquet.

mod support;

use sha2::Digest as _;
use support::*;

#[test]
fn a_run_records_its_sandbox_lifecycle_and_metrics() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let id = unique_id("records");
    let policy = policy_file(
        data.path(),
        "p.yaml",
        "extends: strict\nprofile: records\nlimits: { timeout: 2s }\n",
    );
    let policy = policy.to_str().unwrap();
    // 10 MiB in the workspace, then a sleep the wall-clock limit cuts short.
    let out = sandwatch(&[
        "run",
        "--data",
        data.path().to_str().unwrap(),
        "--policy",
        policy,
        "--sandbox-id",
        &id,
        "--metrics-interval",
        "200ms",
        "--",
        "sh",
        "-c",
        "head -c 10485760 /dev/zero > /workspace/ten; sleep 1 & sleep 30",
    ]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "the wall-clock limit gives 124"
    );

    let rows = read_table(data.path(), "sandboxes");
    let events: Vec<&str> = rows.rows.iter().map(|r| get(r, "event").unwrap()).collect();
    assert_eq!(
        events,
        ["created", "started", "killed", "destroyed"],
        "one row per lifecycle step, in order (files are read in time order)"
    );
    let killed = &rows.with("event", "killed")[0];
    assert_eq!(get(killed, "reason"), Some("timeout"));
    assert_eq!(get(killed, "signal"), Some("9"));
    assert_eq!(
        get(killed, "exit_code"),
        None,
        "killed: no exit code of its own"
    );
    assert!(
        get(killed, "command")
            .unwrap()
            .starts_with("sh -c 'head -c")
    );
    // The hash is that of the resolved policy `policy check` prints (its YAML, without the
    // comment line).
    let check = sandwatch(&["policy", "check", policy]);
    let text = String::from_utf8(check.stdout).unwrap();
    let yaml = text.split_once('\n').unwrap().1;
    let want: String = sha2::Sha256::digest(yaml.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for r in &rows.rows {
        assert_eq!(get(r, "sandbox_id"), Some(id.as_str()));
        assert_eq!(get(r, "policy_hash"), Some(want.as_str()));
        assert_eq!(get(r, "profile"), Some("records"));
    }

    let metrics = read_table(data.path(), "sandbox_metrics");
    // ~2 s at 200 ms: at least 6 samples even on a loaded machine.
    assert!(
        metrics.len() >= 6,
        "a sample every 200 ms for 2 s, got {}",
        metrics.len()
    );
    let num = |r: &std::collections::HashMap<String, Option<String>>, c: &str| -> f64 {
        get(r, c)
            .unwrap_or_else(|| panic!("{c} is null"))
            .parse()
            .unwrap()
    };
    let last = metrics.rows.last().unwrap();
    assert!(
        num(last, "disk_usage_mb") >= 10.0,
        "the workspace holds 10 MiB: {:?}",
        get(last, "disk_usage_mb")
    );
    assert_eq!(num(last, "memory_limit_mb"), 512.0, "strict: 512M");
    for r in &metrics.rows {
        assert_eq!(get(r, "sandbox_id"), Some(id.as_str()));
        // init, sh, the sleeps: the sandbox's own processes only.
        let procs = num(r, "process_count");
        assert!((2.0..=4.0).contains(&procs), "process_count {procs}");
        assert!(num(r, "file_descriptors") >= 3.0);
        assert!(num(r, "memory_usage_mb") > 0.0);
        // network none: the sandbox's own namespace, so the counters exist (loopback only).
        assert!(get(r, "network_rx_bytes").is_some() && get(r, "network_tx_bytes").is_some());
    }
    assert!(
        sandbox_cgroups(&id).iter().all(|d| !d.exists()) && !runtime_dir(&id).exists(),
        "nothing of the sandbox is left"
    );
}
