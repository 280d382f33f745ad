//! Sandboxes through the runner's library and the CLI: one sandbox running several commands,
//! bounded output, exit statuses, the wall-clock limit, kill, freeze and thaw, the resource
//! limits (memory, pids, CPU) as a job meets them, the identity and environment a command gets,
//! and that nothing is left once a sandbox is destroyed, or once its runner was SIGKILLed and
//! its remains cleaned.
//!
//! Each test makes its own sandboxes under unique ids; a `Sandbox` kills and removes itself
//! when dropped (a failed test too), and a `BackgroundRun` does the same for a `sandwatch run`.

mod support;

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sandwatch_runner::{
    CgroupRoot, SandboxPolicy,
    sandbox::{CommandOutcome, CommandRequest, EndReason, Sandbox, SandboxOptions},
};
use support::*;

/// Creates sandbox `unique_id(name)` under the default preset overlaid with `policy_yaml`, with
/// the test job in its workspace.
async fn new_sandbox(name: &str, policy_yaml: &str) -> Fixture {
    sandbox_in(name, policy_yaml, job_workspace()).await
}

/// What a command did: its outcome and its captured stdout and stderr.
struct Ran {
    outcome: CommandOutcome,
    stdout: String,
    stderr: String,
}

async fn run_request(sandbox: &Sandbox, req: &CommandRequest) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox
        .run(req, &mut out, &mut err)
        .await
        .unwrap_or_else(|e| panic!("running {:?}: {e}", req.argv));
    Ran {
        outcome,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

async fn run(sandbox: &Sandbox, argv: &[&str]) -> Ran {
    run_request(sandbox, &request(argv)).await
}

/// Asserts that sandbox `id`, whose init had host pid `init_pid`, left nothing behind: no
/// cgroup in the unified or v1 hierarchies, no runtime directory, no init.
fn assert_gone(id: &str, init_pid: i32) {
    for dir in sandbox_cgroups(id) {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    assert!(
        !runtime_dir(id).exists(),
        "{} is left behind",
        runtime_dir(id).display()
    );
    assert!(!alive(init_pid), "init (host pid {init_pid}) still runs");
}

#[tokio::test]
async fn commands_share_a_sandbox_and_keep_their_own_output_and_status() {
    let Fixture { sandbox, workspace } = new_sandbox("share", "extends: default\n").await;
    let id = sandbox.id().to_owned();
    let init_pid = sandbox.init_pid();
    // While it lives, it has all its cgroups (the default preset limits cpu, memory and pids,
    // which a hybrid host carries in v1 hierarchies) and its runtime directory.
    for dir in sandbox_cgroups(&id) {
        assert!(
            dir.is_dir(),
            "{} exists while the sandbox lives",
            dir.display()
        );
    }
    assert!(runtime_dir(&id).join("lock").exists());
    assert!(alive(init_pid));

    let first = run(
        &sandbox,
        &[
            "sh",
            "-c",
            "echo one; echo err-one >&2; echo shared > /workspace/shared.txt; echo tmp > /tmp/t",
        ],
    )
    .await;
    assert_eq!(
        (first.stdout.as_str(), first.stderr.as_str()),
        ("one\n", "err-one\n")
    );
    assert_eq!(
        (first.outcome.status, first.outcome.reason),
        (0, EndReason::Exited)
    );
    let second = run(
        &sandbox,
        &[
            "sh",
            "-c",
            "cat /workspace/shared.txt /tmp/t; echo err-two >&2; exit 7",
        ],
    )
    .await;
    assert_eq!(
        (second.stdout.as_str(), second.stderr.as_str()),
        ("shared\ntmp\n", "err-two\n"),
        "the second command sees what the first wrote, in the workspace and in /tmp"
    );
    assert_eq!(
        (
            second.outcome.status,
            second.outcome.code,
            second.outcome.reason
        ),
        (7, Some(7), EndReason::Exited)
    );
    assert_eq!(
        fs::read_to_string(workspace.path().join("shared.txt")).unwrap(),
        "shared\n",
        "the workspace is the host directory"
    );

    // Two commands at once: each output goes to its own command.
    let script =
        |tag: &str| format!("for i in $(seq 1 200); do echo {tag}$i; echo {tag}-err$i >&2; done");
    let (a_script, b_script) = (script("a"), script("b"));
    let (a_argv, b_argv) = (["sh", "-c", &a_script], ["sh", "-c", &b_script]);
    let (a, b) = tokio::join!(run(&sandbox, &a_argv), run(&sandbox, &b_argv));
    for (tag, ran) in [("a", &a), ("b", &b)] {
        let want_out: String = (1..=200).map(|i| format!("{tag}{i}\n")).collect();
        let want_err: String = (1..=200).map(|i| format!("{tag}-err{i}\n")).collect();
        assert_eq!(ran.stdout, want_out, "stdout of {tag}");
        assert_eq!(ran.stderr, want_err, "stderr of {tag}");
        assert_eq!(ran.outcome.status, 0);
    }

    // Statuses as a shell reports them.
    let missing = run(&sandbox, &["sw-no-such-command"]).await;
    assert_eq!(missing.outcome.status, 127, "command not found");
    assert!(
        missing
            .outcome
            .start_error
            .as_deref()
            .is_some_and(|e| e.contains("sw-no-such-command")),
        "{:?}",
        missing.outcome.start_error
    );
    let killed = run(&sandbox, &["sh", "-c", "kill -9 $$"]).await;
    assert_eq!(
        (
            killed.outcome.status,
            killed.outcome.signal,
            killed.outcome.reason
        ),
        (128 + 9, Some(libc::SIGKILL), EndReason::Exited),
        "death by SIGKILL is 128+9; the job did it to itself"
    );
    let ok = run(&sandbox, &["true"]).await;
    assert_eq!((ok.outcome.status, ok.outcome.code), (0, Some(0)));
    assert!(!sandbox.has_ended(), "none of this ended the sandbox");

    sandbox.destroy().await.unwrap();
    assert_gone(&id, init_pid);
}

#[tokio::test]
async fn output_beyond_the_limit_is_cut_and_marked_without_blocking_the_command() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("output", "limits: { output_bytes: 1K }\n").await;
    let ran = run(
        &sandbox,
        &[
            "sh",
            "-c",
            "head -c 102400 /dev/zero | tr '\\0' x; printf 0123456789 >&2; echo done > /workspace/done",
        ],
    )
    .await;
    assert_eq!(
        (ran.outcome.status, ran.outcome.reason),
        (0, EndReason::Exited),
        "the command wrote everything and went on: {:?} {}",
        ran.outcome,
        ran.stderr
    );
    assert_eq!(
        ran.stdout,
        "x".repeat(1024),
        "the first 1024 bytes are kept"
    );
    assert_eq!(
        (ran.outcome.stdout.bytes, ran.outcome.stdout.truncated),
        (102_400, true)
    );
    assert_eq!(ran.stderr, "0123456789");
    assert_eq!(
        (ran.outcome.stderr.bytes, ran.outcome.stderr.truncated),
        (10, false)
    );
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_timeout_kills_the_sandbox_at_the_deadline() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("timeout", "extends: default\n").await;
    let id = sandbox.id().to_owned();
    let init_pid = sandbox.init_pid();
    let deadline = Duration::from_millis(300);
    let req = CommandRequest {
        timeout: Some(deadline),
        ..request(&["sleep", "10"])
    };
    let ran = run_request(&sandbox, &req).await;
    let o = &ran.outcome;
    eprintln!("timed out after {:?}", o.duration);
    assert_eq!(
        (o.status, o.reason, o.signal),
        (124, EndReason::Timeout, Some(libc::SIGKILL))
    );
    assert!(
        o.duration >= deadline && o.duration <= deadline + Duration::from_millis(100),
        "ended {:?} after its start: within 100 ms of the {deadline:?} deadline",
        o.duration
    );
    // The limit is the sandbox's: it is over.
    tokio::time::timeout(Duration::from_secs(2), sandbox.ended())
        .await
        .expect("the sandbox ended with its command");
    wait_for("init to die", Duration::from_secs(1), || !alive(init_pid));
    sandbox.destroy().await.unwrap();
    assert_gone(&id, init_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_from_another_task_ends_the_command_by_order() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("kill", "extends: default\n").await;
    let sandbox = Arc::new(sandbox);
    let id = sandbox.id().to_owned();
    let init_pid = sandbox.init_pid();
    let runner = {
        let sandbox = sandbox.clone();
        tokio::spawn(async move { run(&sandbox, &["sleep", "100"]).await })
    };
    let killer = {
        let sandbox = sandbox.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sandbox_runs(&id, "sleep") {
                assert!(Instant::now() < deadline, "sleep never started");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sandbox.kill(EndReason::Order).unwrap();
        })
    };
    killer.await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("the command ended soon after the kill")
        .unwrap();
    assert_eq!(
        (ran.outcome.status, ran.outcome.reason),
        (128 + 9, EndReason::Order)
    );
    assert!(ran.outcome.duration < Duration::from_secs(10));
    let sandbox = Arc::try_unwrap(sandbox).unwrap_or_else(|_| panic!("the tasks are done"));
    sandbox.destroy().await.unwrap();
    assert_gone(&id, init_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_a_command_starts_ends_it_by_order() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("kill-start", "extends: default\n").await;
    let sandbox = Arc::new(sandbox);
    // Frozen, init cannot start the command: the kill lands while the runner waits for it.
    sandbox.freeze(true).unwrap();
    let runner = {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            sandbox
                .run(&request(&["sleep", "100"]), &mut out, &mut err)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !runner.is_finished(),
        "the command cannot start while frozen"
    );
    sandbox.kill(EndReason::Order).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("the run ended soon after the kill")
        .unwrap()
        .expect("a kill is an outcome, not an error");
    assert_eq!(
        (outcome.status, outcome.signal, outcome.reason),
        (128 + 9, Some(libc::SIGKILL), EndReason::Order)
    );
    // Once the sandbox is over, running in it is an error.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokio::time::timeout(Duration::from_secs(2), sandbox.ended())
        .await
        .unwrap();
    assert!(
        sandbox
            .run(&request(&["true"]), &mut out, &mut err)
            .await
            .is_err()
    );
    let sandbox = Arc::try_unwrap(sandbox).unwrap_or_else(|_| panic!("the task is done"));
    sandbox.destroy().await.unwrap();
}

fn read_counter(path: &Path) -> u64 {
    // Written with a rename: always whole, once it exists.
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn freeze_stops_every_process_and_thaw_resumes_them() {
    let Fixture { sandbox, workspace } = new_sandbox("freeze", "extends: default\n").await;
    let counter = workspace.path().join("counter");
    let cmd = sandbox
        .spawn(&request(&[SANDBOXED_JOB, "count", "/workspace/counter"]))
        .await
        .unwrap()
        .expect("the counter starts");
    wait_for("the counter to count", Duration::from_secs(10), || {
        read_counter(&counter) > 3
    });

    sandbox.freeze(true).unwrap();
    let events = sandbox.cgroup().path.join("cgroup.events");
    assert!(
        fs::read_to_string(&events).unwrap().contains("frozen 1"),
        "the cgroup reports frozen"
    );
    let at_freeze = read_counter(&counter);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        read_counter(&counter),
        at_freeze,
        "no progress while frozen (~80 steps at 5 ms otherwise)"
    );

    sandbox.freeze(false).unwrap();
    let thawed = Instant::now();
    wait_for("the counter to resume", Duration::from_secs(5), || {
        read_counter(&counter) >= at_freeze + 10
    });
    eprintln!("resumed 10 steps in {:?} after thaw", thawed.elapsed());

    sandbox.signal(&cmd, libc::SIGKILL).await.unwrap();
    assert_eq!(cmd.wait().await, Some((None, Some(libc::SIGKILL))));
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_memory_bomb_is_oom_killed_at_the_limit_and_the_sandbox_survives() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("memory", "memory: { limit: 64M, reservation: 32M }\n").await;
    // On a hybrid host the limit is the v1 memory controller's.
    if let Some(dir) = sandbox.metrics_source().memory_cgroup {
        assert_eq!(
            fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        );
    }
    let ran = run(&sandbox, &[SANDBOXED_JOB, "alloc", "256"]).await;
    assert_eq!(
        (ran.outcome.status, ran.outcome.signal, ran.outcome.reason),
        (128 + 9, Some(libc::SIGKILL), EndReason::Oom),
        "{:?}\n{}",
        ran.outcome,
        ran.stderr
    );
    // It printed how far it got every 4 MiB: killed near the limit, not before.
    eprintln!(
        "alloc printed: {:?}",
        ran.stdout.lines().collect::<Vec<_>>()
    );
    let reached: u64 = ran
        .stdout
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert!(
        (32..64).contains(&reached),
        "killed after {reached} MiB of a 64 MiB limit"
    );
    assert!(
        !sandbox.has_ended(),
        "the OOM killer took the job, not init"
    );
    let small = run(&sandbox, &[SANDBOXED_JOB, "alloc", "16"]).await;
    assert_eq!(
        (small.outcome.status, small.outcome.reason),
        (0, EndReason::Exited),
        "under the limit it runs, in the same sandbox"
    );
    assert!(small.stdout.ends_with("survived 16 MiB\n"));
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_fork_bomb_stops_at_pids_max_and_the_sandbox_survives() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("pids", "pids: { max: 16 }\n").await;
    let ran = run(&sandbox, &[SANDBOXED_JOB, "forks", "64"]).await;
    assert_eq!(ran.outcome.status, 0, "{:?} {}", ran.outcome, ran.stderr);
    let facts: serde_json::Value = serde_json::from_str(ran.stdout.trim()).unwrap();
    assert_eq!(
        facts["errno"],
        libc::EAGAIN,
        "fork fails with EAGAIN at pids.max"
    );
    // 16 tasks in all: init and the job itself are two of them.
    assert_eq!(
        facts["forked"], 14,
        "forks up to pids.max (16) minus init and the job"
    );
    let after = run(&sandbox, &["echo", "alive"]).await;
    assert_eq!(
        (after.outcome.status, after.stdout.as_str()),
        (0, "alive\n"),
        "the sandbox survives its fork bomb"
    );
    sandbox.destroy().await.unwrap();
}

/// CPU time used so far by every process of the sandbox, from its unified cgroup (cgroup2
/// keeps `cpu.stat` without the cpu controller).
fn cpu_usage(cgroup: &Path) -> Duration {
    let stat = fs::read_to_string(cgroup.join("cpu.stat")).unwrap();
    let usec = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .expect("usage_usec in cpu.stat");
    Duration::from_micros(usec)
}

#[tokio::test]
async fn a_cpu_spinner_gets_its_quota() {
    let Fixture {
        sandbox,
        workspace: _workspace,
    } = new_sandbox("cpu", "cpu: { limit: 0.5, shares: 262144 }\n").await;
    // Two spinning threads would take both cores of this machine: the quota is what holds them.
    // The highest weight keeps a busy host (parallel tests, other builds) from starving them
    // below the quota: what is measured is the cap, not the host's load.
    let cmd = sandbox
        .spawn(&request(&[SANDBOXED_JOB, "spin", "2"]))
        .await
        .unwrap()
        .expect("the spinner starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cgroup = sandbox.cgroup().path.clone();
    let (cpu0, t0) = (cpu_usage(&cgroup), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu1, t1) = (cpu_usage(&cgroup), Instant::now());
    let share = (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64();
    sandbox.signal(&cmd, libc::SIGKILL).await.unwrap();
    assert_eq!(cmd.wait().await, Some((None, Some(libc::SIGKILL))));
    sandbox.destroy().await.unwrap();
    eprintln!("the spinner got {share:.3} cores");
    assert!(
        (0.4..=0.6).contains(&share),
        "a 0.5-core quota: the spinner got {share:.3} cores over 2 s"
    );
}

#[tokio::test]
async fn a_command_gets_the_policys_hostname_environment_and_identity() {
    let policy = "hostname: sw-test-box\n\
                  env: { PATH: /usr/bin:/bin, HOME: /workspace, SW_FROM_POLICY: policy }\n";
    let Fixture { sandbox, workspace } = new_sandbox("identity", policy).await;
    let host = run(&sandbox, &["uname", "-n"]).await;
    assert_eq!(host.stdout, "sw-test-box\n");

    // The environment is the policy's with the request's on top, and nothing else: none of
    // this test process's variables (PATH, HOME, CARGO_*, ...) reach the command.
    let req = CommandRequest {
        env: vec![
            ("SW_FROM_REQUEST".into(), "request".into()),
            ("HOME".into(), "/tmp".into()),
        ],
        ..request(&["/usr/bin/env"])
    };
    let env = run_request(&sandbox, &req).await;
    let mut got: Vec<&str> = env.stdout.lines().collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "HOME=/tmp",
            "PATH=/usr/bin:/bin",
            "SW_FROM_POLICY=policy",
            "SW_FROM_REQUEST=request"
        ],
        "the request overrides the policy's HOME"
    );

    // uid 0 inside; on the host, what it creates belongs to the unprivileged mapped uid.
    let id = run(
        &sandbox,
        &[
            "sh",
            "-c",
            "id -u; id -g; touch /workspace/file; mkdir /workspace/dir",
        ],
    )
    .await;
    assert_eq!(id.stdout, "0\n0\n", "{}", id.stderr);
    for name in ["file", "dir"] {
        let meta = fs::metadata(workspace.path().join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (MAPPED_ROOT, MAPPED_ROOT),
            "{name}"
        );
    }
    sandbox.destroy().await.unwrap();

    // Another uid inside maps to the base plus that uid.
    let Fixture { sandbox, workspace } = new_sandbox("identity-user", "user: 1000\n").await;
    let id = run(&sandbox, &["sh", "-c", "id -u; touch /workspace/file"]).await;
    assert_eq!(id.stdout, "1000\n", "{}", id.stderr);
    let meta = fs::metadata(workspace.path().join("file")).unwrap();
    assert_eq!(meta.uid(), MAPPED_ROOT + 1000);
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_workspace_below_a_directory_the_sandbox_cannot_enter_is_mounted_and_writable() {
    use std::os::unix::fs::PermissionsExt as _;
    require_root();
    // As a checkout in root's 0700 home: the sandbox's unprivileged uid cannot walk there, so
    // the runner (root) hands init the workspace as a mount, not as a path.
    let private = tempfile::tempdir().unwrap();
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let ws = private.path().join("workspace");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("input.txt"), "from the host\n").unwrap();
    fs::set_permissions(ws.join("input.txt"), fs::Permissions::from_mode(0o644)).unwrap();

    let policy = SandboxPolicy::from_yaml("private-ws", "extends: default\n").unwrap();
    let mut opts = SandboxOptions::new(unique_id("private-ws"), policy);
    opts.workspace = Some(ws.clone());
    opts.init_exe = sandwatch_bin();
    let root = CgroupRoot::discover().unwrap();
    let sandbox = Sandbox::create(&root, opts)
        .await
        .unwrap_or_else(|e| panic!("a workspace below a 0700 directory: {e}"));
    let ran = run(
        &sandbox,
        &[
            "sh",
            "-c",
            "cat /workspace/input.txt && echo out > /workspace/out.txt && grep ' /workspace ' /proc/self/mountinfo",
        ],
    )
    .await;
    assert_eq!(ran.outcome.code, Some(0), "{}", ran.stderr);
    let mut lines = ran.stdout.lines();
    assert_eq!(lines.next(), Some("from the host"));
    let mount = lines.next().expect("the workspace's line of mountinfo");
    assert!(
        mount.contains("nosuid") && mount.contains("nodev"),
        "the workspace is nosuid and nodev: {mount}"
    );
    // A peer of a shared host mount would carry the sandbox's mounts back to the host.
    assert!(
        !mount.contains("shared:"),
        "the workspace is private: {mount}"
    );
    assert_eq!(fs::read_to_string(ws.join("out.txt")).unwrap(), "out\n");
    sandbox.destroy().await.unwrap();

    // A read-only path the sandbox's uid cannot reach is refused with the reason, not left out.
    let hidden = private.path().join("reference");
    fs::create_dir(&hidden).unwrap();
    let yaml = format!(
        "extends: default\nfilesystem:\n  read_only_paths: [/usr, /lib, /lib64, /bin, /etc, {}]\n",
        hidden.display()
    );
    let policy = SandboxPolicy::from_yaml("private-ro", &yaml).unwrap();
    let id = unique_id("private-ro");
    let mut opts = SandboxOptions::new(id.clone(), policy);
    opts.workspace = Some(ws.clone());
    opts.init_exe = sandwatch_bin();
    let err = match Sandbox::create(&root, opts).await {
        Ok(_) => panic!("a read-only path below a 0700 directory was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("reach read-only path {}", hidden.display()))
            && err.contains("Permission denied"),
        "the error names the path and the reason: {err}"
    );
    for dir in sandbox_cgroups(&id) {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    assert!(
        !runtime_dir(&id).exists(),
        "the runtime directory is left behind"
    );
}

#[test]
fn sandwatch_run_passes_no_host_environment() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(sandwatch_bin())
        .args(["run", "--data", dir.path().join("data").to_str().unwrap()])
        .args(["--", "/usr/bin/env"])
        .env("SW_HOST_SECRET", "must-not-leak")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    got.sort_unstable();
    // The default preset's environment, and only that.
    assert_eq!(
        got,
        [
            "HOME=/workspace",
            "LANG=C.UTF-8",
            "PATH=/usr/local/bin:/usr/bin:/bin"
        ]
    );
}

#[test]
fn a_sandbox_whose_runner_was_killed_dies_and_is_cleaned_up() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let id = unique_id("stale");
    // A runtime directory of its own: no parallel test's `sandwatch run` cleans this sandbox
    // before the test looks at what its dead runner left.
    let runtime = dir.path().join("runtime");
    let mut run = BackgroundRun::start(
        &id,
        &dir.path().join("data"),
        Some(&runtime),
        &[],
        &["sleep", "100"],
    );
    let pids = sandbox_pids(&id);
    assert!(runtime.join(&id).join("lock").exists());
    assert!(pids.len() >= 2, "init and sleep: {pids:?}");

    // SIGKILL: the runner gets no chance to clean anything.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    // Init sees its control socket close and exits; the kernel kills the rest of its pid
    // namespace.
    let killed = Instant::now();
    wait_for(
        "the sandbox's processes to die with their runner",
        Duration::from_secs(2),
        || sandbox_pids(&id).is_empty() && pids.iter().all(|&p| !alive(p)),
    );
    eprintln!("the sandbox died {:?} after its runner", killed.elapsed());
    // What a dead runner cannot remove is still there...
    assert!(runtime.join(&id).join("lock").exists());
    for d in sandbox_cgroups(&id) {
        assert!(d.is_dir(), "{} is there until cleaned", d.display());
    }
    // ...until the next runner cleans it: the lock is free, so the sandbox is stale.
    let root = CgroupRoot::discover().unwrap();
    let cleaned: Vec<String> = sandwatch_runner::sandbox::clean_stale(&root, &runtime)
        .into_iter()
        .map(|stale| stale.id)
        .collect();
    assert_eq!(cleaned, std::slice::from_ref(&id));
    for d in sandbox_cgroups(&id) {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    assert!(!runtime.join(&id).exists());
}

#[test]
fn sandwatch_kill_freeze_and_thaw_act_on_a_running_sandbox() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let id = unique_id("cli-kill");
    let workspace = job_workspace();
    let counter = workspace.path().join("counter");
    let mut run = BackgroundRun::start(
        &id,
        &dir.path().join("data"),
        None,
        &["--workspace", workspace.path().to_str().unwrap()],
        &[SANDBOXED_JOB, "count", "/workspace/counter"],
    );
    let freeze_file = unified_root()
        .join("sandwatch")
        .join(&id)
        .join("cgroup.freeze");

    assert_eq!(sandwatch(&["freeze", &id]).status.code(), Some(0));
    assert_eq!(fs::read_to_string(&freeze_file).unwrap().trim(), "1");
    wait_for("the sandbox to be frozen", Duration::from_secs(5), || {
        fs::read_to_string(freeze_file.with_file_name("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
    });
    let at_freeze = read_counter(&counter);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_counter(&counter), at_freeze, "frozen");
    assert_eq!(sandwatch(&["thaw", &id]).status.code(), Some(0));
    wait_for("the counter to resume", Duration::from_secs(5), || {
        read_counter(&counter) > at_freeze
    });

    let kill = sandwatch(&["kill", &id]);
    assert_eq!(kill.status.code(), Some(0));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sandwatch run did not end after sandwatch kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    use std::io::Read as _;
    run.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");
    assert!(
        stderr.contains("was killed by order (status 137)"),
        "{stderr}"
    );
    // The run destroyed its sandbox on the way out.
    for d in sandbox_cgroups(&id) {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    assert!(!runtime_dir(&id).exists());

    let unknown = sandwatch(&["kill", &unique_id("no-such-sandbox")]);
    assert_eq!(unknown.status.code(), Some(2), "no such sandbox: bad input");
}
