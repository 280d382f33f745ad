//! Rule-engine throughput over a recorded audit log: the measuring half of `cargo xtask bench
//! rules`, which records the log, runs this binary pinned to one core and renders its JSON.
//!
//! ```text
//! engine --data DIR [--falco DIR] [--rounds N] [--batch-rows N] [--per-rule] [--only NAME]
//!        [--matches FILE]
//! ```
//!
//! The log's batches are read back as `sandwatch rules test` replays them (every table the rules
//! read, `--batch-rows` rows per batch, in time order) and kept in memory. Then, for every round,
//! every configuration evaluates all the batches once, each with a fresh engine built outside
//! the timed part (the process tree and the threshold windows fill up during the pass, as live):
//!
//! - `scan`: no engine; every row's `event` value is read and hashed. The floor of any engine
//!   that looks at every row: it gives the engine's figures a ratio.
//! - `engine, 0 rules`: the engine with no rule: its fixed cost per batch (the process tree
//!   learnt from `process_events`; with no rule, no column is read).
//! - `default`: the built-in ruleset.
//! - `default + falco`: the built-in ruleset and every evaluable rule of Falco's three public
//!   rulesets (`--falco DIR`), the ones Falco ships disabled switched on too.
//!
//! The order of the configurations rotates every round so that a noisy host's drift spreads
//! over all of them. `--per-rule` then times each rule of the largest configuration alone (an
//! engine holding just that rule, minus the 0-rule engine's time): where the time goes.
//! `--only NAME` loops one configuration for `--rounds` rounds and prints nothing but timings
//! (for `perf record` or `valgrind --tool=callgrind`); with `--matches FILE` it also writes every
//! match of its first round to FILE, one line each (table, row, rule, output): the same file from
//! two builds says that a change to the engine left its answers alone.
//!
//! The last line of stdout is `SW_RULES_BENCH_JSON {...}`.

use std::{
    collections::BTreeMap,
    fs,
    hash::{BuildHasher as _, Hasher as _},
    hint::black_box,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray, cast::AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandwatch_rules::{Engine, RuleSet, Status, ruleset::Loader};
use sandwatch_schema::Table;
use serde_json::json;

/// Tables the rules read, in the order they go first on equal times (as `rules test`).
const REPLAYED: [Table; 6] = [
    Table::Sandboxes,
    Table::ProcessEvents,
    Table::FileEvents,
    Table::NetworkEvents,
    Table::SyscallEvents,
    Table::SandboxMetrics,
];
/// The tables whose rows count as events (one row = one syscall or exit).
const EVENT_TABLES: [Table; 4] = [
    Table::ProcessEvents,
    Table::FileEvents,
    Table::NetworkEvents,
    Table::SyscallEvents,
];
const FALCO_FILES: [&str; 3] = [
    "falco_rules.yaml",
    "falco-incubating_rules.yaml",
    "falco-sandbox_rules.yaml",
];

struct Options {
    data: PathBuf,
    falco: Option<PathBuf>,
    rounds: usize,
    batch_rows: usize,
    per_rule: bool,
    only: Option<String>,
    matches: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        data: PathBuf::new(),
        falco: None,
        rounds: 7,
        batch_rows: 1024,
        per_rule: false,
        only: None,
        matches: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--data" => o.data = value("--data")?.into(),
            "--falco" => o.falco = Some(value("--falco")?.into()),
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?
            }
            "--batch-rows" => {
                o.batch_rows = value("--batch-rows")?
                    .parse()
                    .map_err(|e| format!("--batch-rows: {e}"))?
            }
            "--per-rule" => o.per_rule = true,
            "--only" => o.only = Some(value("--only")?),
            "--matches" => o.matches = Some(value("--matches")?.into()),
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.data.as_os_str().is_empty() {
        return Err("--data DIR is required (an audit log written by `sandwatch run`)".into());
    }
    if o.matches.is_some() && o.only.is_none() {
        return Err("--matches goes with --only".into());
    }
    if o.rounds == 0 || o.batch_rows == 0 {
        return Err("--rounds and --batch-rows must be at least 1".into());
    }
    Ok(o)
}

/// Every Parquet file of `table` under `data`, in path order (date, hour, sequence).
fn table_files(data: &Path, table: Table) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![data.join(table.name())];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        for e in entries {
            let p = e
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && !hidden {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn first_time(b: &RecordBatch) -> i64 {
    b.column_by_name("time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .filter(|t| !t.is_empty())
        .map_or(i64::MIN, |t| t.value(0))
}

/// The log's batches in replay order.
fn read_batches(data: &Path, batch_rows: usize) -> Result<Vec<(Table, RecordBatch)>, String> {
    let mut batches: Vec<(i64, usize, Table, RecordBatch)> = Vec::new();
    for (order, table) in REPLAYED.into_iter().enumerate() {
        for path in table_files(data, table)? {
            let file = fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(batch_rows).build())
                .map_err(|e| format!("{}: not a readable Parquet file: {e}", path.display()))?;
            for b in reader {
                let b = b.map_err(|e| format!("{}: {e}", path.display()))?;
                batches.push((first_time(&b), order, table, b));
            }
        }
    }
    batches.sort_by_key(|(t, order, _, _)| (*t, *order));
    Ok(batches.into_iter().map(|(_, _, t, b)| (t, b)).collect())
}

/// A named rule set to measure.
struct Config {
    name: &'static str,
    set: Option<RuleSet>,
}

fn builtin() -> Result<RuleSet, String> {
    let (set, errors) = RuleSet::builtin();
    if !errors.is_empty() {
        return Err(format!("the built-in rules do not load: {errors:?}"));
    }
    Ok(set)
}

/// What loading Falco's files gave, for the report.
#[derive(Default)]
struct FalcoInfo {
    rules: usize,
    evaluable: usize,
    /// Evaluable rules the files ship with `enabled: false`, switched on here.
    switched_on: usize,
    /// Evaluable rules the engine would not compile: (rule, error). An engine bug.
    not_compiled: Vec<(String, String)>,
    per_file: Vec<(String, usize, usize)>,
}

/// The built-in rules plus every evaluable rule of Falco's files, all enabled.
fn with_falco(dir: &Path) -> Result<(RuleSet, FalcoInfo), String> {
    let mut loader = Loader::default();
    loader.add_source(
        Path::new(sandwatch_rules::DEFAULT_RULES_NAME),
        sandwatch_rules::DEFAULT_RULES,
    );
    for f in FALCO_FILES {
        loader.add_file(&dir.join(f));
    }
    let (mut set, errors) = loader.finish();
    if !errors.is_empty() {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("Falco's rules do not load:\n{}", all.join("\n")));
    }
    let mut info = FalcoInfo::default();
    for f in FALCO_FILES {
        let of_file: Vec<_> = set
            .rules
            .iter()
            .filter(|r| r.source.file.ends_with(f))
            .collect();
        let evaluable = of_file
            .iter()
            .filter(|r| r.status == Status::Evaluable)
            .count();
        info.rules += of_file.len();
        info.evaluable += evaluable;
        info.per_file.push((f.to_owned(), of_file.len(), evaluable));
    }
    for r in &mut set.rules {
        if r.status == Status::Evaluable && !r.enabled {
            r.enabled = true;
            info.switched_on += 1;
        }
    }
    // A rule the catalogue calls evaluable but the engine refuses is left out (and reported):
    // the benchmark measures what compiles.
    if let Err(errors) = Engine::new(&set) {
        for r in &mut set.rules {
            if !r.enabled || r.status != Status::Evaluable {
                continue;
            }
            let single = RuleSet {
                rules: vec![r.clone()],
            };
            if let Err(e) = Engine::new(&single) {
                let msg: Vec<String> = e.iter().map(ToString::to_string).collect();
                info.not_compiled.push((r.name.clone(), msg.join("; ")));
                r.enabled = false;
            }
        }
        if info.not_compiled.is_empty() {
            let msg: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "the rules do not compile together: {}",
                msg.join("; ")
            ));
        }
    }
    Ok((set, info))
}

fn engine_for(set: &RuleSet) -> Engine {
    Engine::new(set).expect("checked to compile when the configuration was made")
}

/// One pass of `config` over every batch: (seconds, alerts).
fn pass(config: &Config, batches: &[(Table, RecordBatch)]) -> (f64, u64) {
    match &config.set {
        None => {
            let hasher = foldhash::fast::FixedState::default();
            let start = Instant::now();
            let mut acc = 0u64;
            for (table, b) in batches {
                if !EVENT_TABLES.contains(table) {
                    continue;
                }
                let Some(events) = b
                    .column_by_name("event")
                    .and_then(|c| c.as_string_opt::<i32>())
                else {
                    continue;
                };
                for i in 0..events.len() {
                    let mut h = hasher.build_hasher();
                    h.write(events.value(i).as_bytes());
                    acc = acc.wrapping_add(h.finish());
                }
            }
            black_box(acc);
            (start.elapsed().as_secs_f64(), 0)
        }
        Some(set) => {
            let mut engine = engine_for(set);
            let start = Instant::now();
            let mut alerts = 0u64;
            for (table, b) in batches {
                alerts += engine.evaluate(*table, b).len() as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            black_box(&engine);
            (secs, alerts)
        }
    }
}

/// Every match of one pass, a line each.
fn write_matches(
    path: &Path,
    set: &RuleSet,
    batches: &[(Table, RecordBatch)],
) -> Result<(), String> {
    let mut engine = engine_for(set);
    let mut text = String::new();
    for (table, b) in batches {
        for m in engine.evaluate(*table, b) {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                table.name(),
                m.row,
                engine.rule(m.rule).name,
                m.output
            ));
        }
    }
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// CPUs this process may run on (to report the pinning).
fn cpus_allowed() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let o = parse_args()?;
    let load_start = Instant::now();
    let batches = read_batches(&o.data, o.batch_rows)?;
    let mut rows_by_table: BTreeMap<&str, u64> = BTreeMap::new();
    for (t, b) in &batches {
        *rows_by_table.entry(t.name()).or_default() += b.num_rows() as u64;
    }
    let events: u64 = EVENT_TABLES
        .iter()
        .map(|t| rows_by_table.get(t.name()).copied().unwrap_or(0))
        .sum();
    if events == 0 {
        return Err(format!("no events in {}", o.data.display()));
    }
    eprintln!(
        "engine bench: {} events in {} batches of up to {} rows, read in {:.1} s; CPUs allowed: {:?}",
        events,
        batches.len(),
        o.batch_rows,
        load_start.elapsed().as_secs_f64(),
        cpus_allowed()
    );

    let mut configs = vec![
        Config {
            name: "scan",
            set: None,
        },
        Config {
            name: "engine, 0 rules",
            set: Some(RuleSet::default()),
        },
        Config {
            name: "default",
            set: Some(builtin()?),
        },
    ];
    let mut falco = None;
    if let Some(dir) = &o.falco {
        let (set, info) = with_falco(dir)?;
        configs.push(Config {
            name: "default + falco",
            set: Some(set),
        });
        falco = Some(info);
    }
    for c in &configs {
        if let Some(set) = &c.set {
            Engine::new(set).map_err(|e| format!("{}: {e:?}", c.name))?;
        }
    }

    if let Some(only) = &o.only {
        let c = configs
            .iter()
            .find(|c| c.name == only)
            .ok_or_else(|| format!("--only {only:?}: no such configuration"))?;
        if let (Some(path), Some(set)) = (&o.matches, &c.set) {
            write_matches(path, set, &batches)?;
        }
        for r in 0..o.rounds {
            let (secs, alerts) = pass(c, &batches);
            eprintln!(
                "engine bench: {} round {r}: {:.0} events/s, {alerts} alerts",
                c.name,
                events as f64 / secs
            );
        }
        return Ok(());
    }

    // Warm-up: page in the batches and every code path once.
    for c in &configs {
        pass(c, &batches);
    }
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut alerts: Vec<u64> = vec![0; configs.len()];
    for round in 0..o.rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let (s, a) = pass(&configs[i], &batches);
            secs[i].push(s);
            alerts[i] = a;
        }
        eprintln!(
            "engine bench: round {}/{}: {}",
            round + 1,
            o.rounds,
            configs
                .iter()
                .zip(&secs)
                .map(|(c, s)| format!(
                    "{} {:.0}/s",
                    c.name,
                    events as f64 / s.last().copied().unwrap_or(f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut per_rule = Vec::new();
    if o.per_rule
        && let Some(big) = configs.iter().rev().find_map(|c| c.set.as_ref())
    {
        let empty = Config {
            name: "engine, 0 rules",
            set: Some(RuleSet::default()),
        };
        let fixed = median(&(0..3).map(|_| pass(&empty, &batches).0).collect::<Vec<_>>());
        let enabled: Vec<_> = big
            .rules
            .iter()
            .filter(|r| r.enabled && r.status == Status::Evaluable)
            .collect();
        eprintln!("engine bench: timing {} rules one by one", enabled.len());
        for r in enabled {
            let one = Config {
                name: "one rule",
                set: Some(RuleSet {
                    rules: vec![r.clone()],
                }),
            };
            let s: Vec<f64> = (0..3).map(|_| pass(&one, &batches).0).collect();
            let (_, a) = pass(&one, &batches);
            per_rule.push(json!({
                "rule": r.name,
                "file": r.source.file.file_name().map(|f| f.to_string_lossy().into_owned()),
                "secs": median(&s),
                "own_secs": median(&s) - fixed,
                "alerts": a,
            }));
        }
        per_rule.sort_by(|a, b| {
            b["own_secs"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&a["own_secs"].as_f64().unwrap_or(0.0))
        });
        per_rule.insert(
            0,
            json!({"rule": "(engine, 0 rules)", "secs": fixed, "own_secs": fixed, "alerts": 0}),
        );
    }

    let out = json!({
        "events": events,
        "batches": batches.len(),
        "batch_rows": o.batch_rows,
        "rows_by_table": rows_by_table,
        "rounds": o.rounds,
        "cpus_allowed": cpus_allowed(),
        "configs": configs.iter().zip(&secs).zip(&alerts).map(|((c, s), a)| json!({
            "name": c.name,
            "rules": c.set.as_ref().map(|set| set.rules.iter().filter(|r| r.enabled && r.status == Status::Evaluable).count()),
            "secs": s,
            "median_secs": median(s),
            "events_per_s": events as f64 / median(s),
            "best_events_per_s": events as f64 / s.iter().copied().fold(f64::INFINITY, f64::min),
            "alerts": a,
        })).collect::<Vec<_>>(),
        "falco": falco.map(|f| json!({
            "rules": f.rules,
            "evaluable": f.evaluable,
            "switched_on": f.switched_on,
            "not_compiled": f.not_compiled,
            "per_file": f.per_file,
        })),
        "per_rule": per_rule,
    });
    println!("SW_RULES_BENCH_JSON {out}");
    Ok(())
}
