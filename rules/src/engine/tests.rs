//! The engine on hand-built batches of the real table schemas.

use std::path::Path;

use sandwatch_schema::{
    Common, FileEvent, FileEventsBuilder, NetworkEvent, NetworkEventsBuilder, ProcessEvent,
    ProcessEventsBuilder, SandboxMetricsBuilder, SandboxMetricsRow, Table,
};

use super::*;
use crate::ruleset::Loader;

const SECOND: i64 = 1_000_000_000;

fn rules(yaml: &str) -> RuleSet {
    let mut l = Loader::default();
    l.add_source(Path::new("test.yaml"), yaml);
    let (set, errors) = l.finish();
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn common<'a>(pid: u32, ppid: u32, comm: &'a str, event: &'a str, ret: i64) -> Common<'a> {
    Common {
        time_ns: 1_700_000_000 * SECOND + i64::from(pid),
        host: "h",
        sandbox_id: Some("sb-1"),
        cgroup_id: 7,
        pid,
        tid: pid,
        ppid: Some(ppid),
        uid: 1_000_000_000,
        gid: 1_000_000_000,
        comm,
        exe: None,
        event,
        syscall: Some(event),
        ret: Some(ret),
    }
}

fn exec<'a>(pid: u32, ppid: u32, comm: &'a str, exe: &'a str, argv: &'a [u8]) -> ProcessEvent<'a> {
    let mut c = common(pid, ppid, comm, "execve", 0);
    c.exe = Some(exe);
    ProcessEvent {
        common: c,
        filename: Some(exe),
        argv: Some(argv),
        ..ProcessEvent::default()
    }
}

fn names(engine: &Engine, matches: &[Match]) -> Vec<String> {
    matches
        .iter()
        .map(|m| engine.rule(m.rule).name.clone())
        .collect()
}

#[test]
fn default_and_falco_rules_compile() {
    let (set, errors) = RuleSet::builtin();
    assert!(errors.is_empty(), "{errors:?}");
    let engine = Engine::new(&set).expect("the default rules compile");
    assert_eq!(
        engine.len(),
        set.rules
            .iter()
            .filter(|r| r.enabled && r.status == Status::Evaluable)
            .count()
    );
    if let Some(dir) = crate::tests::falco_dir() {
        let (set, _) = crate::load_files(&[
            dir.join("falco_rules.yaml"),
            dir.join("falco-incubating_rules.yaml"),
            dir.join("falco-sandbox_rules.yaml"),
        ]);
        let mut all = set.clone();
        for r in &mut all.rules {
            r.enabled = true;
        }
        if let Err(errors) = Engine::new(&all) {
            panic!("Falco's evaluable rules compile: {errors:?}");
        }
    }
}

#[test]
fn tree_fields_and_output() {
    let set = rules(
        r#"
- rule: shell from nc
  desc: d
  condition: evt.type = execve and evt.res = SUCCESS and proc.name = bash and proc.pname = nc and proc.aname[2] = init
  output: shell %proc.cmdline parent=%proc.pname gp=%proc.aname[2] missing=%fd.name.
  priority: WARNING
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut b = ProcessEventsBuilder::new(4);
    b.append(&exec(10, 1, "init", "/sbin/init", b"/sbin/init\0"));
    b.append(&exec(20, 10, "nc", "/usr/bin/nc", b"nc\0-l\0-p\x004444\0"));
    b.append(&exec(30, 20, "bash", "/bin/bash", b"bash\0-i\0"));
    b.append(&exec(31, 20, "sh", "/bin/sh", b"sh\0"));
    let batch = b.finish().unwrap();
    let m = engine.evaluate(Table::ProcessEvents, &batch);
    assert_eq!(names(&engine, &m), ["shell from nc"]);
    assert_eq!(m[0].pid, Some(30));
    assert_eq!(m[0].output, "shell bash -i parent=nc gp=init missing=<NA>.");
    assert_eq!(m[0].sandbox_id.as_deref(), Some("sb-1"));
}

#[test]
fn file_rules_with_lists_pmatch_and_negation() {
    let set = rules(
        r#"
- list: secrets
  items: [/etc/shadow, /etc/sudoers]
- rule: secret read
  desc: d
  condition: evt.type in (open, openat) and evt.is_open_read = true and (fd.name in (secrets) or fd.name pmatch (/etc/sudoers.d)) and not proc.name = sudo
  output: read %fd.name dir=%fd.directory
  priority: WARNING
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut b = FileEventsBuilder::new(8);
    let open = |pid, comm, path, flags| FileEvent {
        common: common(pid, 1, comm, "openat", 3),
        path: Some(path),
        flags: Some(flags),
        ..FileEvent::default()
    };
    b.append(&open(1, "cat", "/etc/shadow", 0));
    b.append(&open(2, "cat", "/etc/passwd", 0));
    b.append(&open(3, "sudo", "/etc/shadow", 0));
    b.append(&open(4, "cat", "/etc/sudoers.d/x", 0));
    b.append(&open(5, "cat", "/etc/sudoers.dx", 0));
    b.append(&open(6, "tee", "/etc/shadow", 1));
    let batch = b.finish().unwrap();
    let m = engine.evaluate(Table::FileEvents, &batch);
    let pids: Vec<u32> = m.iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids, [1, 4]);
    assert_eq!(m[1].output, "read /etc/sudoers.d/x dir=/etc/sudoers.d");
}

#[test]
fn connection_burst_threshold_fires_once_per_window() {
    let set = rules(
        r#"
- rule: burst
  desc: d
  condition: evt.type = connect and fd.sockfamily = ip and not fd.rnet in (127.0.0.0/8)
  output: burst %container.id
  priority: NOTICE
  threshold: { count: 100, window: 1m }
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let addrs: Vec<String> = (0..250)
        .map(|i| format!("10.0.{}.{}", i / 200, i % 200))
        .collect();
    let mut b = NetworkEventsBuilder::new(300);
    for (i, a) in addrs.iter().enumerate() {
        let mut c = common(5, 1, "curl", "connect", 0);
        c.time_ns += i as i64 * SECOND / 10; // 250 connects over 25 s
        b.append(&NetworkEvent {
            common: c,
            family: Some("inet"),
            saddr: Some("10.1.1.1"),
            daddr: Some(a),
            dport: Some(443),
            ..NetworkEvent::default()
        });
    }
    // Loopback connects do not count.
    let mut c = common(5, 1, "curl", "connect", 0);
    c.time_ns += 30 * SECOND;
    b.append(&NetworkEvent {
        common: c,
        family: Some("inet"),
        daddr: Some("127.0.0.1"),
        ..NetworkEvent::default()
    });
    let batch = b.finish().unwrap();
    let m = engine.evaluate(Table::NetworkEvents, &batch);
    assert_eq!(m.len(), 1, "one alert per key per window");
    assert_eq!(m[0].row, 100, "fired on the 101st connect");
    assert_eq!(m[0].output, "burst sb-1");
}

#[test]
fn metric_rule_reads_memory_percent() {
    let set = rules(
        r#"
- rule: memory high
  desc: d
  source: sandbox_metrics
  condition: metrics.memory_percent > 90
  output: memory %metrics.memory_percent% of %metrics.memory_limit_mb MiB in %sandbox.id
  priority: WARNING
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut b = SandboxMetricsBuilder::new(2);
    for used in [100u64, 950] {
        b.append(&SandboxMetricsRow {
            time_ns: 1,
            host: "h",
            sandbox_id: "sb-1",
            cpu_usage_percent: 10.0,
            memory_usage_bytes: used << 20,
            memory_limit_bytes: Some(1000 << 20),
            disk_usage_bytes: 0,
            network_rx_bytes: None,
            network_tx_bytes: None,
            process_count: 1,
            file_descriptors: 3,
        });
    }
    let m = engine.evaluate(Table::SandboxMetrics, &b.finish().unwrap());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].row, 1);
    assert_eq!(m[0].output, "memory 95.0% of 1000.0 MiB in sb-1");
}

#[test]
fn globs() {
    use compile::StrTest;
    let g = |p: &str, t: &str| {
        let c = crate::parse::parse_condition(&format!("fd.name glob \"{p}\"")).unwrap();
        let mut rc = RuleCompiler::default();
        match rc.compile("g", &c).unwrap() {
            Pred::Leaf {
                test: compile::Test::Str(StrTest::Glob(g)),
                ..
            } => g.matches(t),
            other => panic!("{other:?}"),
        }
    };
    assert!(g("/etc/*", "/etc/a/b"));
    assert!(g("*.ssh/id_*", "/root/.ssh/id_rsa"));
    assert!(!g("*.ssh/id_*", "/root/.ssh/known_hosts"));
    assert!(g("/tmp/?", "/tmp/x"));
    assert!(!g("/tmp/?", "/tmp/xy"));
    assert!(g("/dev/[st]d[a-c]", "/dev/sdb"));
    assert!(!g("/dev/[!s]d?", "/dev/sda"));
    assert!(g("*", ""));
}

/// What the matchers decided when they walked a `Vec<char>` copy of every value (the table was
/// checked against that implementation): walking the bytes in place must decide alike, multi-byte
/// characters included.
#[test]
fn text_matchers_decide_as_the_char_walking_ones_did() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("glob", "/etc/*", "/etc/a/b", true),
        ("glob", "*.ssh/id_*", "/root/.ssh/id_rsa", true),
        ("glob", "*.ssh/id_*", "/root/.ssh/known_hosts", false),
        ("glob", "/tmp/?", "/tmp/x", true),
        ("glob", "/tmp/?", "/tmp/é", true),
        ("glob", "/tmp/?", "/tmp/xy", false),
        ("glob", "/tmp/??", "/tmp/é", false),
        ("glob", "/tmp/?x", "/tmp/日x", true),
        ("glob", "/home/*/.ssh/*", "/home/jürgen/.ssh/config", true),
        ("glob", "/home/*/.ssh/*", "/home/jürgen/ssh/config", false),
        ("glob", "*é*", "caféine", true),
        ("glob", "*é", "cafe", false),
        ("glob", "[é]*", "éa", true),
        ("glob", "[a-z]*", "éa", false),
        ("glob", "[!a-z]*", "éa", true),
        ("glob", "[à-ê]", "é", true),
        ("glob", "*[0-9]", "log日1", true),
        ("glob", "/dev/[st]d[a-c]", "/dev/sdb", true),
        ("glob", "/dev/[!s]d?", "/dev/sda", false),
        ("glob", "a*b*c", "a日b本c", true),
        ("glob", "a*b*c", "a日b本", false),
        ("glob", "*", "", true),
        ("glob", "?", "", false),
        ("glob", "[abc", "[abc", false),
        ("glob", "**x", "日本x", true),
        ("iglob", "/ETC/*", "/etc/Passwd", true),
        ("iglob", "*ÉTÉ*", "un été", true),
        ("iglob", "?", "Ä", true),
        ("icontains", "PRIVATE", "-----begin private key", true),
        ("icontains", "private", "BEGIN PRIVATE", true),
        ("icontains", "é", "CAFÉ", false),
        ("icontains", "é", "café", true),
        ("icontains", "", "x", true),
        ("icontains", "xyz", "xy", false),
    ];
    for (op, pattern, text, expected) in cases {
        let c = crate::parse::parse_condition(&format!("fd.name {op} \"{pattern}\"")).unwrap();
        let Pred::Leaf {
            test: compile::Test::Str(t),
            ..
        } = RuleCompiler::default().compile("m", &c).unwrap()
        else {
            panic!("{op} {pattern}: not a text test");
        };
        assert_eq!(t.holds(text), *expected, "{text:?} {op} {pattern:?}");
    }
}

#[test]
fn host_names_in_rules_match_the_addresses_they_resolve_to() {
    let set = rules(
        r#"
- rule: to localhost
  desc: d
  condition: evt.type = connect and fd.sip.name = localhost
  output: to %fd.sip
  priority: NOTICE
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let batch = |addr: &str| {
        let mut b = NetworkEventsBuilder::new(1);
        b.append(&NetworkEvent {
            common: common(5, 1, "curl", "connect", 0),
            family: Some("inet"),
            daddr: Some(addr),
            dport: Some(80),
            ..NetworkEvent::default()
        });
        b.finish().unwrap()
    };
    // Resolution runs in the background: wait for it (localhost needs no network).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while engine
        .evaluate(Table::NetworkEvents, &batch("127.0.0.1"))
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "localhost never resolved"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        engine
            .evaluate(Table::NetworkEvents, &batch("10.1.2.3"))
            .is_empty()
    );
}

#[test]
fn exec_facts_reach_later_rows_through_the_tree() {
    let set = rules(
        r#"
- rule: module load with the capability
  desc: d
  condition: evt.type in (open, openat) and thread.cap_effective contains CAP_SYS_MODULE and proc.tty = 0 and not proc.is_exe_from_memfd = true
  output: caps=%thread.cap_effective tty=%proc.tty
  priority: WARNING
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut p = ProcessEventsBuilder::new(2);
    let mut root = exec(40, 1, "insmod", "/sbin/insmod", b"insmod\0x.ko\0");
    root.tty = Some(0);
    root.cap_effective = Some((1 << 16) | (1 << 21));
    root.exe_from_memfd = Some(false);
    let mut plain = exec(41, 1, "cat", "/bin/cat", b"cat\0");
    plain.tty = Some(0);
    plain.cap_effective = Some(0);
    p.append(&root);
    p.append(&plain);
    assert!(
        engine
            .evaluate(Table::ProcessEvents, &p.finish().unwrap())
            .is_empty()
    );
    let mut f = FileEventsBuilder::new(2);
    for pid in [40, 41] {
        f.append(&FileEvent {
            common: common(pid, 1, "x", "openat", 3),
            path: Some("/lib/modules/x.ko"),
            ..FileEvent::default()
        });
    }
    let m = engine.evaluate(Table::FileEvents, &f.finish().unwrap());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].pid, Some(40));
    assert_eq!(m[0].output, "caps=CAP_SYS_MODULE CAP_SYS_ADMIN tty=0");
}

#[test]
fn an_exec_row_keeps_its_own_arguments_when_the_process_execs_again_in_the_batch() {
    let set = rules(
        r#"
- rule: python one-liner
  desc: d
  condition: evt.type = execve and proc.name = python3 and proc.args contains dup2
  output: "%proc.cmdline"
  priority: WARNING
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut b = ProcessEventsBuilder::new(2);
    b.append(&exec(
        50,
        1,
        "python3",
        "/usr/bin/python3",
        b"python3\0-c\0os.dup2(1,1)\0",
    ));
    b.append(&exec(50, 1, "true", "/bin/true", b"true\0"));
    let m = engine.evaluate(Table::ProcessEvents, &b.finish().unwrap());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].output, "python3 -c os.dup2(1,1)");
}

#[test]
fn net_fields_compare_as_ranges_both_ways() {
    let set = rules(
        r#"
- rule: not loopback
  desc: d
  condition: evt.type = connect and fd.rnet != "127.0.0.0/8"
  output: "%fd.rip"
  priority: NOTICE
- rule: in ten
  desc: d
  condition: evt.type = connect and fd.rnet = "10.0.0.0/8"
  output: "%fd.rip"
  priority: NOTICE
"#,
    );
    let mut engine = Engine::new(&set).unwrap();
    let mut b = NetworkEventsBuilder::new(3);
    for addr in ["127.0.0.1", "10.2.3.4", "192.0.2.1"] {
        b.append(&NetworkEvent {
            common: common(5, 1, "curl", "connect", 0),
            family: Some("inet"),
            saddr: Some("10.9.9.9"),
            daddr: Some(addr),
            dport: Some(80),
            ..NetworkEvent::default()
        });
    }
    let m = engine.evaluate(Table::NetworkEvents, &b.finish().unwrap());
    let got: Vec<(String, String)> = m
        .iter()
        .map(|m| (engine.rule(m.rule).name.clone(), m.output.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("not loopback".to_owned(), "10.2.3.4".to_owned()),
            ("not loopback".to_owned(), "192.0.2.1".to_owned()),
            ("in ten".to_owned(), "10.2.3.4".to_owned()),
        ]
    );
}

/// File events of every kind the rules look at, deterministic: paths (null included), programs,
/// open flags and results in combinations that shift from row to row.
fn mixed_file_batch(rows: usize) -> RecordBatch {
    const EVENTS: [&str; 8] = [
        "openat", "open", "unlink", "rename", "mkdir", "creat", "chmod", "openat",
    ];
    const PATHS: [Option<&str>; 13] = [
        Some("/etc/shadow"),
        Some("/etc/passwd"),
        Some("/etc/sudoers.d/x"),
        Some("/root/.ssh/id_rsa"),
        Some("/home/jürgen/.ssh/config"),
        Some("/tmp/busy/f1.json"),
        Some("/usr/bin/ls"),
        Some("/dev/sda"),
        Some("/proc/1/environ"),
        Some("/root/.bash_history"),
        Some("/"),
        Some("/etc/cron.d/job"),
        None,
    ];
    const COMMS: [&str; 5] = ["cat", "python3", "sudo", "sh", "apt"];
    const FLAGS: [i64; 4] = [0, 1, 2, 0o101];
    const RETS: [i64; 3] = [3, -2, 0];
    let mut b = FileEventsBuilder::new(rows);
    for i in 0..rows {
        let event = EVENTS[i % EVENTS.len()];
        let mut c = common(
            100 + (i % 7) as u32,
            1,
            COMMS[i % COMMS.len()],
            event,
            RETS[i % RETS.len()],
        );
        c.time_ns += i as i64;
        b.append(&FileEvent {
            common: c,
            path: PATHS[i % PATHS.len()],
            path2: (event == "rename").then_some("/etc/profile"),
            flags: Some(FLAGS[i % FLAGS.len()]),
            mode: Some(0o755),
            ..FileEvent::default()
        });
    }
    b.finish().unwrap()
}

/// (rule, row, output) of every match, in the order the engine returns them.
fn matches_of(
    engine: &mut Engine,
    table: Table,
    batch: &RecordBatch,
) -> Vec<(String, usize, String)> {
    engine
        .evaluate(table, batch)
        .into_iter()
        .map(|m| (engine.rule(m.rule).name.clone(), m.row, m.output))
        .collect()
}

/// Rules sharing macros, and Falco's rules when they are at hand.
fn sharing_rules() -> RuleSet {
    let mut set = rules(
        r#"
- macro: open_read
  condition: evt.type in (open, openat) and evt.is_open_read = true and fd.num >= 0
- rule: etc read
  desc: d
  condition: open_read and fd.name startswith /etc/
  output: etc %fd.name
  priority: WARNING
- rule: etc read by cat
  desc: d
  condition: open_read and fd.name startswith /etc/ and proc.name = cat
  output: cat %fd.name
  priority: WARNING
- rule: read or unlink outside tmp
  desc: d
  condition: (open_read or evt.type = unlink) and not fd.name startswith /tmp
  output: rm %fd.name
  priority: WARNING
- rule: etc or json
  desc: d
  condition: evt.type in (openat, unlink) and (fd.name startswith /etc/ or fd.name endswith .json)
  output: ej %fd.name %evt.type
  priority: WARNING
- rule: etc anything
  desc: d
  condition: fd.name startswith /etc/ and not proc.name in (apt, sudo)
  output: any %fd.name %proc.name
  priority: WARNING
"#,
    );
    if let Some(dir) = crate::tests::falco_dir() {
        let (falco, _) = crate::load_files(&[
            dir.join("falco_rules.yaml"),
            dir.join("falco-incubating_rules.yaml"),
            dir.join("falco-sandbox_rules.yaml"),
        ]);
        set.rules.extend(falco.rules.into_iter().map(|mut r| {
            r.enabled = r.status == Status::Evaluable;
            r
        }));
    }
    set
}

#[test]
fn shared_nodes_decide_as_each_rule_alone() {
    let set = sharing_rules();
    let batch = mixed_file_batch(700);
    let mut together = Engine::new(&set).unwrap();
    let got = matches_of(&mut together, Table::FileEvents, &batch);
    let mut alone = Vec::new();
    let mut unshared_nodes = 0;
    for r in set
        .rules
        .iter()
        .filter(|r| r.enabled && r.status == Status::Evaluable)
    {
        let mut one = Engine::new(&RuleSet {
            rules: vec![r.clone()],
        })
        .unwrap();
        unshared_nodes += one.plan.len();
        alone.extend(matches_of(&mut one, Table::FileEvents, &batch));
    }
    assert_eq!(got, alone);
    assert!(got.iter().any(|m| m.0 == "etc read by cat"), "{got:?}");
    assert!(
        together.plan.len() < unshared_nodes,
        "{} nodes shared, {unshared_nodes} alone",
        together.plan.len()
    );
}

/// A leaf on a dictionary column decides as on the plain column, null rows included, whether
/// its verdicts are decided all at once (a large selection) or row by row (a small one), and
/// when they are kept from one selection to the next.
#[test]
fn dictionary_leaves_decide_as_plain_ones() {
    use arrow_array::StringArray;
    use std::sync::Arc;
    let texts = [
        Some("/etc/shadow"),
        None,
        Some("/etc/passwd"),
        Some("/tmp/x.json"),
        Some("/etc/shadow"),
        Some("/home/jürgen/.ssh/id_rsa"),
        None,
        Some("/tmp/x.json"),
        Some(""),
    ];
    let plain = columns::Col::Str(Arc::new(StringArray::from(texts.to_vec())));
    let mut values: Vec<Option<&str>> = Vec::new();
    let codes = texts
        .iter()
        .map(|t| {
            let c = values.iter().position(|x| x == t).unwrap_or_else(|| {
                values.push(*t);
                values.len() - 1
            });
            c as u32
        })
        .collect();
    let dict = columns::Dict::new(codes, values);
    let selections: [Selection; 4] = [
        (0..texts.len() as u32).collect(),
        vec![1, 3],
        vec![0, 4, 5, 6, 8],
        vec![2],
    ];
    for cond in [
        "fd.name startswith /etc/",
        "fd.name in (/etc/shadow, /tmp/x.json)",
        "fd.name glob \"/home/*/.ssh/*\"",
        "fd.name exists",
        "fd.name = \"\"",
        "fd.name contains .json",
        "fd.name != /etc/shadow",
        "fd.name pmatch (/etc)",
    ] {
        let c = crate::parse::parse_condition(cond).unwrap();
        let Pred::Leaf { test, .. } = RuleCompiler::default().compile("d", &c).unwrap() else {
            panic!("{cond}: not a leaf");
        };
        let holds = |c: usize| dict.value(c).is_some_and(|v| compile::text_holds(&test, v));
        let mut kept = compile::Verdicts::default();
        // Buffers left dirty from one call to the next, as the engine leaves them.
        let (mut want, mut got) = (Vec::new(), vec![7; 3]);
        for sel in &selections {
            compile::filter(&plain, &test, sel, &mut want);
            let mut fresh = compile::Verdicts::default();
            compile::filter_dict(&dict, holds, sel, &mut fresh, &mut got);
            assert_eq!(got, want, "{cond} {sel:?}");
            compile::filter_dict(&dict, holds, sel, &mut kept, &mut got);
            assert_eq!(got, want, "{cond} {sel:?} kept");
        }
    }
}

/// File events with the paths given, one row each, as `openat` for reading by `cat`.
fn opens_of(paths: &[String]) -> RecordBatch {
    let mut b = FileEventsBuilder::new(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let mut c = common(100 + (i % 5) as u32, 1, "cat", "openat", 3);
        c.time_ns += i as i64;
        b.append(&FileEvent {
            common: c,
            path: Some(p),
            flags: Some(0),
            ..FileEvent::default()
        });
    }
    b.finish().unwrap()
}

/// Verdicts an engine keeps from earlier batches (and forgets past its bound) decide as a fresh
/// engine's would.
#[test]
fn verdicts_kept_across_batches_decide_as_fresh_ones() {
    let set = sharing_rules();
    let paths = |from: usize, to: usize| -> Vec<String> {
        (from..to)
            .map(|i| match i % 4 {
                0 => format!("/etc/f{i}"),
                1 => format!("/tmp/f{i}.json"),
                2 => "/etc/shadow".to_owned(),
                _ => format!("/home/u{i}/.ssh/id_rsa"),
            })
            .collect()
    };
    // The second batch repeats values of the first, the third pushes the paths seen past the
    // bound, the fourth repeats values of all.
    let batches = [
        opens_of(&paths(0, 600)),
        opens_of(&paths(300, 900)),
        opens_of(&paths(1000, 101_000)),
        opens_of(&paths(0, 1200)),
    ];
    let mut kept = Engine::new(&set).unwrap();
    for b in &batches {
        let mut fresh = Engine::new(&set).unwrap();
        assert_eq!(
            matches_of(&mut kept, Table::FileEvents, b),
            matches_of(&mut fresh, Table::FileEvents, b)
        );
    }
}
