//! `cargo xtask`: the commands the README names.
//!
//! - `setup`: installs what building and testing need, idempotently (nightly `rust-src`,
//!   `bpf-linker` against the nightly's own LLVM, the Python readers the tests use, the
//!   Alertmanager the hooks tests deliver to, E2B's Python SDK that judges `sandwatch serve`).
//! - `test`: unit tests of every default crate, then the root-only integration tests that load
//!   the real probes into this kernel.
//! - `bench probes`: the probe overhead and throughput benchmarks of the README.
//! - `bench sandbox`: a sandbox's create + run + destroy and 20 at once, against bubblewrap.
//! - `bench rules`: the rule engine's throughput on one core and detection-to-kill latency.
//! - `gen-audit`: a realistic synthetic audit log of N events, through the Parquet sink.
//! - `bench sql`: five investigations over a generated log, sandwatch's SQL against DuckDB.
//! - `eval baseline`: learned baselines against held-out benign and anomalous runs of the
//!   corpus in tests/corpus (precision, recall, false-positive rate).
//! - `demo`: benign and malicious agent jobs in sandboxes, their alerts and kills, and a summary
//!   table read back from the audit log (the README's first command).

mod bench;
mod bench_rules;
mod bench_sandbox;
mod bench_sql;
mod demo;
mod eval_baseline;

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain and test dependencies (idempotent).
    Setup,
    /// Run every test: unit tests, then the integration tests (root, real kernel).
    Test {
        /// Extra arguments for the integration test binary (e.g. a test name filter).
        #[arg(last = true)]
        filter: Vec<String>,
    },
    /// Run benign and malicious agent jobs in sandboxes with the built-in rules; show the
    /// alerts, the kills and a summary table from the audit log.
    Demo(demo::DemoArgs),
    /// Evaluate detection on the corpus (`eval baseline`).
    Eval {
        #[command(subcommand)]
        what: eval_baseline::Eval,
    },
    /// Write a realistic synthetic audit log of N events through the Parquet sink.
    GenAudit(bench_sql::GenAuditArgs),
    /// Run a benchmark suite and print its table.
    Bench {
        #[command(subcommand)]
        suite: bench::Suite,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Setup => setup(),
        Cmd::Test { filter } => test(&filter),
        Cmd::Demo(args) => demo::run(args),
        Cmd::GenAudit(args) => bench_sql::gen_audit(args),
        Cmd::Bench { suite } => bench::run(suite),
        Cmd::Eval { what } => eval_baseline::run(what),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn step(what: &str) {
    eprintln!("xtask setup: {what}");
}

fn setup() -> anyhow::Result<()> {
    let mut failures = Vec::new();

    // 1. The nightly toolchain and its rust-src: the probes build with -Z build-std=core.
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step("installing the nightly toolchain");
        if let Err(e) = run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ])) {
            failures.push(format!("nightly toolchain: {e:#} (the probes need a nightly rustc; install one with rustup)"));
        }
    }
    step("nightly rust-src");
    if let Err(e) =
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
    {
        failures.push(format!("rust-src for nightly: {e:#}"));
    }

    // 2. bpf-linker, linked against the LLVM inside the nightly toolchain: no system LLVM needed.
    if let Err(e) = ensure_bpf_linker() {
        failures.push(format!("bpf-linker: {e:#}"));
    }

    // 3. The independent Parquet readers the integration tests check our files with, the ADBC
    //    Flight SQL driver the Flight SQL server is tested with as a real client, and E2B's own
    //    Python SDK, the judge of `sandwatch serve`'s compatibility (pinned: the tests speak its
    //    wire protocol).
    let have_py = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import pyarrow, duckdb, adbc_driver_flightsql.dbapi, e2b, importlib.metadata as m; v = m.version(\"e2b\"); assert v == {E2B_SDK_VERSION:?}, v"
            ),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if have_py {
        step(&format!(
            "python pyarrow, duckdb, adbc-driver-flightsql and e2b {E2B_SDK_VERSION}: present"
        ));
    } else {
        step(&format!(
            "installing python packages pyarrow, duckdb, adbc-driver-flightsql, e2b=={E2B_SDK_VERSION}"
        ));
        if let Err(e) = run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pyarrow",
            "duckdb",
            "adbc-driver-manager",
            "adbc-driver-flightsql",
            &format!("e2b=={E2B_SDK_VERSION}"),
        ])) {
            failures.push(format!(
                "python packages pyarrow, duckdb, adbc-driver-flightsql, e2b: {e:#}"
            ));
        }
    }

    // 4. A real Alertmanager for the hooks tests (they start their own on 127.0.0.1).
    if let Err(e) = ensure_alertmanager() {
        failures.push(format!("prometheus-alertmanager: {e:#}"));
    }

    if !failures.is_empty() {
        for f in &failures {
            eprintln!("xtask setup: FAILED {f}");
        }
        bail!("setup incomplete: {} step(s) failed", failures.len());
    }
    eprintln!("xtask setup: done; `cargo build` now builds the probes too");
    Ok(())
}

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// The E2B Python SDK the `sandwatch serve` acceptance tests drive (tests/e2b/).
pub const E2B_SDK_VERSION: &str = "2.63.0";

fn ensure_alertmanager() -> anyhow::Result<()> {
    if Path::new(ALERTMANAGER).exists() {
        step("prometheus-alertmanager: present");
        return Ok(());
    }
    step("installing the Debian package prometheus-alertmanager");
    let install = || {
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "prometheus-alertmanager",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        // A fresh machine may not have package lists yet.
        run(Command::new("apt-get").arg("update"))?;
        install()?;
    }
    if !Path::new(ALERTMANAGER).exists() {
        bail!("the package installed, but {ALERTMANAGER} is not there");
    }
    Ok(())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    // `rustup run nightly` puts the nightly's libLLVM on the library path, as the build does.
    if output(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])).is_some()
    {
        step("bpf-linker: present");
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("no nightly rustc")?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.ends_with("-nightly"))
        })
        .with_context(|| format!("no libLLVM.so.*-nightly in {}", lib_dir.display()))?;
    let verbose =
        output(Command::new("rustc").args(["+nightly", "-vV"])).context("rustc +nightly -vV")?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("the nightly rustc does not say its LLVM version")?
        .to_owned();
    let prefix = home().join(".cache/sandwatch/llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    step(&format!(
        "building bpf-linker against the nightly's LLVM {major} (a few minutes)"
    ));
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        // Find the nightly's libLLVM at run time without the rustup proxy too.
        .env(
            "RUSTFLAGS",
            format!("-C link-args=-Wl,-rpath,{}", lib_dir.display()),
        ))
}

fn home() -> PathBuf {
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn test(filter: &[String]) -> anyhow::Result<()> {
    eprintln!("xtask test: unit tests");
    // The default members: everything but the kernel crate and the root-only integration tests.
    run(cargo().arg("test"))?;
    eprintln!("xtask test: integration tests (real kernel, real cgroups, real probes)");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the integration tests load eBPF programs and create cgroups: run `cargo xtask test` as root"
        );
    }
    run(cargo().args(["build", "--bin", "sandwatch"]))?;
    let bin = workspace_root().join("target/debug/sandwatch");
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let bin = target
        .map(|t| t.join("debug/sandwatch"))
        .filter(|p| p.exists())
        .unwrap_or(bin);
    run(cargo()
        .args(["test", "-p", "sandwatch-tests", "--"])
        .args(filter)
        .env("SANDWATCH_BIN", bin))?;
    leftovers_of_tests()
}

/// After every test: no cgroup, sandbox directory, mount or process of the tests' sandboxes
/// (their ids start with `swt-`) may remain.
fn leftovers_of_tests() -> anyhow::Result<()> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/run/sandwatch")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join("sandwatch"));
        }
    }
    dirs.push(PathBuf::from("/sys/fs/cgroup/sandwatch"));
    for dir in dirs {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("swt-") {
                found.push(e.path().display().to_string());
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains("/run/sandwatch"))
            .map(|l| format!("mount: {l}")),
    );
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cmdline.starts_with(b"sandwatch-init") && cgroup.contains("/sandwatch/swt-") {
            found.push(format!("process {}", e.file_name().to_string_lossy()));
        }
    }
    if !found.is_empty() {
        bail!("the tests left these behind:\n  {}", found.join("\n  "));
    }
    eprintln!("xtask test: no cgroup, sandbox directory, mount or process of the tests remains");
    Ok(())
}
