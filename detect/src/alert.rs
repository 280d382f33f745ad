//! From what fired to the alert people receive: a rule's [`Match`] ([`alert_record`]) or a
//! baseline's [`Anomaly`] ([`anomaly_alert`]), and the rules' priorities in the hooks' terms
//! ([`hook_priority`]).
//!
//! Pure functions, no state: the detector calls them for live alerts and `sandwatch rules test`
//! for replayed ones, so a replay produces the same alert (and dedup key) as the live run.
//! Only the detector fills in `actions_taken`, once it has acted.

use sandwatch_analytics::baseline::{Anomaly, AnomalyKind, BaselineModel};
use sandwatch_hooks::{Alert, EventRef};
use sandwatch_rules::{Action, Match, Rule};

/// The alert a match raises: what `--alerts` writes, `rules test` prints and hooks receive.
pub fn alert_record(rule: &Rule, m: &Match, host: &str) -> Alert {
    let evidence = vec![EventRef {
        table: m.table.name().to_owned(),
        time_ns: m.time_ns,
        pid: m.pid.unwrap_or(0),
        tid: m.tid.unwrap_or(0),
        event: m.event.clone().unwrap_or_default(),
    }];
    let mut a = Alert::new(
        m.time_ns,
        host,
        rule.name.clone(),
        hook_priority(rule.priority),
        m.sandbox_id.clone(),
        m.output.clone(),
        evidence,
    );
    a.tags = rule.tags.clone();
    a.actions = rule
        .actions
        .iter()
        .map(|x| {
            match x {
                Action::Alert => "alert",
                Action::Kill => "kill",
                Action::Freeze => "freeze",
            }
            .to_owned()
        })
        .collect();
    a.fields = m.fields.iter().cloned().collect();
    a
}

/// The alert a baseline anomaly raises: rule `Baseline: new <kind>` or `Baseline: unusual
/// activity`, the reason as output, and the score.
pub fn anomaly_alert(model: &BaselineModel, a: &Anomaly, host: &str) -> Alert {
    let (rule, fields) = match &a.kind {
        AnomalyKind::NewTerm { kind, term } => (
            format!("Baseline: new {}", kind.describe()),
            vec![
                ("term.kind", kind.describe().to_owned()),
                ("term", term.clone()),
            ],
        ),
        AnomalyKind::Window {
            window, threshold, ..
        } => (
            "Baseline: unusual activity".to_owned(),
            vec![
                ("window", window.to_string()),
                ("threshold", format!("{threshold:.3}")),
            ],
        ),
    };
    let evidence: Vec<EventRef> = a
        .hit
        .iter()
        .map(|h| EventRef {
            table: a.table.map_or("", |t| t.name()).to_owned(),
            time_ns: h.time_ns,
            pid: h.pid.unwrap_or(0),
            tid: h.tid.unwrap_or(0),
            event: h.event.clone(),
        })
        .collect();
    let mut output = format!("{} sandbox={}", a.reason(model), a.sandbox_id);
    if let Some(pid) = a.hit.as_ref().and_then(|h| h.pid) {
        output.push_str(&format!(" pid={pid}"));
    }
    let mut alert = Alert::new(
        a.time_ns,
        host,
        rule,
        sandwatch_hooks::Priority::Warning,
        Some(a.sandbox_id.clone()),
        output,
        evidence,
    );
    alert.tags = vec!["baseline".into(), format!("profile:{}", a.profile)];
    alert.actions = vec!["alert".into()];
    alert.score = Some(a.score);
    alert.fields = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([
            ("profile".to_owned(), a.profile.clone()),
            ("model_version".to_owned(), model.version.to_string()),
            ("model".to_owned(), model.model_kind.name().to_owned()),
            ("score".to_owned(), format!("{:.3}", a.score)),
        ])
        .collect();
    alert
}

/// A rule's priority as the hooks name it (the same eight, Falco's names).
pub fn hook_priority(p: sandwatch_rules::Priority) -> sandwatch_hooks::Priority {
    use sandwatch_hooks::Priority as H;
    use sandwatch_rules::Priority as P;
    match p {
        P::Emergency => H::Emergency,
        P::Alert => H::Alert,
        P::Critical => H::Critical,
        P::Error => H::Error,
        P::Warning => H::Warning,
        P::Notice => H::Notice,
        P::Informational => H::Informational,
        P::Debug => H::Debug,
    }
}
