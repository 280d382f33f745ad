//! The security team's side over real runs: `sandwatch sql` (checked against DuckDB on the same
//! files) and baselines learned from a profile's sandboxes, scored offline and live.

mod support;

use std::path::Path;

use support::*;

fn run_job(
    data: &Path,
    policy: &str,
    id: &str,
    script: &str,
    extra: &[&str],
) -> std::process::Output {
    let data = data.to_str().unwrap();
    let mut args = vec![
        "run",
        "--data",
        data,
        "--policy",
        policy,
        "--sandbox-id",
        id,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    sandwatch(&args)
}

fn sql(data: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["sql", "--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    sandwatch(&all)
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn sql_answers_questions_about_a_real_run() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let id = unique_id("sql");
    let policy = policy_file(
        data.path(),
        "p.yaml",
        "extends: default\nprofile: sqltest\n",
    );
    let out = run_job(
        data.path(),
        policy.to_str().unwrap(),
        &id,
        "cat /etc/passwd > /dev/null; echo x > /workspace/out.txt; \
         python3 -c 'import socket; s = socket.socket(); s.settimeout(0.5); s.connect_ex((\"192.0.2.1\", 8080))'",
        &["--no-rules"],
    );
    assert!(out.status.success());

    // Our SQL and DuckDB agree on the same Parquet files.
    let q = format!(
        "SELECT count(*) AS n FROM file_events WHERE sandbox_id = '{id}' AND path = '/etc/passwd'"
    );
    let ours = sql(data.path(), &["--format", "json", &q]);
    assert!(ours.status.success());
    let n = json_lines(&ours)[0]["n"].as_i64().unwrap();
    assert!(n >= 1, "cat opened /etc/passwd");
    let theirs = duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/file_events/**/*.parquet', hive_partitioning = true) WHERE sandbox_id = '{id}' AND path = '/etc/passwd'",
        data.path().display()
    ));
    assert_eq!(theirs[0][0].as_i64(), Some(n));

    // The events view, a function, and the table format with its row count.
    let out = sql(
        data.path(),
        &[&format!(
            "SELECT kind, count(*) AS n FROM events WHERE sandbox_id = '{id}' AND cidr_match(coalesce(NULL, '10.0.0.1'), '10.0.0.0/8') GROUP BY kind ORDER BY kind"
        )],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| file") && text.contains("| process"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rows)"));

    // Saved investigations.
    let out = sql(
        data.path(),
        &[
            "--format",
            "json",
            "--saved",
            "process-tree",
            "--param",
            &format!("sandbox={id}"),
        ],
    );
    assert!(out.status.success());
    let tree = json_lines(&out);
    let commands: Vec<&str> = tree.iter().filter_map(|r| r["command"].as_str()).collect();
    assert!(
        commands.iter().any(|c| c.starts_with("cat /etc/passwd")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("python3 -c")),
        "{commands:?}"
    );
    assert!(
        tree.iter()
            .any(|r| r["process"].as_str().is_some_and(|p| p.starts_with("  "))),
        "children are indented"
    );

    let out = sql(data.path(), &["--format", "json", "--saved", "outbound"]);
    let dests = json_lines(&out);
    assert!(
        dests
            .iter()
            .any(|r| r["daddr"] == "192.0.2.1" && r["dport"] == 8080),
        "{dests:?}"
    );

    let out = sql(data.path(), &["--format", "csv", "--saved", "activity"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("sandbox_id,profile,"), "{csv}");
    assert!(csv.contains(&format!("{id},sqltest,")), "{csv}");

    // Bad input: exit 2 with the reason, nothing written.
    let out = sql(data.path(), &["SELECT pidd FROM process_events"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean pid"));
    let out = sql(data.path(), &["DROP TABLE process_events"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sql(data.path(), &["--saved", "process-tree"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--param sandbox="));
    assert!(!parquet_files(data.path(), "process_events").is_empty());
}

#[test]
fn a_baseline_learned_from_a_profile_flags_a_new_act_live_and_offline() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let profile = unique_id("bl");
    let policy = policy_file(
        data.path(),
        "p.yaml",
        &format!("extends: default\nprofile: {profile}\n"),
    );
    let policy = policy.to_str().unwrap();
    let job = include_str!("../corpus/text-pipeline.sh");
    let discovery = include_str!("../corpus/anomalies/discovery.sh");
    for i in 0..8 {
        let out = run_job(
            data.path(),
            policy,
            &unique_id(&format!("bl-tr{i}")),
            &format!("SEED={i}\n{job}"),
            &["--no-rules"],
        );
        assert!(out.status.success());
    }
    let out = sandwatch(&[
        "baseline",
        "train",
        "--profile",
        &profile,
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("profile {profile} v1: 8 sandboxes")),
        "{said}"
    );

    // Live: the run scores its sandbox against the model and raises the new executable.
    let alerts = data.path().join("alerts.jsonl");
    let bad = unique_id("bl-bad");
    let out = run_job(
        data.path(),
        policy,
        &bad,
        &format!("SEED=99\n{job}\n{discovery}"),
        &["--no-rules", "--alerts", alerts.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("baseline of profile {profile} (v1"))
    );
    let raised: Vec<serde_json::Value> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exe = raised
        .iter()
        .find(|a| {
            a["rule"] == "Baseline: new executable" && a["fields"]["term"] == "/usr/bin/uname"
        })
        .unwrap_or_else(|| panic!("no new-executable alert for uname: {raised:?}"));
    assert_eq!(exe["sandbox_id"], bad.as_str());
    assert!(exe["score"].as_f64().unwrap() > 0.0);
    assert!(
        exe["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "baseline")
    );
    // The alert is in the audit log too, with its triggering event.
    let rows = read_table(data.path(), "alerts");
    let row = rows
        .with("rule", "Baseline: new executable")
        .into_iter()
        .find(|r| get(r, "sandbox_id") == Some(bad.as_str()))
        .expect("the alert's row");
    assert_eq!(get(row, "event_table"), Some("process_events"));

    // Offline: the same sandbox is anomalous (exit 1), a fresh benign one is not (exit 0).
    let score = |id: &str| {
        sandwatch(&[
            "baseline",
            "score",
            "--profile",
            &profile,
            "--sandbox",
            id,
            "--data",
            data.path().to_str().unwrap(),
        ])
    };
    let out = score(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("new executable /usr/bin/uname"));
    let good = unique_id("bl-good");
    assert!(
        run_job(
            data.path(),
            policy,
            &good,
            &format!("SEED=77\n{job}"),
            &["--no-rules"]
        )
        .status
        .success()
    );
    let out = score(&good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
