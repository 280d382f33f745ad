//! Baselines learned from a Parquet audit log of many sandboxes of one profile, then a new
//! sandbox scored offline (`explain`) and live (`BaselineScorer` on the same batches).

mod common;

use std::path::Path;

use arrow_array::RecordBatch;
use sandwatch_analytics::{
    QueryLimits, SqlSession,
    baseline::{
        self, AnomalyKind, BaselineScorer, TrainOptions, model::ModelKind, store::ModelStore,
        terms::TermKind,
    },
};
use sandwatch_schema::{
    Common, FileEvent, FileEventsBuilder, ProcessEvent, ProcessEventsBuilder, SandboxEvent,
    SandboxLifecycle, SandboxesBuilder, Table,
};

use common::{SEC, T0};

/// One sandbox of profile `py`: python reading its libraries and writing `files` outputs;
/// `extra_exe` runs one more program, `storm` adds a burst of that many more files written.
fn sandbox(
    id: &str,
    start: i64,
    files: u32,
    extra_exe: Option<&str>,
    storm: u32,
) -> Vec<(Table, RecordBatch)> {
    let pid = 100;
    let c = |t: i64, event: &'static str, ret: i64| -> Common<'_> {
        common::common(t, id, pid, 1, "python3", event, ret)
    };
    let mut p = ProcessEventsBuilder::new(2);
    p.append(&ProcessEvent {
        common: c(start + 1000, "execve", 0),
        filename: Some("/usr/bin/python3.11"),
        ..Default::default()
    });
    if let Some(exe) = extra_exe {
        p.append(&ProcessEvent {
            common: c(start + 2000, "execve", 0),
            filename: Some(exe),
            ..Default::default()
        });
    }
    let mut f = FileEventsBuilder::new(64);
    let libs = [
        "/usr/lib/python3.11/json/__init__.py",
        "/usr/lib/python3.11/os.py",
        "/etc/ld.so.cache",
    ];
    let mut t = start + 3000;
    for path in libs {
        t += 1000;
        f.append(&FileEvent {
            common: c(t, "openat", 3),
            path: Some(path),
            flags: Some(0),
            ..Default::default()
        });
    }
    let outputs: Vec<String> = (0..files)
        .map(|i| format!("/workspace/out/run-{id}-{i}.json"))
        .collect();
    for path in &outputs {
        t += 1000;
        f.append(&FileEvent {
            common: c(t, "openat", 4),
            path: Some(path),
            flags: Some(577),
            ..Default::default()
        });
    }
    let burst: Vec<String> = (0..storm)
        .map(|i| format!("/workspace/out/tmp{i}"))
        .collect();
    for path in &burst {
        t += 100;
        f.append(&FileEvent {
            common: c(t, "openat", 5),
            path: Some(path),
            flags: Some(577),
            ..Default::default()
        });
    }
    let mut s = SandboxesBuilder::new(1);
    s.append(&SandboxEvent {
        time_ns: start,
        host: "h1",
        sandbox_id: id,
        event: SandboxLifecycle::Created,
        command: None,
        exit_code: None,
        signal: None,
        reason: None,
        policy_hash: "00",
        profile: Some("py"),
        detail: None,
    });
    vec![
        (Table::Sandboxes, s.finish().unwrap()),
        (Table::ProcessEvents, p.finish().unwrap()),
        (Table::FileEvents, f.finish().unwrap()),
    ]
}

fn write_all(dir: &Path, seq: usize, batches: &[(Table, RecordBatch)]) {
    for (table, b) in batches {
        common::write(dir, *table, "2026-12-01", 10, &format!("{seq}.parquet"), b);
    }
}

/// Twelve training sandboxes with 2 to 5 output files each.
fn training_log(dir: &Path) {
    for i in 0..12 {
        let files = 2 + (i % 4);
        write_all(
            dir,
            i as usize,
            &sandbox(
                &format!("tr-{i}"),
                T0 + i64::from(i) * 60 * SEC,
                files,
                None,
                0,
            ),
        );
    }
}

async fn trained(dir: &Path, kind: ModelKind) -> baseline::BaselineModel {
    let s = SqlSession::open(dir, QueryLimits::default()).await.unwrap();
    let mut o = TrainOptions::new("py");
    o.kind = kind;
    baseline::train(&s, &o).await.unwrap()
}

#[tokio::test]
async fn training_learns_terms_and_a_model_from_the_profiles_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    training_log(dir.path());
    let m = trained(dir.path(), ModelKind::Pca).await;
    assert_eq!(m.data.sandboxes, 12);
    assert_eq!(m.data.windows, 12);
    assert_eq!(m.terms[&TermKind::Executable]["/usr/bin/python#.#"], 12);
    assert_eq!(m.terms[&TermKind::FileRead]["/usr/lib/python#.#"], 12);
    // Every run's output names differ; the term is the tree they are in.
    assert_eq!(
        m.terms[&TermKind::FileWrite].keys().collect::<Vec<_>>(),
        ["/workspace/*"]
    );
    assert!(
        m.data.from.starts_with("2026-12-01T10:00"),
        "{}",
        m.data.from
    );

    // Another profile's sandboxes are not learned from.
    let s = SqlSession::open(dir.path(), QueryLimits::default())
        .await
        .unwrap();
    let e = baseline::train(&s, &TrainOptions::new("cc"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no recorded activity of profile \"cc\""),
        "{e}"
    );
}

#[tokio::test]
async fn models_are_versioned_files_that_say_what_they_learned_from() {
    let dir = tempfile::tempdir().unwrap();
    training_log(dir.path());
    let store = ModelStore::for_audit_log(dir.path());
    let mut a = trained(dir.path(), ModelKind::Pca).await;
    let mut b = trained(dir.path(), ModelKind::Kmeans).await;
    let pa = store.save(&mut a).unwrap();
    let pb = store.save(&mut b).unwrap();
    assert!(pa.ends_with("py/v1.json") && pb.ends_with("py/v2.json"));
    let latest = store.latest("py").unwrap().unwrap();
    assert_eq!((latest.version, latest.model_kind), (2, ModelKind::Kmeans));
    assert_eq!(store.version("py", 1).unwrap().model_kind, ModelKind::Pca);
    assert_eq!(store.profiles(), ["py"]);
    assert!(
        store.latest("../etc").is_err(),
        "a profile name is not a path"
    );
    assert!(store.latest("none").unwrap().is_none());
}

#[tokio::test]
async fn a_new_executable_and_a_storm_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    training_log(dir.path());
    for kind in ModelKind::ALL {
        let m = trained(dir.path(), kind).await;
        let test = tempfile::tempdir().unwrap();
        write_all(test.path(), 0, &sandbox("ok", T0, 3, None, 0));
        write_all(
            test.path(),
            1,
            &sandbox("disc", T0 + 60 * SEC, 3, Some("/usr/bin/whoami"), 0),
        );
        write_all(
            test.path(),
            2,
            &sandbox("storm", T0 + 120 * SEC, 3, None, 400),
        );
        let s = SqlSession::open(test.path(), QueryLimits::default())
            .await
            .unwrap();

        let ok = baseline::explain(&s, &m, "ok").await.unwrap();
        assert!(!ok.anomalous(), "{kind:?}: a normal run: {ok:?}");

        let disc = baseline::explain(&s, &m, "disc").await.unwrap();
        assert_eq!(disc.new_terms.len(), 1, "{kind:?}");
        match &disc.new_terms[0].kind {
            AnomalyKind::NewTerm { kind, term } => {
                assert_eq!(
                    (*kind, term.as_str()),
                    (TermKind::Executable, "/usr/bin/whoami")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            disc.new_terms[0]
                .reason(&m)
                .contains("in none of the 12 sandboxes")
        );

        // The storm's terms are all known (/workspace/*): only the window model sees it.
        let storm = baseline::explain(&s, &m, "storm").await.unwrap();
        assert!(
            storm.new_terms.is_empty(),
            "{kind:?}: {:?}",
            storm.new_terms
        );
        assert!(
            storm.windows[0].anomalous,
            "{kind:?}: {:?}",
            storm.windows[0]
        );
        let top: Vec<&str> = storm.windows[0]
            .deviations
            .iter()
            .map(|d| d.feature.as_str())
            .collect();
        assert!(top.contains(&"file_writes"), "{kind:?}: {top:?}");

        assert!(baseline::explain(&s, &m, "nope").await.is_err());
    }
}

#[tokio::test]
async fn the_live_scorer_raises_a_new_term_once_and_the_window_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    training_log(dir.path());
    let m = trained(dir.path(), ModelKind::Pca).await;
    let mut scorer = BaselineScorer::new([m]);
    let mut found = Vec::new();
    // The same program twice: one alert.
    for (table, b) in sandbox("live", T0, 3, Some("/usr/bin/whoami"), 400)
        .into_iter()
        .chain(sandbox("live", T0 + SEC, 0, Some("/usr/bin/whoami"), 0))
    {
        found.extend(scorer.observe(table, &b).unwrap());
    }
    let terms: Vec<_> = found
        .iter()
        .filter(|a| matches!(a.kind, AnomalyKind::NewTerm { .. }))
        .collect();
    assert_eq!(terms.len(), 1, "{found:?}");
    assert_eq!(terms[0].table, Some(Table::ProcessEvents));
    assert_eq!(terms[0].hit.as_ref().unwrap().pid, Some(100));
    let windows: Vec<_> = scorer
        .finish()
        .into_iter()
        .filter(|a| matches!(a.kind, AnomalyKind::Window { .. }))
        .collect();
    assert_eq!(windows.len(), 1);
    assert!(windows[0].score > 0.0);

    // A sandbox of a profile without a model is not scored.
    let mut other = BaselineScorer::new([]);
    for (table, b) in sandbox("x", T0, 3, Some("/usr/bin/whoami"), 400) {
        assert!(other.observe(table, &b).unwrap().is_empty());
    }
}
