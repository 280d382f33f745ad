//! The detector on real batches (the schema crate's builders) with real rules (the built-in
//! ruleset, or files in a temporary directory), no root: alerts in the alerts file, in the
//! `alerts` table read back with parquet's reader, in the summary and as action events; actions
//! that cannot be carried out; kernel kills; reloads.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arrow_array::{Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandwatch_collector::{KernelKill, KillCause};
use sandwatch_detect::{
    ActionEvent, ActionKind, AlertOutputs, DetectObserver, Detector, DetectorConfig,
    KernelKillPlan, KernelKills, KernelRules, Notice, ReloadCause, RuleSources,
};
use sandwatch_schema::{
    Common, FileEvent, FileEventsBuilder, ProcessEvent, ProcessEventsBuilder, Table, TableBatch,
};
use serde_json::Value;
use tokio::sync::mpsc;

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND;
const SANDBOX: &str = "sb-test1";
/// A sandbox's root, as the host sees it.
const SANDBOX_ROOT: u32 = 1_000_000_000;

fn common<'a>(pid: u32, comm: &'a str, event: &'a str, ret: i64, at: i64) -> Common<'a> {
    Common {
        time_ns: T0 + at,
        host: "h",
        sandbox_id: Some(SANDBOX),
        cgroup_id: 7,
        pid,
        tid: pid,
        ppid: Some(1),
        uid: SANDBOX_ROOT,
        gid: SANDBOX_ROOT,
        comm,
        exe: None,
        event,
        syscall: Some(event),
        ret: Some(ret),
    }
}

/// A successful exec of `exe` by process `pid`.
fn exec_batch(pid: u32, exe: &str, comm: &str, at: i64) -> Arc<TableBatch> {
    let mut c = common(pid, comm, "execve", 0, at);
    c.exe = Some(exe);
    let argv = format!("{exe}\0");
    let mut b = ProcessEventsBuilder::new(1);
    b.append(&ProcessEvent {
        common: c,
        filename: Some(exe),
        argv: Some(argv.as_bytes()),
        cwd: Some("/workspace"),
        ..ProcessEvent::default()
    });
    Arc::new(TableBatch {
        table: Table::ProcessEvents,
        batch: b.finish().unwrap(),
    })
}

/// Successful read-only opens (`openat`, O_RDONLY) of each path, one process each.
fn open_batch(opens: &[(u32, &str, &str)], at: i64) -> Arc<TableBatch> {
    let mut b = FileEventsBuilder::new(opens.len());
    for (i, (pid, comm, path)) in opens.iter().enumerate() {
        let mut c = common(*pid, comm, "openat", 3, at + i as i64);
        c.exe = Some("/usr/bin/cat");
        b.append(&FileEvent {
            common: c,
            path: Some(path),
            dirfd: Some(-100),
            flags: Some(0),
            flags_text: Some("O_RDONLY"),
            ..FileEvent::default()
        });
    }
    Arc::new(TableBatch {
        table: Table::FileEvents,
        batch: b.finish().unwrap(),
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    alerts_file: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            data: dir.path().join("data"),
            alerts_file: dir.path().join("alerts.jsonl"),
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn outputs(&self) -> AlertOutputs {
        AlertOutputs {
            file: Some(self.alerts_file.clone()),
            data: self.data.clone(),
            hooks: None,
        }
    }

    /// A detector with the built-in rules, no SIGHUP, reporting its actions.
    fn builtin(&self) -> (DetectorConfig, mpsc::UnboundedReceiver<ActionEvent>) {
        let sources = RuleSources::builtin();
        let engine = sources.engine().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let config = DetectorConfig::new(engine, sources, self.outputs(), "test-host")
            .reload_on_sighup(false)
            .action_events(tx);
        (config, rx)
    }

    /// The alerts file's lines.
    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.alerts_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every row of the `alerts` table, read back from its Parquet files.
    fn alert_table(&self) -> Vec<RecordBatch> {
        let mut files = Vec::new();
        find_parquet(&self.data.join("alerts"), &mut files);
        files
            .iter()
            .flat_map(|f| {
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn find_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_parquet(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

/// A text column of the table's rows, in order (null: None).
fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap_or_else(|| panic!("{name} is not text"));
            (0..c.len())
                .map(|i| c.is_valid(i).then(|| c.value(i).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts a detector on a fresh stream.
fn start(config: DetectorConfig) -> (Detector, mpsc::Sender<Arc<TableBatch>>) {
    let (tx, rx) = mpsc::channel(16);
    (Detector::start(config, rx).unwrap(), tx)
}

#[tokio::test]
async fn alerts_reach_the_file_the_alerts_table_and_the_summary() {
    let s = Setup::new();
    let (config, mut actions) = s.builtin();
    let (detector, tx) = start(config);
    tx.send(exec_batch(40, "/tmp/x", "x", 0)).await.unwrap();
    tx.send(open_batch(
        &[
            (41, "cat", "/etc/shadow"),
            (42, "cat", "/workspace/notes.txt"),
        ],
        SECOND,
    ))
    .await
    .unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();

    assert_eq!(summary.alerts, 2, "{summary:?}");
    assert_eq!(
        summary
            .by_priority
            .iter()
            .map(|(p, n)| (p.as_str(), *n))
            .collect::<Vec<_>>(),
        [("notice", 1), ("warning", 1)]
    );
    assert_eq!(summary.alert_rows, 2);
    assert_eq!(summary.delivery_rows, 0);
    assert!(summary.kills.is_empty() && summary.freezes.is_empty());
    assert_eq!(summary.actions_failed, 0);
    assert!(summary.hooks.is_none());
    assert!(actions.try_recv().is_err(), "no rule acted");

    let file = s.alerts();
    let rules: Vec<&str> = file.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        [
            "Sandbox program run from /tmp",
            "Sandbox read of password or sudoers file"
        ]
    );
    let tmp = &file[0];
    assert_eq!(tmp["priority"], "notice");
    assert_eq!(tmp["sandbox_id"], SANDBOX);
    assert_eq!(tmp["host"], "test-host");
    assert_eq!(tmp["evidence"][0]["table"], "process_events");
    assert_eq!(tmp["evidence"][0]["pid"], 40);
    assert_eq!(tmp["actions"], serde_json::json!(["alert"]));
    assert!(
        tmp["output"].as_str().unwrap().contains("exe=/tmp/x"),
        "{tmp}"
    );
    let shadow = &file[1];
    assert_eq!(shadow["priority"], "warning");
    assert_eq!(shadow["evidence"][0]["table"], "file_events");
    assert_eq!(shadow["evidence"][0]["time_ns"], T0 + SECOND);
    assert_eq!(shadow["fields"]["fd.name"], "/etc/shadow");
    assert!(
        shadow["output"]
            .as_str()
            .unwrap()
            .contains("file=/etc/shadow res=SUCCESS proc=cat"),
        "{shadow}"
    );

    let table = s.alert_table();
    let ids: Vec<Option<String>> = file
        .iter()
        .map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(column(&table, "alert_id"), ids, "the same alerts, in order");
    assert_eq!(
        column(&table, "rule"),
        rules
            .iter()
            .map(|r| Some(r.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        column(&table, "priority"),
        [Some("notice".into()), Some("warning".into())]
    );
    assert_eq!(
        column(&table, "sandbox_id"),
        [Some(SANDBOX.into()), Some(SANDBOX.into())]
    );
    assert_eq!(
        column(&table, "event_table"),
        [Some("process_events".into()), Some("file_events".into())]
    );
    assert_eq!(
        column(&table, "dedup_key"),
        file.iter()
            .map(|a| a["dedup_key"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        column(&table, "actions_taken"),
        [Some("[]".into()), Some("[]".into())]
    );
}

#[tokio::test]
async fn a_kill_with_nothing_to_act_on_is_recorded_as_failed_and_the_detector_goes_on() {
    let s = Setup::new();
    let (config, mut actions) = s.builtin();
    let (detector, tx) = start(config);
    tx.send(open_batch(&[(50, "dd", "/dev/mem")], 0))
        .await
        .unwrap();
    // Later batches are still evaluated.
    tx.send(open_batch(&[(51, "cat", "/etc/shadow")], SECOND))
        .await
        .unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();

    assert_eq!(summary.alerts, 2, "{summary:?}");
    assert_eq!(summary.actions_failed, 1);
    assert!(summary.kills.is_empty(), "nothing was killed: {summary:?}");
    let file = s.alerts();
    let kill = &file[0];
    assert_eq!(kill["rule"], "Sandbox kernel memory access");
    assert_eq!(kill["priority"], "critical");
    assert_eq!(kill["actions"], serde_json::json!(["alert", "kill"]));
    let taken = kill["actions_taken"].as_array().unwrap();
    assert_eq!(taken.len(), 1, "{kill}");
    assert_eq!(taken[0]["action"], "kill");
    assert_eq!(taken[0]["ok"], false);
    assert_eq!(
        taken[0]["detail"],
        "no sandbox to act on (watched cgroups are not sandboxes)"
    );
    assert_eq!(file[1]["rule"], "Sandbox read of password or sudoers file");

    let event = actions.try_recv().expect("the attempt is reported");
    assert_eq!(event.sandbox_id.as_deref(), Some(SANDBOX));
    assert_eq!(event.rule, "Sandbox kernel memory access");
    assert_eq!(event.action, ActionKind::Kill);
    assert!(!event.ok && !event.in_kernel);
    assert_eq!(event.alert_id, kill["id"].as_str().unwrap());
    assert_eq!(event.event_time_ns, T0);
    assert!(actions.try_recv().is_err(), "one action, one event");

    let table = s.alert_table();
    let taken: Vec<Value> = column(&table, "actions_taken")
        .into_iter()
        .map(|t| serde_json::from_str(&t.unwrap()).unwrap())
        .collect();
    assert_eq!(taken[0][0]["ok"], false, "{taken:?}");
    assert_eq!(taken[1], serde_json::json!([]));
}

#[tokio::test]
async fn a_target_without_that_sandbox_fails_the_kill_with_the_runners_reason() {
    let Ok(root) = sandwatch_runner::CgroupRoot::discover() else {
        eprintln!("!!! SKIPPED: no cgroup2 hierarchy mounted here !!!");
        return;
    };
    let s = Setup::new();
    let runtime = s.dir().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let (config, mut actions) = s.builtin();
    let config = config.target(sandwatch_detect::ActionTarget::new(root, &runtime));
    let (detector, tx) = start(config);
    tx.send(open_batch(&[(50, "dd", "/dev/mem")], 0))
        .await
        .unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();
    assert_eq!(summary.actions_failed, 1);
    let event = actions.try_recv().unwrap();
    assert!(!event.ok);
    let detail = event.detail.unwrap();
    assert!(
        detail.contains(&format!("find sandbox {SANDBOX}"))
            && detail.contains("no such running sandbox"),
        "{detail}"
    );
    assert_eq!(s.alerts()[0]["actions_taken"][0]["detail"], detail.as_str());
}

#[tokio::test]
async fn a_kernel_kill_is_one_alert_with_the_kernels_action_and_the_sandboxs() {
    let s = Setup::new();
    let (config, mut actions) = s.builtin();
    let ids = KernelRules::new();
    let plan = KernelKillPlan::new(&RuleSources::builtin().engine().unwrap(), &ids);
    let memory = plan
        .rules()
        .iter()
        .find(|r| r.rule == "Sandbox kernel memory access")
        .expect("the kernel decides the kernel memory rule");
    let (kills_tx, kills) = mpsc::unbounded_channel();
    let config = config.kernel_kills(KernelKills {
        kills,
        rules: ids.clone(),
    });
    let (detector, tx) = start(config);
    assert_eq!(*detector.kernel_plan().unwrap(), plan);
    kills_tx
        .send(KernelKill {
            time_ns: T0,
            sandbox_id: Some(SANDBOX.into()),
            cgroup_id: 7,
            order_cgroup_id: 7,
            pid: 50,
            tid: 50,
            uid: SANDBOX_ROOT,
            comm: "dd".into(),
            exe: Some("/usr/bin/dd".into()),
            syscall: "openat".into(),
            syscall_nr: 257,
            args: [0; 6],
            rule_id: memory.id,
            cause: KillCause::Path {
                path: "/dev/mem".into(),
                opened: false,
            },
            ret: Some(3),
            signal_error: None,
        })
        .unwrap();
    // The syscall's own row, arriving after the kill: the same alert, not raised again.
    tx.send(open_batch(&[(50, "dd", "/dev/mem")], 0))
        .await
        .unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();

    assert_eq!(summary.alerts, 1, "{summary:?}");
    let file = s.alerts();
    let a = &file[0];
    assert_eq!(a["rule"], "Sandbox kernel memory access");
    assert!(
        a["output"].as_str().unwrap().contains(
            "(killed in the kernel as openat of /dev/mem returned: proc=dd pid=50 sandbox=sb-test1)"
        ),
        "{a}"
    );
    assert_eq!(a["evidence"][0]["table"], "file_events");
    let taken = a["actions_taken"].as_array().unwrap();
    assert_eq!(taken.len(), 2, "{a}");
    assert_eq!(taken[0]["ok"], true);
    assert!(
        taken[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("SIGKILL in the kernel")
    );
    assert_eq!(
        taken[1]["ok"], false,
        "no target: the sandbox could not be killed"
    );
    assert_eq!(summary.actions_failed, 1);

    let kernel = actions.try_recv().unwrap();
    assert!(kernel.in_kernel && kernel.ok);
    let sandbox = actions.try_recv().unwrap();
    assert!(!sandbox.in_kernel && !sandbox.ok);
    assert_eq!(sandbox.sandbox_id.as_deref(), Some(SANDBOX));
    assert_eq!(kernel.alert_id, sandbox.alert_id);
}

fn open_rule(name: &str, path: &str, actions: &str) -> String {
    format!(
        "- rule: {name}\n  desc: a read of {path}\n  condition: evt.type in (open, openat) and fd.name = {path}\n  output: {name} (%fd.name by %proc.name)\n  priority: WARNING\n  actions: [{actions}]\n"
    )
}

/// Writes a rules file so that the detector's next check sees it changed, whatever the file
/// system's time granularity.
fn rewrite(path: &Path, text: &str, generation: u64) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + generation))
        .unwrap();
}

async fn next_notice(rx: &mut mpsc::UnboundedReceiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notice within 10 s")
        .expect("the detector is running")
}

#[tokio::test]
async fn a_rules_file_that_stops_loading_is_rejected_and_the_old_rules_keep_running() {
    let s = Setup::new();
    let rules = s.dir().join("mine.yaml");
    rewrite(
        &rules,
        &open_rule("phase one", "/workspace/phase", "alert"),
        0,
    );
    let sources = RuleSources::new([&rules]);
    let engine = sources.engine().unwrap();
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let config = DetectorConfig::new(engine, sources, s.outputs(), "test-host")
        .reload_on_sighup(false)
        .reload_every(Some(Duration::from_millis(20)))
        .on_notice(move |n| {
            let _ = notices_tx.send(n);
        });
    let (detector, tx) = start(config);
    let read = |at| open_batch(&[(60, "cat", "/workspace/phase")], at);
    tx.send(read(0)).await.unwrap();

    rewrite(&rules, "- rule: broken\n  condition: (evt.type = open\n", 1);
    match next_notice(&mut notices).await {
        Notice::ReloadRejected { cause, kept, error } => {
            assert_eq!(cause, ReloadCause::FileChanged);
            assert_eq!(kept, 1);
            assert!(error.to_string().contains("mine.yaml:1:3"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    tx.send(read(SECOND)).await.unwrap();

    rewrite(
        &rules,
        &open_rule("phase two, longer", "/workspace/phase", "alert"),
        2,
    );
    let n = next_notice(&mut notices).await;
    assert!(
        matches!(
            n,
            Notice::Reloaded {
                cause: ReloadCause::FileChanged,
                rules: 1
            }
        ),
        "{n:?}"
    );
    assert_eq!(
        n.to_string(),
        "rules reloaded (a rules file changed): 1 rules active"
    );
    tx.send(read(2 * SECOND)).await.unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();

    assert_eq!(
        (summary.reloads, summary.rejected_reloads),
        (1, 1),
        "{summary:?}"
    );
    let rules: Vec<String> = s
        .alerts()
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, ["phase one", "phase one", "phase two, longer"]);
    assert_eq!(summary.alert_rows, 3);
}

#[tokio::test]
async fn a_requested_reload_changes_the_kernel_plan_for_sandboxes_started_after_it() {
    let s = Setup::new();
    let rules = s.dir().join("mine.yaml");
    rewrite(&rules, &open_rule("watch it", "/workspace/a", "alert"), 0);
    let sources = RuleSources::new([&rules]);
    let engine = sources.engine().unwrap();
    let ids = KernelRules::new();
    let (_kills_tx, kills) = mpsc::unbounded_channel();
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let config = DetectorConfig::new(engine, sources, s.outputs(), "test-host")
        .reload_on_sighup(false)
        .reload_every(None)
        .kernel_kills(KernelKills {
            kills,
            rules: ids.clone(),
        })
        .on_notice(move |n| {
            let _ = notices_tx.send(n);
        });
    let (detector, tx) = start(config);
    assert!(detector.kernel_plan().unwrap().is_empty());

    rewrite(
        &rules,
        &open_rule("kill it", "/workspace/secret", "alert, kill"),
        1,
    );
    detector.request_reload();
    let n = next_notice(&mut notices).await;
    assert!(
        matches!(
            n,
            Notice::Reloaded {
                cause: ReloadCause::Requested,
                rules: 1
            }
        ),
        "{n:?}"
    );
    let plan = detector.kernel_plan().unwrap();
    assert_eq!(plan.rules().len(), 1);
    assert_eq!(plan.rules()[0].rule, "kill it");
    assert_eq!(ids.get(plan.rules()[0].id).unwrap().name, "kill it");
    drop(tx);
    let summary = detector.finish().await.unwrap();
    assert_eq!(summary.reloads, 1);
    assert_eq!(summary.alerts, 0);
}

/// Counts what an observer is told.
#[derive(Default)]
struct Counting {
    batches: std::sync::Mutex<Vec<(Table, usize)>>,
    alerts: std::sync::Mutex<Vec<String>>,
}

impl DetectObserver for Counting {
    fn batch_evaluated(&self, table: Table, rows: usize, took: Duration) {
        assert!(took < Duration::from_secs(10));
        self.batches.lock().unwrap().push((table, rows));
    }

    fn alert(&self, alert: &sandwatch_hooks::Alert) {
        self.alerts.lock().unwrap().push(alert.rule.clone());
    }
}

#[tokio::test]
async fn an_observer_is_told_of_every_batch_and_alert() {
    let s = Setup::new();
    let (config, _actions) = s.builtin();
    let seen = Arc::new(Counting::default());
    let (detector, tx) = start(config.observer(seen.clone()));
    tx.send(exec_batch(40, "/tmp/x", "x", 0)).await.unwrap();
    tx.send(open_batch(
        &[(41, "cat", "/etc/shadow"), (42, "cat", "/workspace/a")],
        SECOND,
    ))
    .await
    .unwrap();
    drop(tx);
    let summary = detector.finish().await.unwrap();
    assert_eq!(
        *seen.batches.lock().unwrap(),
        [(Table::ProcessEvents, 1), (Table::FileEvents, 2)]
    );
    assert_eq!(
        *seen.alerts.lock().unwrap(),
        [
            "Sandbox program run from /tmp",
            "Sandbox read of password or sudoers file"
        ]
    );
    assert_eq!(summary.alerts, 2);
}
