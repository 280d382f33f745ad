//! The default ruleset against real jobs: every default rule fires on a job that does what it
//! must catch, in a real sandbox under real probes, and stays quiet on the nearest legitimate
//! thing; everyday agent work (python, a C compiler, git, text tools, sqlite, tar) raises nothing.
//!
//! The jobs are modes of `sw-rule-job` (src/bin/sw-rule-job.rs), copied into each sandbox's
//! workspace and run as `/workspace/sw-rule-job MODE` by `sandwatch run` with the built-in
//! ruleset; the test reads what `--alerts FILE` wrote. A malicious job must raise its rule's
//! alert, for its sandbox (and, for the kill rules, end with 137 before it finishes on its own);
//! a benign job must raise no alert at all, so it also stands for every other rule.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

fn rule_job_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sw-rule-job")
}

const RULE_JOB: &str = "/workspace/sw-rule-job";

/// The policy a job runs under.
#[derive(Clone, Copy, Debug)]
enum Policy {
    /// The `default` preset: root in the sandbox, network mode none, /usr and /etc read-only.
    Default,
    /// The default preset with a non-root user (uid 1000 in the sandbox).
    NonRoot,
    /// The default preset with /usr/local writable (an operator letting jobs install
    /// system-wide): the one way a write below a system directory can succeed.
    WritableUsrLocal,
    /// The default preset with a 128 MiB memory limit.
    SmallMemory,
}

impl Policy {
    /// The `--policy` argument, writing a policy file in `dir` when the policy needs one.
    fn arg(self, dir: &Path) -> String {
        let yaml = match self {
            Policy::Default => return "default".into(),
            Policy::NonRoot => "extends: default\nuser: 1000\n",
            Policy::WritableUsrLocal => {
                "extends: default\nfilesystem:\n  writable_paths: [/workspace, /tmp, /usr/local]\n"
            }
            Policy::SmallMemory => "extends: default\nmemory: { limit: 128M, reservation: 64M }\n",
        };
        policy_file(dir, "policy.yaml", yaml)
            .to_string_lossy()
            .into_owned()
    }

    /// The host uid the job runs as (the workspace's files are handed to it).
    fn host_uid(self) -> u32 {
        match self {
            Policy::NonRoot => MAPPED_ROOT + 1000,
            _ => MAPPED_ROOT,
        }
    }
}

/// One run of `sw-rule-job`.
struct Job {
    /// Names the sandbox (with the test's pid) and the failure messages.
    name: &'static str,
    policy: Policy,
    args: Vec<String>,
    /// `run` options beyond the usual ones.
    extra: Vec<String>,
}

fn job(name: &'static str, policy: Policy, args: &[&str]) -> Job {
    Job {
        name,
        policy,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        extra: Vec::new(),
    }
}

/// What a run left: its exit status, output, the alerts it wrote, and its audit log.
struct Outcome {
    name: &'static str,
    id: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    alerts: Vec<Value>,
    elapsed: Duration,
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "job {} (sandbox {}): exit {:?} after {:.2?}\n--- job output ---\n{}--- sandwatch stderr ---\n{}--- alerts ---\n{}",
            self.name,
            self.id,
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr,
            self.alerts
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// The alerts of rule `rule`.
    fn alerts_of(&self, rule: &str) -> Vec<&Value> {
        self.alerts
            .iter()
            .filter(|a| a["rule"].as_str() == Some(rule))
            .collect()
    }
}

/// A private key, a certificate and a home's dotfiles, as a user's checkout or home mounted into
/// a job would hold them.
fn write_fixtures(ws: &Path) {
    fs::create_dir_all(ws.join(".ssh")).unwrap();
    fs::create_dir_all(ws.join("certs")).unwrap();
    let files: &[(&str, &str)] = &[
        (
            ".ssh/id_rsa",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        ),
        (".ssh/id_rsa.pub", "ssh-rsa AAAAB3NzaC1yc2E agent@sandbox\n"),
        (
            ".ssh/known_hosts",
            "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
        ),
        (
            "certs/server.key",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
        ),
        (
            "certs/server.crt",
            "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkq\n-----END CERTIFICATE-----\n",
        ),
        (".bashrc", "# ~/.bashrc\nalias ll='ls -l'\n"),
        (".profile", "# ~/.profile\nexport EDITOR=vi\n"),
    ];
    for (path, text) in files {
        fs::write(ws.join(path), text).unwrap();
    }
}

/// Hands every file under `dir` to `uid` (the runner hands over only the workspace's top).
fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).unwrap();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            chown_tree(&p, uid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
}

/// Runs `job` in a fresh sandbox with the built-in rules, to its end.
fn run(job: &Job) -> Outcome {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The sandbox's init (an unprivileged host uid) must reach the workspace.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ws = dir.path().join("workspace");
    fs::create_dir(&ws).unwrap();
    fs::copy(rule_job_bin(), ws.join("sw-rule-job")).unwrap();
    fs::set_permissions(ws.join("sw-rule-job"), fs::Permissions::from_mode(0o755)).unwrap();
    write_fixtures(&ws);
    chown_tree(&ws, job.policy.host_uid());
    let data = dir.path().join("data");
    let alerts = dir.path().join("alerts.jsonl");
    let id = unique_id(job.name);
    let policy = job.policy.arg(dir.path());
    let mut args: Vec<String> = [
        "run",
        "--policy",
        &policy,
        "--workspace",
        ws.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        "--alerts",
        alerts.to_str().unwrap(),
        "--timeout",
        "60s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(job.extra.iter().cloned());
    args.push("--".into());
    args.push(RULE_JOB.into());
    args.extend(job.args.iter().cloned());
    let started = Instant::now();
    let out = Command::new(sandwatch_bin())
        .args(&args)
        .output()
        .expect("running sandwatch");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let alerts = match fs::read_to_string(&alerts) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("alerts file line {l:?} is not JSON: {e}"))
            })
            .collect(),
        // No alert, no file: `run` may create it only for the first alert.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {}: {e}", alerts.display()),
    };
    eprintln!(
        "job {} ({:?} {:?}): exit {:?} after {:.2?}, alerts: {:?}",
        job.name,
        job.policy,
        job.args,
        out.status.code(),
        elapsed,
        alerts
            .iter()
            .map(|a: &Value| a["rule"].as_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
    );
    let outcome = Outcome {
        name: job.name,
        id,
        code: out.status.code(),
        stdout,
        stderr,
        alerts,
        elapsed,
        _dir: dir,
        data,
    };
    // The run's summary counts what the alerts file holds.
    let summary = match outcome.alerts.len() {
        0 => "sandwatch: no alerts".to_owned(),
        n => format!("sandwatch: {n} alert"),
    };
    assert!(
        outcome.stderr.contains(&summary),
        "the summary does not say {summary:?}\n{}",
        outcome.describe()
    );
    for a in &outcome.alerts {
        for key in [
            "time",
            "rule",
            "priority",
            "tags",
            "sandbox_id",
            "output",
            "actions",
        ] {
            assert!(
                !a[key].is_null(),
                "alert without {key}: {a}\n{}",
                outcome.describe()
            );
        }
    }
    outcome
}

/// Runs jobs side by side (each is mostly waiting on the kernel and the runner).
fn run_all(jobs: &[Job]) -> Vec<Outcome> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || run(j))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// How a malicious job must end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It ran to its end (exit 0): every step was attempted.
    Completes,
    /// A `kill` rule ended it: 137, well before it would have ended on its own (it sleeps 10 s
    /// after its attack).
    Killed,
}

/// `rule` fires on `malicious` (for its sandbox) and nothing fires on any of `benign`.
/// Returns the malicious run for further checks.
fn rule_case(rule: &str, ending: Ending, malicious: Job, benign: Vec<Job>) -> Outcome {
    require_root();
    let mut jobs = vec![malicious];
    jobs.extend(benign);
    let mut outcomes = run_all(&jobs).into_iter();
    let bad = outcomes.next().unwrap();
    let mut failures = Vec::new();
    match ending {
        Ending::Completes if bad.code != Some(0) => failures.push(format!(
            "the malicious job did not run to its end (exit {:?}, expected 0)",
            bad.code
        )),
        Ending::Killed if bad.code != Some(137) => failures.push(format!(
            "the kill rule did not end the malicious job (exit {:?}, expected 137)",
            bad.code
        )),
        Ending::Killed if bad.elapsed >= Duration::from_secs(8) => failures.push(format!(
            "the job was killed only after {:.1?}: it sleeps 10 s after its attack",
            bad.elapsed
        )),
        _ => {}
    }
    if ending == Ending::Killed {
        let sandboxes = read_table(&bad.data, "sandboxes");
        let killed = sandboxes.filter(|r| {
            get(r, "sandbox_id") == Some(bad.id.as_str())
                && get(r, "event") == Some("killed")
                && get(r, "reason") == Some("rule")
        });
        if killed.is_empty() {
            failures.push("the sandboxes table has no `killed` row with reason `rule`".into());
        }
    }
    let fired = bad.alerts_of(rule);
    if fired.is_empty() {
        failures.push(format!("rule {rule:?} did not fire on the malicious job"));
    }
    for a in &fired {
        if a["sandbox_id"].as_str() != Some(bad.id.as_str()) {
            failures.push(format!(
                "alert for sandbox {} instead of {}: {a}",
                a["sandbox_id"], bad.id
            ));
        }
        let kills = a["actions"].as_array().is_some_and(|acts| {
            acts.iter()
                .any(|x| x.as_str() == Some("kill") || x["action"].as_str() == Some("kill"))
        });
        if (ending == Ending::Killed) != kills {
            failures.push(format!(
                "actions of the alert {} the kill: {a}",
                if kills { "include" } else { "lack" }
            ));
        }
    }
    let mut report = String::new();
    if !failures.is_empty() {
        report.push_str(&format!("{}\n", bad.describe()));
    }
    for good in outcomes {
        let mut bad_good = Vec::new();
        if good.code != Some(0) {
            bad_good.push(format!("exit {:?}, expected 0", good.code));
        }
        if !good.alerts.is_empty() {
            bad_good.push(format!(
                "{} alert(s): {}",
                good.alerts.len(),
                good.alerts
                    .iter()
                    .map(|a| a["rule"].as_str().unwrap_or("?").to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !bad_good.is_empty() {
            failures.push(format!("benign job {}: {}", good.name, bad_good.join("; ")));
            report.push_str(&format!("{}\n", good.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "{rule}:\n  {}\n{report}",
        failures.join("\n  ")
    );
    bad
}

/// Every one of `needles` appears in the output of some alert of `rule` in `run`.
fn assert_outputs_name(run: &Outcome, rule: &str, needles: &[&str]) {
    let outputs: Vec<&str> = run
        .alerts_of(rule)
        .iter()
        .filter_map(|a| a["output"].as_str())
        .collect();
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|n| !outputs.iter().any(|o| o.contains(*n)))
        .collect();
    assert!(
        missing.is_empty(),
        "{rule}: no alert output names {missing:?}\n{}",
        run.describe()
    );
}

use Policy::*;

// ---------------------------------------------------------------------------------------------
// Credentials

#[test]
fn password_or_sudoers_read() {
    let r = rule_case(
        "Sandbox read of password or sudoers file",
        Ending::Completes,
        job("shadow", Default, &["read-shadow"]),
        vec![job("passwd", Default, &["read-passwd"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox read of password or sudoers file",
        &["/etc/shadow", "/etc/gshadow", "/etc/sudoers"],
    );
}

#[test]
fn private_key_read() {
    let r = rule_case(
        "Sandbox read of private key",
        Ending::Completes,
        job("privkey", Default, &["read-private-key"]),
        vec![job("pubkey", Default, &["read-public-keys"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox read of private key",
        &["/workspace/.ssh/id_rsa", "/workspace/certs/server.key"],
    );
}

// ---------------------------------------------------------------------------------------------
// Filesystem tampering

#[test]
fn write_below_system_directory() {
    let r = rule_case(
        "Sandbox write below system directory",
        Ending::Completes,
        job("usrwrite", WritableUsrLocal, &["write-system-dir"]),
        vec![job("usrprobe", Default, &["write-refused-then-workspace"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox write below system directory",
        &["/usr/local/bin/python3"],
    );
}

#[test]
fn shell_startup_file_modified() {
    rule_case(
        "Sandbox shell start-up file modified",
        Ending::Completes,
        job("bashrc", Default, &["shell-startup"]),
        vec![job("bashrc-read", Default, &["shell-startup-read"])],
    );
}

#[test]
fn shell_history_tampered() {
    rule_case(
        "Sandbox shell history tampered",
        Ending::Completes,
        job("history", Default, &["history-tamper"]),
        vec![job("history-add", Default, &["history-append"])],
    );
}

#[test]
fn setuid_or_setgid_bit_set() {
    let r = rule_case(
        "Sandbox setuid or setgid bit set",
        Ending::Completes,
        job("suid", Default, &["setid-bit"]),
        vec![job("chmodx", Default, &["chmod-exec"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox setuid or setgid bit set",
        &["/workspace/.rootsh", "/workspace/.groupsh"],
    );
}

// ---------------------------------------------------------------------------------------------
// Execution

#[test]
fn program_run_from_dev_shm() {
    rule_case(
        "Sandbox program run from /dev/shm",
        Ending::Completes,
        job("devshm", Default, &["exec-dev-shm"]),
        vec![job("exec-ok", Default, &["exec-benign"])],
    );
}

#[test]
fn program_run_from_tmp() {
    rule_case(
        "Sandbox program run from /tmp",
        Ending::Completes,
        job("tmpexec", Default, &["exec-tmp"]),
        vec![job("exec-ok2", Default, &["exec-benign"])],
    );
}

// ---------------------------------------------------------------------------------------------
// Reverse shells

#[test]
fn shell_connected_out() {
    rule_case(
        "Sandbox shell connected out",
        Ending::Completes,
        job("shellout", Default, &["shell-connect-out"]),
        vec![job("shellwait", Default, &["shell-connect-loopback"])],
    );
}

#[test]
fn network_tool_runs_a_program() {
    rule_case(
        "Sandbox network tool runs a program",
        Ending::Completes,
        job("ncat-e", Default, &["ncat-exec"]),
        vec![job("ncat", Default, &["ncat-client"])],
    );
}

#[test]
fn shell_spawned_by_network_tool() {
    rule_case(
        "Sandbox shell spawned by network tool",
        Ending::Completes,
        job("ncat-sh", Default, &["ncat-exec"]),
        vec![job("ncat2", Default, &["ncat-client"])],
    );
}

#[test]
fn reverse_shell_one_liner() {
    let r = rule_case(
        "Sandbox reverse shell one-liner",
        Ending::Completes,
        job("oneliner", Default, &["reverse-shell-oneliner"]),
        vec![job("pysock", Default, &["python-socket-client"])],
    );
    // Both the python and the bash one-liner.
    assert_outputs_name(
        &r,
        "Sandbox reverse shell one-liner",
        &["dup2", "/dev/tcp/127.0.0.1/"],
    );
}

// ---------------------------------------------------------------------------------------------
// Crypto mining

#[test]
fn crypto_miner_started() {
    rule_case(
        "Sandbox crypto miner started",
        Ending::Completes,
        job("xmrig", Default, &["miner"]),
        vec![job("cpu", Default, &["cpu-and-local-3333"])],
    );
}

#[test]
fn connection_to_mining_pool_port() {
    let r = rule_case(
        "Sandbox connection to mining pool port",
        Ending::Completes,
        job("pool", Default, &["pool-connect"]),
        vec![job("cpu2", Default, &["cpu-and-local-3333"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox connection to mining pool port",
        &["198.51.100.7:3333", "198.51.100.7:4444"],
    );
}

// ---------------------------------------------------------------------------------------------
// Kernel and isolation boundary

#[test]
fn kernel_module_or_kexec_load() {
    // The probes attach to each syscall's own tracepoints; a kernel built without module (or
    // kexec) support has none for these calls, and no such calls either.
    let calls = ["init_module", "finit_module", "kexec_load"];
    let untraced: Vec<&str> = calls
        .into_iter()
        .filter(|s| {
            !["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .any(|t| Path::new(&format!("{t}/events/syscalls/sys_exit_{s}")).exists())
        })
        .collect();
    if untraced.is_empty() {
        rule_case(
            "Sandbox kernel module or kexec load",
            Ending::Killed,
            job("kmod", Default, &["kernel-module"]),
            vec![job("lsmod", Default, &["kernel-info"])],
        );
        return;
    }
    // This kernel (the test machines' included) cannot show these calls to any probe. What must
    // hold then: the sandbox refuses every attempt (seccomp, EPERM), sandwatch says at start
    // that it cannot record them, and nothing else fires or kills.
    require_root();
    eprintln!(
        "kernel_module_or_kexec_load: no tracepoints for {untraced:?} on this kernel: checking \
         that the attempts are refused and that sandwatch says it cannot record them"
    );
    let mut outcomes = run_all(&[job("kmod", Default, &["kernel-module"])]).into_iter();
    let bad = outcomes.next().unwrap();
    assert_eq!(bad.code, Some(0), "the job ran to its end: {}", bad.stderr);
    for call in calls {
        let line = bad
            .stdout
            .lines()
            .find(|l| l.contains(&format!("\"step\": \"{call}\"")))
            .unwrap_or_else(|| panic!("the job attempted {call}: {}", bad.stdout));
        assert!(
            line.contains("\"ok\": false") && line.contains("\"errno\": 1,"),
            "{call} was refused with EPERM: {line}"
        );
    }
    let warning = bad
        .stderr
        .lines()
        .find(|l| l.contains("this kernel has no tracepoint for"))
        .unwrap_or_else(|| panic!("sandwatch warns about unrecorded syscalls: {}", bad.stderr));
    for call in &untraced {
        assert!(warning.contains(call), "{call} is named: {warning}");
    }
    assert!(bad.alerts.is_empty(), "{:#?}", bad.alerts);
}

#[test]
fn kernel_hook_file_write() {
    rule_case(
        "Sandbox kernel hook file write",
        Ending::Killed,
        job("corepat", Default, &["kernel-hook-write"]),
        vec![job("sysctl", Default, &["kernel-hook-read"])],
    );
}

/// A path kill rule, decided in the kernel: the job dies as its first open returns (a sandbox
/// has none of these files: the path as given decides), and the alert says so. The kernel's
/// decision on the file an open's descriptor names is `rules_live.rs`'s.
#[test]
fn kernel_memory_access() {
    const RULE: &str = "Sandbox kernel memory access";
    let r = rule_case(
        RULE,
        Ending::Killed,
        job("kcore", Default, &["kernel-memory"]),
        vec![job("meminfo", Default, &["memory-info"])],
    );
    assert_outputs_name(
        &r,
        RULE,
        &["killed in the kernel as openat of /proc/kcore returned"],
    );
    let r = rule_case(
        RULE,
        Ending::Killed,
        job("devmem", Default, &["kernel-memory", "/dev/mem"]),
        vec![],
    );
    assert_outputs_name(
        &r,
        RULE,
        &["killed in the kernel as openat of /dev/mem returned"],
    );
}

#[test]
fn namespace_or_mount_change() {
    let r = rule_case(
        "Sandbox namespace or mount change",
        Ending::Completes,
        job("unshare", Default, &["namespace"]),
        vec![job("mountinfo", Default, &["namespace-read"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox namespace or mount change",
        &[
            "syscall=unshare",
            "syscall=setns",
            "syscall=mount",
            "syscall=chroot",
        ],
    );
}

#[test]
fn kernel_attack_surface_syscall() {
    let r = rule_case(
        "Sandbox kernel attack surface syscall",
        Ending::Completes,
        job("bpf", Default, &["kernel-interface"]),
        vec![job("paranoid", Default, &["kernel-interface-read"])],
    );
    assert_outputs_name(
        &r,
        "Sandbox kernel attack surface syscall",
        &[
            "syscall=bpf",
            "syscall=perf_event_open",
            "syscall=userfaultfd",
            "syscall=add_key",
            "syscall=keyctl",
            "syscall=request_key",
        ],
    );
}

#[test]
fn ptrace_attempt() {
    rule_case(
        "Sandbox ptrace",
        Ending::Completes,
        job("ptrace", Default, &["ptrace"]),
        vec![job("procstat", Default, &["process-inspect"])],
    );
}

#[test]
fn raw_or_packet_socket() {
    rule_case(
        "Sandbox raw or packet socket",
        Ending::Completes,
        job("rawsock", Default, &["raw-socket"]),
        vec![job("sockets", Default, &["ordinary-sockets"])],
    );
}

#[test]
fn listening_socket() {
    rule_case(
        "Sandbox listening socket",
        Ending::Completes,
        job("listen", Default, &["listen-any"]),
        vec![job("listen-lo", Default, &["listen-loopback"])],
    );
}

// ---------------------------------------------------------------------------------------------
// Privilege escalation

#[test]
fn non_root_process_asked_for_root() {
    rule_case(
        "Sandbox non-root process asked for root",
        Ending::Killed,
        job("setuid0", NonRoot, &["setuid-root", "10"]),
        vec![
            job("setuid-self", NonRoot, &["setuid-self"]),
            job("root-setuid0", Default, &["setuid-root", "0"]),
        ],
    );
}

#[test]
fn privilege_tool_run_by_non_root() {
    rule_case(
        "Sandbox privilege tool run by non-root",
        Ending::Completes,
        job("su", NonRoot, &["privilege-tool"]),
        vec![
            job("id", NonRoot, &["identity"]),
            job("root-su", Default, &["privilege-tool"]),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Volumes and rates

#[test]
fn outbound_connection_burst() {
    rule_case(
        "Sandbox outbound connection burst",
        Ending::Completes,
        job(
            "connburst",
            Default,
            &["connect-burst", "150", "198.51.100.7", "443"],
        ),
        vec![
            // A test suite hammering a dev server on the sandbox's loopback.
            job(
                "localburst",
                Default,
                &["connect-burst", "150", "127.0.0.1", "8000"],
            ),
            // A handful of outbound connections (a package download).
            job(
                "fewconn",
                Default,
                &["connect-burst", "20", "198.51.100.7", "443"],
            ),
        ],
    );
}

#[test]
fn fork_storm() {
    rule_case(
        "Sandbox fork storm",
        Ending::Completes,
        // 700 attempts against the default pids limit (512): about 190 refused.
        job("forkstorm", Default, &["fork-bomb", "700"]),
        // A parallel build: make -j2 of 60 C files (about 250 processes in a few seconds).
        vec![job("build", Default, &["build", "60"])],
    );
}

#[test]
fn dns_tunnelling_volume() {
    rule_case(
        "Sandbox DNS tunnelling volume",
        Ending::Completes,
        job("dnstunnel", Default, &["dns-tunnel", "300"]),
        vec![job("dns", Default, &["dns-normal"])],
    );
}

#[test]
fn discovery_burst() {
    rule_case(
        "Sandbox discovery burst",
        Ending::Completes,
        job("discovery", Default, &["discovery"]),
        vec![job("lookaround", Default, &["look-around-once"])],
    );
}

#[test]
fn memory_near_limit() {
    let sampled = |mut j: Job| {
        j.extra = vec!["--metrics-interval".into(), "200ms".into()];
        j
    };
    rule_case(
        "Sandbox memory near limit",
        Ending::Completes,
        sampled(job("memhigh", SmallMemory, &["memory", "120", "1500"])),
        vec![sampled(job(
            "memlow",
            SmallMemory,
            &["memory", "40", "1500"],
        ))],
    );
}

// ---------------------------------------------------------------------------------------------
// Everyday agent work

/// What an agent does all day, as one bash script: python scripts (files, json, csv, sqlite3,
/// tempfile, subprocess), a C program compiled with cc and gcc and run, git init/add/commit/
/// diff/log, grep, sed, awk, sort, uniq, find, wc, diff, tar czf/xzf/cJf.
const EVERYDAY: &str = r#"#!/bin/bash
set -euo pipefail
cd /workspace
mkdir -p proj/src proj/data
cd proj
cat > src/report.py <<'PY'
import csv, json, os, sqlite3, subprocess, sys, tempfile

rows = [{"name": f"item{i}", "value": i * i} for i in range(200)]
with open("data/items.json", "w") as f:
    json.dump(rows, f)
with open("data/items.json") as f:
    loaded = json.load(f)
with open("data/items.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["name", "value"])
    w.writeheader()
    w.writerows(loaded)
db = sqlite3.connect("data/items.db")
db.execute("create table if not exists items (name text primary key, value integer)")
db.executemany("insert or replace into items values (:name, :value)", loaded)
db.commit()
total = db.execute("select sum(value) from items where value > 100").fetchone()[0]
db.close()
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as t:
    t.write("scratch\n")
os.unlink(t.name)
ls = subprocess.run(["ls", "-la", "data"], capture_output=True, text=True, check=True)
ver = subprocess.run([sys.executable, "--version"], capture_output=True, text=True, check=True)
print(json.dumps({"total": total, "files": len(ls.stdout.splitlines()), "python": ver.stdout.strip()}))
PY
python3 src/report.py
python3 -c 'import json; print(json.load(open("data/items.json"))[3])'
cat > src/hello.c <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10, sum = 0;
    for (long i = 0; i < n; i++) sum += i;
    printf("sum=%ld\n", sum);
    return 0;
}
C
cc -O2 -Wall -o hello src/hello.c
./hello 1000
gcc -c -o hello.o src/hello.c && gcc -o hello2 hello.o && ./hello2 5
git init -q .
git config user.email agent@example.com
git config user.name agent
printf 'hello\nhello2\n*.o\n' > .gitignore
git add -A
git commit -qm "first commit"
sed -i 's/sum=/total=/' src/hello.c
git diff --stat
git commit -qam "rename output"
test "$(git log --oneline | wc -l)" = 2
git status --short
grep -rn "sqlite3" src | head -3
sed -n '1,5p' data/items.csv | sort -t, -k2 -n | uniq
awk -F, 'NR > 1 { s += $2 } END { print "sum", s }' data/items.csv
find . -name '*.py' -o -name '*.c' | sort
wc -l src/*.py src/*.c
tar czf /tmp/proj.tgz --exclude=.git .
mkdir -p /tmp/unpacked
tar xzf /tmp/proj.tgz -C /tmp/unpacked
diff -r src /tmp/unpacked/src
tar cJf /workspace/proj.tar.xz src && tar tJf /workspace/proj.tar.xz | wc -l
echo everyday-done
"#;

#[test]
fn everyday_agent_work_raises_nothing() {
    require_root();
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ws = dir.path().join("workspace");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("everyday.sh"), EVERYDAY).unwrap();
    write_fixtures(&ws);
    chown_tree(&ws, MAPPED_ROOT);
    let data = dir.path().join("data");
    let alerts_path = dir.path().join("alerts.jsonl");
    let id = unique_id("everyday");
    let out = sandwatch(&[
        "run",
        "--workspace",
        ws.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        "--alerts",
        alerts_path.to_str().unwrap(),
        "--timeout",
        "120s",
        "--",
        "/bin/bash",
        "/workspace/everyday.sh",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the everyday script failed:\n{stdout}"
    );
    assert!(stdout.contains("everyday-done"), "{stdout}");
    let alerts = fs::read_to_string(&alerts_path).unwrap_or_default();
    assert!(
        alerts.trim().is_empty(),
        "everyday agent work raised alerts:\n{alerts}\n--- job output ---\n{stdout}"
    );
    // The work was recorded (the silence is the rules', not an empty audit log).
    let procs = read_table(&data, "process_events");
    for tool in ["python3", "cc1", "git", "tar", "awk", "sed"] {
        assert!(
            !procs
                .filter(|r| get(r, "event") == Some("execve") && get(r, "comm") == Some(tool))
                .is_empty(),
            "no exec of {tool} recorded"
        );
    }
}
