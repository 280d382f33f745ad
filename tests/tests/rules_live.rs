//! Rules on a live run: a kill action ends the sandbox, the alert is written and replays the same
//! from the audit log; rules reload when their file changes, and a bad file leaves the running
//! rules in place.

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use support::*;

const SLEEP_KILLS: &str = r#"
- rule: No sleeping in tests
  desc: a test rule that kills the sandbox when sleep starts
  condition: evt.type = execve and evt.res = SUCCESS and proc.name = sleep
  output: sleep started (cmdline=%proc.cmdline sandbox=%container.id)
  priority: CRITICAL
  tags: [test]
  actions: [alert, kill]
"#;

fn alerts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn a_kill_rule_ends_the_sandbox_and_its_alert_replays_from_the_audit_log() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = policy_file(dir.path(), "sleep.yaml", SLEEP_KILLS);
    let alerts_file = dir.path().join("alerts.jsonl");
    let id = unique_id("rulekill");
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        "--rules",
        "builtin",
        "--rules",
        rules.to_str().unwrap(),
        "--alerts",
        alerts_file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo before; sleep 30; echo after",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(
        stdout.contains("before") && !stdout.contains("after"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "rule \"No sleeping in tests\" killed sandbox {id}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("was killed by a rule (status 137)"),
        "{stderr}"
    );

    let found = alerts(&alerts_file);
    let kills: Vec<_> = found
        .iter()
        .filter(|a| a["rule"] == "No sleeping in tests")
        .collect();
    assert_eq!(kills.len(), 1, "{found:#?}");
    let a = kills[0];
    assert_eq!(a["sandbox_id"], id.as_str());
    assert_eq!(a["priority"], "critical");
    assert_eq!(a["tags"], serde_json::json!(["test"]));
    assert_eq!(a["actions"], serde_json::json!(["alert", "kill"]));
    assert_eq!(
        a["output"],
        format!("sleep started (cmdline=sleep 30 sandbox={id})").as_str()
    );
    assert_eq!(a["evidence"][0]["table"], "process_events");
    let taken = &a["actions_taken"][0];
    assert_eq!(taken["action"], "kill");
    assert_eq!(taken["ok"], true, "{taken}");
    assert!(taken["latency_ms"].as_f64().unwrap() >= 0.0);

    // The sandboxes table says a rule ended it.
    let sandboxes = read_table(&data, "sandboxes");
    let killed = sandboxes.with("event", "killed");
    assert_eq!(killed.len(), 1);
    assert_eq!(get(killed[0], "reason"), Some("rule"));

    // Replaying the audit log through the same rules finds the same alert (same dedup key).
    let replay = sandwatch(&[
        "rules",
        "test",
        "--data",
        data.to_str().unwrap(),
        "builtin",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(0));
    let replayed: Vec<serde_json::Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let again: Vec<_> = replayed
        .iter()
        .filter(|r| r["rule"] == "No sleeping in tests")
        .collect();
    assert_eq!(again.len(), 1, "{replayed:#?}");
    assert_eq!(again[0]["dedup_key"], a["dedup_key"]);
    assert_eq!(again[0]["output"], a["output"]);
    assert_eq!(again[0]["actions_taken"], serde_json::json!([]));
}

fn phase_rule(name: &str) -> String {
    format!(
        r#"
- rule: {name}
  desc: fires on the job's reads of the phase file, at most every 300 ms
  condition: evt.type in (open, openat) and fd.name = /workspace/phase and proc.name = cat
  output: phase file read (%fd.name)
  priority: NOTICE
  threshold: {{ count: 0, window: 300ms }}
  actions: [alert]
"#
    )
}

fn count_rule(path: &Path, rule: &str) -> usize {
    alerts(path).iter().filter(|a| a["rule"] == rule).count()
}

#[test]
fn rules_reload_when_their_file_changes_and_a_bad_file_changes_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let workspace = job_workspace();
    std::fs::write(workspace.path().join("phase"), "x").unwrap();
    let rules = policy_file(dir.path(), "phase.yaml", &phase_rule("phase one"));
    let alerts_file = dir.path().join("alerts.jsonl");
    let id = unique_id("reload");
    let run = BackgroundRun::start(
        &id,
        &data,
        None,
        &[
            "--workspace",
            workspace.path().to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--alerts",
            alerts_file.to_str().unwrap(),
        ],
        &[
            "sh",
            "-c",
            "while [ ! -e /workspace/stop ]; do cat /workspace/phase > /dev/null; sleep 0.05; done",
        ],
    );
    let long = Duration::from_secs(20);
    wait_for("the first rules to fire", long, || {
        count_rule(&alerts_file, "phase one") >= 2
    });

    // A file that does not parse: rejected, the running rule keeps firing.
    std::fs::write(&rules, "- rule: broken\n  condition: (evt.type = open\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = count_rule(&alerts_file, "phase one");
    wait_for(
        "the old rules to keep firing after a bad file",
        long,
        || count_rule(&alerts_file, "phase one") >= before + 2,
    );

    // A good file: its rule replaces the old one.
    std::fs::write(&rules, phase_rule("phase two")).unwrap();
    wait_for("the new rules to fire", long, || {
        count_rule(&alerts_file, "phase two") >= 2
    });
    let settled = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let one_after = count_rule(&alerts_file, "phase one");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        count_rule(&alerts_file, "phase one"),
        one_after,
        "the old rule stopped firing once the new file loaded ({:?} ago)",
        settled.elapsed()
    );

    std::fs::write(workspace.path().join("stop"), "").unwrap();
    let out = run.finish(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("rejected, the 1 rules loaded before keep running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("phase.yaml:1:3: rule \"broken\" has no output"),
        "the error names file, line and column: {stderr}"
    );
    assert!(
        stderr.contains("rules reloaded (a rules file changed): 1 rules active"),
        "{stderr}"
    );
}

#[test]
fn a_rules_file_that_does_not_load_stops_the_run_before_it_starts() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let rules = policy_file(
        dir.path(),
        "bad.yaml",
        "- rule: r\n  desc: d\n  condition: proc.pid = abc\n  output: o\n  priority: INFO\n",
    );
    let out = sandwatch(&[
        "run",
        "--data",
        dir.path().join("data").to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the rules do not load"), "{stderr}");
    assert!(stderr.contains("\"abc\" is not a number"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing ran, nothing was recorded"
    );
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1: answers 200 to every POST and hands over the bodies.
fn http_receiver() -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut headers) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx
                .send((headers, String::from_utf8_lossy(&body).into_owned()))
                .is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn alerts_reach_a_webhook_and_the_audit_log() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, received) = http_receiver();
    let hooks = policy_file(
        dir.path(),
        "hooks.yaml",
        &format!(
            "hooks:\n  - name: test-webhook\n    type: webhook\n    url: http://127.0.0.1:{port}/alerts\n    secret: s3cret\n"
        ),
    );
    let id = unique_id("hooks");
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        "--hooks",
        hooks.to_str().unwrap(),
        "--hooks-state",
        dir.path().join("outbox").to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "cat /etc/shadow; true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("hooks: 1 delivered, 0 failed"), "{stderr}");
    let (headers, body) = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the webhook got the alert");
    let alert: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["rule"], "Sandbox read of password or sudoers file");
    assert_eq!(alert["sandbox_id"], id.as_str());
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-sandwatch-signature: sha256="),
        "{headers}"
    );
    // The audit log has the alert and its delivery.
    let alerts = read_table(&data, "alerts");
    assert_eq!(alerts.len(), 1);
    let row = &alerts.rows[0];
    assert_eq!(
        get(row, "rule"),
        Some("Sandbox read of password or sudoers file")
    );
    assert_eq!(get(row, "dedup_key"), alert["dedup_key"].as_str());
    let deliveries = read_table(&data, "alert_deliveries");
    let delivered = deliveries.with("state", "delivered");
    assert_eq!(delivered.len(), 1);
    assert_eq!(get(delivered[0], "hook"), Some("test-webhook"));
    assert_eq!(get(delivered[0], "status_code"), Some("200"));
    assert!(stderr.contains("alerts 1, alert_deliveries 1"), "{stderr}");
}

#[test]
fn a_syscall_kill_rule_is_carried_out_by_the_kernel_before_the_call_returns() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let workspace = job_workspace();
    let found = kernel_killed_run(
        dir.path(),
        workspace.path(),
        "kkill",
        r#"
- rule: No getpriority
  desc: getpriority is forbidden in this test
  condition: evt.type = getpriority
  output: getpriority called (proc=%proc.name sandbox=%container.id)
  priority: CRITICAL
  actions: [alert, kill]
"#,
        "No getpriority",
        "os.getpriority(os.PRIO_PROCESS, 0)",
    );
    let taken = &found["actions_taken"];
    assert!(
        taken[0]["detail"]
            .as_str()
            .unwrap()
            .contains("in the kernel before getpriority returned"),
        "{taken}"
    );
}

#[test]
fn a_freeze_rule_stops_the_sandbox_until_it_is_killed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = policy_file(
        dir.path(),
        "freeze.yaml",
        r#"
- rule: Freeze on sleep
  desc: a test rule that freezes the sandbox when sleep starts
  condition: evt.type = execve and evt.res = SUCCESS and proc.name = sleep
  output: sleep started, sandbox frozen (%container.id)
  priority: WARNING
  actions: [alert, freeze]
"#,
    );
    let alerts_file = dir.path().join("alerts.jsonl");
    let id = unique_id("freeze");
    let workspace = job_workspace();
    let run = BackgroundRun::start(
        &id,
        &data,
        None,
        &[
            "--workspace",
            workspace.path().to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--alerts",
            alerts_file.to_str().unwrap(),
        ],
        &[
            "sh",
            "-c",
            "sleep 0.2; while true; do date +%s%N > /workspace/tick; sleep 0.05; done",
        ],
    );
    wait_for("the freeze alert", Duration::from_secs(20), || {
        count_rule(&alerts_file, "Freeze on sleep") >= 1
    });
    let frozen = sandbox_cgroups(&id)
        .into_iter()
        .map(|d| d.join("cgroup.freeze"))
        .find(|f| f.exists())
        .expect("the sandbox's cgroup.freeze");
    wait_for("the sandbox to be frozen", Duration::from_secs(5), || {
        std::fs::read_to_string(&frozen).is_ok_and(|s| s.trim() == "1")
    });
    // Frozen: the job's loop makes no progress.
    let tick = workspace.path().join("tick");
    let before = std::fs::read_to_string(&tick).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read_to_string(&tick).unwrap_or_default(),
        before,
        "a frozen sandbox runs nothing"
    );
    let a = alerts(&alerts_file)
        .into_iter()
        .find(|a| a["rule"] == "Freeze on sleep")
        .unwrap();
    assert_eq!(a["actions_taken"][0]["action"], "freeze");
    assert_eq!(a["actions_taken"][0]["ok"], true);
    // An operator ends it.
    let kill = sandwatch(&["kill", &id]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
    let out = run.finish(Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("froze sandbox"));
}

/// `sandwatch run` of a python3 job that prints "before", runs `call`, prints "after", under the
/// kill rule `rule` of `rules_yaml` (written in `dir`, with the audit log in `dir/data`), with
/// `workspace`: the kernel kills at `call`, the job never prints "after", the run ends 137 with
/// the sandbox killed for the rule and one alert, which is returned.
fn kernel_killed_run(
    dir: &Path,
    workspace: &Path,
    name: &str,
    rules_yaml: &str,
    rule: &str,
    call: &str,
) -> serde_json::Value {
    let data = dir.join("data");
    let rules = policy_file(dir, "rules.yaml", rules_yaml);
    let alerts_file = dir.join("alerts.jsonl");
    let id = unique_id(name);
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        "--workspace",
        workspace.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--alerts",
        alerts_file.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        &format!("import os; print('before', flush=True); {call}; print('after', flush=True)"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stdout.contains("before"), "{stdout}");
    assert!(
        !stdout.contains("after"),
        "the process never returned from {call}: {stdout}"
    );
    assert!(
        stderr.contains(&format!("rule \"{rule}\" killed sandbox {id}")),
        "{stderr}"
    );
    let sandboxes = read_table(&data, "sandboxes");
    let killed = sandboxes.with("event", "killed");
    assert_eq!(killed.len(), 1, "{stderr}");
    assert_eq!(get(killed[0], "reason"), Some("rule"));
    let mut found: Vec<_> = alerts(&alerts_file)
        .into_iter()
        .filter(|a| a["rule"] == rule)
        .collect();
    assert_eq!(found.len(), 1, "one alert, not one per source: {found:#?}");
    let alert = found.remove(0);
    let taken = &alert["actions_taken"];
    assert_eq!(taken[1]["ok"], true, "and the whole sandbox: {taken}");
    alert
}

const NO_SECRETS: &str = r#"
- rule: No secrets
  desc: the secret directory is off limits in this test
  condition: evt.type in (open, openat, openat2) and fd.name startswith /workspace/secret/
  output: secret opened (file=%fd.name proc=%proc.name sandbox=%container.id)
  priority: CRITICAL
  actions: [alert, kill]
"#;

/// [`kernel_killed_run`] of `call` under the rule above, with a workspace holding `secret/key`.
fn run_secret_job(dir: &Path, name: &str, call: &str) -> serde_json::Value {
    let workspace = job_workspace();
    std::fs::create_dir(workspace.path().join("secret")).unwrap();
    std::fs::write(workspace.path().join("secret/key"), "k").unwrap();
    kernel_killed_run(dir, workspace.path(), name, NO_SECRETS, "No secrets", call)
}

#[test]
fn a_path_kill_rule_is_carried_out_by_the_kernel_as_the_open_returns() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let a = run_secret_job(dir.path(), "kpath", "open('/workspace/secret/key').read()");
    assert!(
        a["output"]
            .as_str()
            .unwrap()
            .contains("killed in the kernel as openat of /workspace/secret/key returned"),
        "{a}"
    );
    assert!(
        a["actions_taken"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("SIGKILL in the kernel as openat of /workspace/secret/key returned"),
        "{a}"
    );
    assert_eq!(a["evidence"][0]["table"], "file_events");
    assert_eq!(a["fields"]["fd.name"], "/workspace/secret/key");

    // The audit log has the open, with its result, at the kill's time: replaying it through
    // the same rule finds the same alert (same dedup key), with no action taken.
    let data = dir.path().join("data");
    let opens = read_table(&data, "file_events");
    let opens = opens.with("path", "/workspace/secret/key");
    assert_eq!(opens.len(), 1, "{opens:#?}");
    assert!(get(opens[0], "ret").unwrap().parse::<i64>().unwrap() >= 0);
    let replay = sandwatch(&[
        "rules",
        "test",
        "--data",
        data.to_str().unwrap(),
        dir.path().join("rules.yaml").to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(0));
    let replayed: Vec<serde_json::Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.len(), 1, "{replayed:#?}");
    assert_eq!(replayed[0]["dedup_key"], a["dedup_key"]);
}

/// A relative path is not what the rule's pattern says, so user space (which reads `fd.name` as
/// the process gave it) would let it through; the kernel names the file the descriptor opened.
#[test]
fn a_path_kill_rule_catches_a_relative_open_in_the_kernel() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let a = run_secret_job(
        dir.path(),
        "kpath-rel",
        "os.chdir('/workspace/secret'); open('key').read()",
    );
    assert!(
        a["output"].as_str().unwrap().contains(
            "killed in the kernel as openat of the file it opened: /workspace/secret/key returned"
        ),
        "{a}"
    );
    let opens = read_table(&dir.path().join("data"), "file_events");
    assert_eq!(
        opens.with("path", "key").len(),
        1,
        "the row keeps the path as given"
    );
}
