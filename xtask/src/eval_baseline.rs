//! `cargo xtask eval baseline`: how well learned baselines tell a job's normal runs from the same
//! job doing one unusual thing.
//!
//! The corpus is `tests/corpus/`: one shell script per job profile (its sizes and names vary
//! with a seed, as real inputs do) and one script per unusual act (discovery commands, a beacon
//! to a new address and port, a sweep over system files, a dotfile write, a decoded payload run
//! by a shell, a burst of file operations). Every run is a real `sandwatch run` in its own
//! sandbox, with the profile's policy:
//!
//! 1. `--train` runs per profile go to one audit log, and each model kind is trained on it
//!    (`sandwatch baseline train --model KIND`);
//! 2. `--test` held-out benign runs (other seeds) and `--anomaly-runs` runs of each anomalous
//!    variant per profile go to a second log;
//! 3. each held-out sandbox is scored (`sandwatch baseline score --json`) against each model.
//!
//! A sandbox is flagged when it has a new term or an anomalous window. The report gives, per
//! model kind and overall, precision, recall and false-positive rate, with what new terms and
//! windows each caught alone, per profile for the default model, and every false positive and
//! missed anomaly by name. Output: stdout and `target/bench/eval-baseline.md`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{
    bench::target_dir,
    demo::{release_binary, text_table},
};

const MODELS: [&str; 3] = ["pca", "kmeans", "gmm"];
/// The kind `sandwatch baseline train` uses by default (`baseline::DEFAULT_MODEL`).
const DEFAULT_MODEL: &str = "pca";
const TARGET_RECALL: f64 = 0.90;
const TARGET_FPR: f64 = 0.02;

#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// Training runs per profile.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub train: u32,
    /// Held-out benign runs per profile.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub test: u32,
    /// Runs of each anomalous variant per profile.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub anomaly_runs: u32,
    /// Only these profiles (file names in tests/corpus without .sh), comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub profiles: Vec<String>,
    /// Working directory (emptied first) [default: <target>/eval-baseline].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use the release binary already built.
    #[arg(long)]
    pub no_build: bool,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Eval {
    /// Learned baselines against held-out benign runs and anomalous variants of the corpus.
    Baseline(EvalArgs),
}

pub fn run(e: Eval) -> anyhow::Result<()> {
    match e {
        Eval::Baseline(a) => baseline(a),
    }
}

fn progress(msg: &str) {
    eprintln!("xtask eval baseline: {msg}");
}

/// One held-out run.
struct Case {
    profile: String,
    sandbox: String,
    /// `None`: benign; else the anomaly's name.
    anomaly: Option<String>,
}

/// How a model judged one case.
#[derive(Clone, Default)]
struct Verdict {
    by_terms: bool,
    by_window: bool,
    why: String,
}

impl Verdict {
    fn flagged(&self) -> bool {
        self.by_terms || self.by_window
    }
}

fn corpus_dir() -> PathBuf {
    crate::workspace_root().join("tests/corpus")
}

fn scripts(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "sh") {
            let name = p
                .file_stem()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            out.insert(name, fs::read_to_string(&p)?);
        }
    }
    Ok(out)
}

/// Runs `script` with `seed` in a sandbox of `policy`, recording into `data`.
fn run_job(
    bin: &Path,
    data: &Path,
    policy: &Path,
    id: &str,
    seed: u32,
    script: &str,
) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .args([
            "run",
            "--no-rules",
            "--no-baselines",
            "--timeout",
            "60s",
            "--sandbox-id",
            id,
        ])
        .arg("--data")
        .arg(data)
        .arg("--policy")
        .arg(policy)
        .args(["--", "sh", "-c", &format!("SEED={seed}\n{script}")])
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    // A job's own failure is part of what it does; sandwatch's failure (exit 2) is not.
    if out.status.code() == Some(2) {
        bail!(
            "sandwatch run {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn judge(bin: &Path, test: &Path, models: &Path, case: &Case) -> anyhow::Result<Verdict> {
    let out = Command::new(bin)
        .args([
            "baseline",
            "score",
            "--json",
            "--profile",
            &case.profile,
            "--sandbox",
            &case.sandbox,
        ])
        .arg("--data")
        .arg(test)
        .arg("--models")
        .arg(models)
        .output()?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!(
            "baseline score {}: {}",
            case.sandbox,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("the score's JSON")?;
    let terms: Vec<String> = v["new_terms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} {}",
                t["kind"]["kind"].as_str().unwrap_or("?"),
                t["kind"]["term"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let windows: Vec<String> = v["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["anomalous"].as_bool() == Some(true))
        .map(|w| {
            let top = w["deviations"][0]["feature"].as_str().unwrap_or("?");
            format!(
                "window {:.1} > {:.1} ({top})",
                w["score"].as_f64().unwrap_or(0.0),
                w["threshold"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    Ok(Verdict {
        by_terms: !terms.is_empty(),
        by_window: !windows.is_empty(),
        why: terms
            .into_iter()
            .chain(windows)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fn_: u32,
    fp: u32,
    tn: u32,
}

impl Counts {
    fn add(&mut self, anomalous: bool, flagged: bool) {
        match (anomalous, flagged) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    fn fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
    fn row(&self, name: &str) -> Vec<String> {
        vec![
            name.to_owned(),
            self.tp.to_string(),
            self.fn_.to_string(),
            self.fp.to_string(),
            self.tn.to_string(),
            pct(self.precision()),
            pct(self.recall()),
            pct(self.fpr()),
        ]
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

const HEADERS: [&str; 8] = ["", "TP", "FN", "FP", "TN", "precision", "recall", "FP rate"];
const RIGHT: [bool; 8] = [false, true, true, true, true, true, true, true];

fn baseline(args: EvalArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the evaluation runs real sandboxes: run `cargo xtask eval baseline` as root");
    }
    let started = Instant::now();
    let bin = release_binary(args.no_build, progress)?;
    let mut profiles = scripts(&corpus_dir())?;
    if !args.profiles.is_empty() {
        profiles.retain(|p, _| args.profiles.contains(p));
        if profiles.is_empty() {
            bail!(
                "none of {:?} is in {}",
                args.profiles,
                corpus_dir().display()
            );
        }
    }
    let anomalies = scripts(&corpus_dir().join("anomalies"))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| target_dir().join("eval-baseline"));
    let _ = fs::remove_dir_all(&dir);
    let (train, test) = (dir.join("train"), dir.join("test"));
    fs::create_dir_all(dir.join("policies"))?;
    let total = profiles.len() as u32
        * (args.train + args.test + args.anomaly_runs * anomalies.len() as u32);
    progress(&format!(
        "{} profiles × ({} training + {} benign + {} anomalous) = {total} sandboxes",
        profiles.len(),
        args.train,
        args.test,
        args.anomaly_runs * anomalies.len() as u32
    ));
    let mut cases = Vec::new();
    let mut done = 0;
    for (pi, (profile, script)) in profiles.iter().enumerate() {
        let policy = dir.join("policies").join(format!("{profile}.yaml"));
        fs::write(&policy, format!("extends: default\nprofile: {profile}\n"))?;
        let mut tick = |what: &str| {
            done += 1;
            if done % 20 == 0 || done == total {
                progress(&format!(
                    "{done}/{total} sandboxes ({profile}: {what}, {:.0} s)",
                    started.elapsed().as_secs_f64()
                ));
            }
        };
        for i in 0..args.train {
            run_job(
                &bin,
                &train,
                &policy,
                &format!("evtr-{pi}-{i}"),
                i + 1,
                script,
            )?;
            tick("training");
        }
        for i in 0..args.test {
            let id = format!("evte-{pi}-{i}");
            run_job(&bin, &test, &policy, &id, 1000 + i, script)?;
            cases.push(Case {
                profile: profile.clone(),
                sandbox: id,
                anomaly: None,
            });
            tick("benign");
        }
        for (ai, (name, act)) in anomalies.iter().enumerate() {
            for r in 0..args.anomaly_runs {
                let id = format!("evan-{pi}-{ai}-{r}");
                run_job(
                    &bin,
                    &test,
                    &policy,
                    &id,
                    2000 + r,
                    &format!("{script}\n{act}"),
                )?;
                cases.push(Case {
                    profile: profile.clone(),
                    sandbox: id,
                    anomaly: Some(name.clone()),
                });
                tick(name);
            }
        }
    }
    let run_secs = started.elapsed().as_secs_f64();

    // Train and score every model kind.
    let mut verdicts: BTreeMap<&str, Vec<Verdict>> = BTreeMap::new();
    for kind in MODELS {
        let models = dir.join("models").join(kind);
        progress(&format!("training and scoring {kind}"));
        for profile in profiles.keys() {
            let out = Command::new(&bin)
                .args(["baseline", "train", "--profile", profile, "--model", kind])
                .arg("--data")
                .arg(&train)
                .arg("--models")
                .arg(&models)
                .output()?;
            if !out.status.success() {
                bail!(
                    "baseline train {profile} --model {kind}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let v = cases
            .iter()
            .map(|c| judge(&bin, &test, &models, c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        verdicts.insert(kind, v);
    }

    let report = report(
        &args, &profiles, &anomalies, &cases, &verdicts, run_secs, started,
    );
    print!("{report}");
    let out = target_dir().join("bench/eval-baseline.md");
    fs::create_dir_all(out.parent().expect("a parent"))?;
    fs::write(&out, &report)?;
    eprintln!("xtask eval baseline: written to {}", out.display());
    Ok(())
}

fn report(
    args: &EvalArgs,
    profiles: &BTreeMap<String, String>,
    anomalies: &BTreeMap<String, String>,
    cases: &[Case],
    verdicts: &BTreeMap<&str, Vec<Verdict>>,
    run_secs: f64,
    started: Instant,
) -> String {
    let mut r = String::new();
    let benign = cases.iter().filter(|c| c.anomaly.is_none()).count();
    let _ = writeln!(
        r,
        "# Baseline evaluation\n\n{} profiles ({}), trained on {} runs each; held out: {} benign runs and {} anomalous runs ({} acts × {} runs per profile: {}). Sandboxes run in {:.0} s; total {:.0} s.\n",
        profiles.len(),
        profiles.keys().cloned().collect::<Vec<_>>().join(", "),
        args.train,
        benign,
        cases.len() - benign,
        anomalies.len(),
        args.anomaly_runs,
        anomalies.keys().cloned().collect::<Vec<_>>().join(", "),
        run_secs,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        r,
        "## Overall, per model (flagged: a new term or an anomalous window)\n"
    );
    let mut rows = Vec::new();
    let mut terms_only = Counts::default();
    for (i, c) in cases.iter().enumerate() {
        terms_only.add(c.anomaly.is_some(), verdicts[DEFAULT_MODEL][i].by_terms);
    }
    rows.push(terms_only.row("new terms alone"));
    for kind in MODELS {
        let (mut both, mut window) = (Counts::default(), Counts::default());
        for (i, c) in cases.iter().enumerate() {
            let v = &verdicts[kind][i];
            both.add(c.anomaly.is_some(), v.flagged());
            window.add(c.anomaly.is_some(), v.by_window);
        }
        rows.push(window.row(&format!("{kind} windows alone")));
        rows.push(both.row(&format!("new terms + {kind}")));
    }
    let _ = writeln!(r, "```\n{}```\n", text_table(&HEADERS, &rows, &RIGHT));

    let v = &verdicts[DEFAULT_MODEL];
    let mut overall = Counts::default();
    let mut per_profile: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut per_act: BTreeMap<&str, Counts> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        overall.add(c.anomaly.is_some(), v[i].flagged());
        per_profile
            .entry(&c.profile)
            .or_default()
            .add(c.anomaly.is_some(), v[i].flagged());
        if let Some(a) = &c.anomaly {
            per_act.entry(a).or_default().add(true, v[i].flagged());
        }
    }
    let _ = writeln!(
        r,
        "## Per profile, new terms + {DEFAULT_MODEL} (the default)\n"
    );
    let mut rows: Vec<Vec<String>> = per_profile.iter().map(|(p, c)| c.row(p)).collect();
    rows.push(overall.row("all"));
    let _ = writeln!(r, "```\n{}```\n", text_table(&HEADERS, &rows, &RIGHT));
    let _ = writeln!(
        r,
        "Recall per unusual act (all profiles): {}\n",
        per_act
            .iter()
            .map(|(a, c)| format!("{a} {}", pct(c.recall())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        r,
        "Target: recall ≥ {} with ≤ {} false positives: recall {} ({}), FP rate {} ({}).\n",
        pct(TARGET_RECALL),
        pct(TARGET_FPR),
        pct(overall.recall()),
        if overall.recall() >= TARGET_RECALL {
            "met"
        } else {
            "missed"
        },
        pct(overall.fpr()),
        if overall.fpr() <= TARGET_FPR {
            "met"
        } else {
            "missed"
        },
    );
    let _ = writeln!(r, "## False positives and misses ({DEFAULT_MODEL})\n");
    let mut any = false;
    for (i, c) in cases.iter().enumerate() {
        match (&c.anomaly, v[i].flagged()) {
            (None, true) => {
                any = true;
                let _ = writeln!(
                    r,
                    "- false positive: {} {}: {}",
                    c.profile, c.sandbox, v[i].why
                );
            }
            (Some(a), false) => {
                any = true;
                let _ = writeln!(r, "- missed: {} + {a} ({})", c.profile, c.sandbox);
            }
            _ => {}
        }
    }
    if !any {
        let _ = writeln!(r, "none");
    }
    r
}
