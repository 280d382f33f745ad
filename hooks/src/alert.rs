//! The alert as it travels: what a rule raised, where, what sandwatch did about it, and the
//! events it rests on. Its JSON form is the line `sandwatch run --alerts FILE` writes, the body of
//! the generic webhook and what the outbox stores; its `alerts` row comes from [`Alert::row`].

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Falco's priorities, ordered by severity: `Debug < Informational < ... < Emergency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Debug,
    Informational,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Debug,
        Priority::Informational,
        Priority::Notice,
        Priority::Warning,
        Priority::Error,
        Priority::Critical,
        Priority::Alert,
        Priority::Emergency,
    ];

    /// Falco's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Debug => "debug",
            Priority::Informational => "informational",
            Priority::Notice => "notice",
            Priority::Warning => "warning",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Alert => "alert",
            Priority::Emergency => "emergency",
        }
    }

    /// The four-level severity PagerDuty and most Alertmanager routes know.
    pub fn severity(self) -> &'static str {
        match self {
            Priority::Emergency | Priority::Alert | Priority::Critical => "critical",
            Priority::Error => "error",
            Priority::Warning => "warning",
            Priority::Notice | Priority::Informational | Priority::Debug => "info",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown priority {0:?} (priorities: emergency, alert, critical, error, warning, notice, informational, debug)"
)]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, as Falco reads rule files; `info` is Falco's alias of `informational`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "info" {
            return Ok(Priority::Informational);
        }
        Priority::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| UnknownPriority(s.to_owned()))
    }
}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event an alert rests on: enough to find its row in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// The table's name, e.g. `process_events`.
    pub table: String,
    pub time_ns: i64,
    pub pid: u32,
    pub tid: u32,
    /// The row's `event` column (`execve`, `openat`, ...).
    pub event: String,
}

/// Something sandwatch did about an alert (kill, freeze) and whether it worked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionTaken {
    pub action: String,
    pub at_ns: i64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// From the triggering event's kernel timestamp to the order given (detection to action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// An alert raised by a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per alert: hex time, then 64 random bits.
    pub id: String,
    /// Stable for "the same incident": deliveries of this alert, resent or grouped, carry it
    /// (PagerDuty `dedup_key`, an Alertmanager label, the webhook's `X-Sandwatch-Dedup-Key`).
    pub dedup_key: String,
    /// When the rule fired, ns since the Unix epoch, UTC.
    pub time_ns: i64,
    /// The same instant in RFC 3339 (UTC, nanoseconds).
    pub time: String,
    pub host: String,
    pub rule: String,
    pub priority: Priority,
    #[serde(default)]
    pub tags: Vec<String>,
    pub sandbox_id: Option<String>,
    /// The rule's output, rendered.
    pub output: String,
    /// What the rule asked for: `alert`, `kill`, `freeze`.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub actions_taken: Vec<ActionTaken>,
    #[serde(default)]
    pub evidence: Vec<EventRef>,
    /// The values of the fields the output names, and anything else worth carrying.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// How unusual, for a baseline's alert (higher: further from normal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl Alert {
    /// A new alert with a fresh id, its time rendered, and a dedup key derived from rule, sandbox
    /// and evidence (see [`Alert::dedup_key_for`]). Fill the other fields directly.
    pub fn new(
        time_ns: i64,
        host: impl Into<String>,
        rule: impl Into<String>,
        priority: Priority,
        sandbox_id: Option<String>,
        output: impl Into<String>,
        evidence: Vec<EventRef>,
    ) -> Alert {
        let rule = rule.into();
        let dedup_key = Alert::dedup_key_for(&rule, sandbox_id.as_deref(), &evidence);
        Alert {
            id: new_alert_id(time_ns),
            dedup_key,
            time_ns,
            time: rfc3339(time_ns),
            host: host.into(),
            rule,
            priority,
            tags: Vec::new(),
            sandbox_id,
            output: output.into(),
            actions: Vec::new(),
            actions_taken: Vec::new(),
            evidence,
            fields: BTreeMap::new(),
            score: None,
        }
    }

    /// The dedup key of an alert of `rule` in `sandbox_id` resting on `evidence`: 32 hex digits
    /// of SHA-256 over the rule, the sandbox and the first event's reference. Without evidence
    /// (a metrics rule) every alert of that rule in that sandbox is one incident.
    pub fn dedup_key_for(rule: &str, sandbox_id: Option<&str>, evidence: &[EventRef]) -> String {
        let mut h = Sha256::new();
        // Lengths first, so ("ab", "c") and ("a", "bc") differ.
        for part in [rule, sandbox_id.unwrap_or("")] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update([u8::from(sandbox_id.is_some())]);
        if let Some(e) = evidence.first() {
            h.update((e.table.len() as u64).to_le_bytes());
            h.update(e.table.as_bytes());
            h.update(e.time_ns.to_le_bytes());
            h.update(e.pid.to_le_bytes());
            h.update(e.tid.to_le_bytes());
        }
        hex(&h.finalize()[..16])
    }

    /// Fills what a caller building the struct by hand may have left empty: the id, the dedup
    /// key and the RFC 3339 time.
    pub fn complete(mut self) -> Alert {
        if self.id.is_empty() {
            self.id = new_alert_id(self.time_ns);
        }
        if self.dedup_key.is_empty() {
            self.dedup_key =
                Alert::dedup_key_for(&self.rule, self.sandbox_id.as_deref(), &self.evidence);
        }
        if self.time.is_empty() {
            self.time = rfc3339(self.time_ns);
        }
        self
    }

    /// The alert as one JSON line (no trailing newline), as `--alerts FILE` writes it.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an alert is plain data")
    }

    /// The text of the `alerts` row's JSON columns; borrow the row from it with [`Alert::row`].
    pub fn row_json(&self) -> AlertRowJson {
        AlertRowJson {
            evidence: serde_json::to_string(&self.evidence).expect("plain data"),
            actions_taken: serde_json::to_string(&self.actions_taken).expect("plain data"),
            fields: serde_json::to_string(&self.fields).expect("plain data"),
        }
    }

    /// The alert's `alerts` row.
    pub fn row<'a>(&'a self, json: &'a AlertRowJson) -> sandwatch_schema::AlertRow<'a> {
        sandwatch_schema::AlertRow {
            time_ns: self.time_ns,
            host: &self.host,
            alert_id: &self.id,
            dedup_key: &self.dedup_key,
            sandbox_id: self.sandbox_id.as_deref(),
            rule: &self.rule,
            priority: self.priority.name(),
            tags: &self.tags,
            output: &self.output,
            evidence: &json.evidence,
            actions: &self.actions,
            actions_taken: &json.actions_taken,
            fields: &json.fields,
            event: self
                .evidence
                .first()
                .map(|e| (e.table.as_str(), e.time_ns, e.pid, e.tid)),
            score: self.score,
        }
    }
}

/// The `alerts` columns that hold JSON text, rendered once per alert.
#[derive(Clone, Debug)]
pub struct AlertRowJson {
    pub evidence: String,
    pub actions_taken: String,
    pub fields: String,
}

/// A unique alert id: the time in hex (so ids sort by time) and 64 random bits.
pub fn new_alert_id(time_ns: i64) -> String {
    format!("{:016x}-{:016x}", time_ns.max(0), rand::random::<u64>())
}

/// `time_ns` as RFC 3339 in UTC with nanoseconds, e.g. `2024-05-01T12:00:00.000000001Z`.
pub fn rfc3339(time_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(time_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(pid: u32) -> Vec<EventRef> {
        vec![EventRef {
            table: "process_events".into(),
            time_ns: 1_700_000_000_000_000_000,
            pid,
            tid: pid,
            event: "execve".into(),
        }]
    }

    #[test]
    fn priorities_order_by_severity_and_parse_as_falco_writes_them() {
        assert!(Priority::Emergency > Priority::Critical);
        assert!(Priority::Warning > Priority::Notice);
        assert!(Priority::Debug < Priority::Informational);
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warning);
        assert_eq!("Info".parse::<Priority>().unwrap(), Priority::Informational);
        assert!("severe".parse::<Priority>().is_err());
        for p in Priority::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Priority>(&json).unwrap(), p);
        }
        let sev: Vec<&str> = Priority::ALL.iter().map(|p| p.severity()).collect();
        assert_eq!(
            sev,
            [
                "info", "info", "info", "warning", "error", "critical", "critical", "critical"
            ]
        );
    }

    #[test]
    fn dedup_keys_are_stable_and_tell_incidents_apart() {
        let a = Alert::dedup_key_for("R", Some("sb-1"), &evidence(10));
        assert_eq!(a, Alert::dedup_key_for("R", Some("sb-1"), &evidence(10)));
        assert_eq!(a.len(), 32);
        assert_ne!(a, Alert::dedup_key_for("R", Some("sb-2"), &evidence(10)));
        assert_ne!(a, Alert::dedup_key_for("R", Some("sb-1"), &evidence(11)));
        assert_ne!(a, Alert::dedup_key_for("R2", Some("sb-1"), &evidence(10)));
        assert_ne!(
            Alert::dedup_key_for("R", None, &[]),
            Alert::dedup_key_for("R", Some(""), &[])
        );
        let mut more = evidence(10);
        more.extend(evidence(99));
        assert_eq!(
            a,
            Alert::dedup_key_for("R", Some("sb-1"), &more),
            "only the first event counts"
        );
    }

    #[test]
    fn the_json_line_has_the_fields_the_alerts_file_promises() {
        let mut alert = Alert::new(
            1_700_000_000_123_456_789,
            "host-1",
            "Sandbox read of private key",
            Priority::Warning,
            Some("sb-1".into()),
            "private key read (file=/root/.ssh/id_rsa)",
            evidence(7),
        );
        alert.tags = vec!["filesystem".into(), "mitre_credential_access".into()];
        alert.actions = vec!["alert".into(), "kill".into()];
        let v: serde_json::Value = serde_json::from_str(&alert.to_json_line()).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["rule"], "Sandbox read of private key");
        assert_eq!(v["priority"], "warning");
        assert_eq!(v["tags"][1], "mitre_credential_access");
        assert_eq!(v["sandbox_id"], "sb-1");
        assert_eq!(v["output"], "private key read (file=/root/.ssh/id_rsa)");
        assert_eq!(v["actions"], serde_json::json!(["alert", "kill"]));
        assert_eq!(v["evidence"][0]["pid"], 7);
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, alert);
    }

    #[test]
    fn complete_fills_what_a_struct_literal_left_empty() {
        let alert = Alert {
            id: String::new(),
            dedup_key: String::new(),
            time_ns: 5,
            time: String::new(),
            host: "h".into(),
            rule: "R".into(),
            priority: Priority::Notice,
            tags: vec![],
            sandbox_id: None,
            output: "o".into(),
            actions: vec![],
            actions_taken: vec![],
            evidence: vec![],
            fields: BTreeMap::new(),
            score: None,
        }
        .complete();
        assert!(alert.id.starts_with("0000000000000005-"));
        assert_eq!(alert.dedup_key, Alert::dedup_key_for("R", None, &[]));
        assert_eq!(alert.time, "1970-01-01T00:00:00.000000005Z");
        let other = new_alert_id(5);
        assert_ne!(alert.id, other, "random part");
    }
}
