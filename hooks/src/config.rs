//! The hooks file: which on-call endpoints get which alerts, and how hard to try.
//!
//! ```yaml
//! hooks:
//!   - name: oncall-webhook
//!     type: webhook            # webhook | slack | pagerduty | alertmanager
//!     url: http://127.0.0.1:9000/alerts
//!     secret: s3cr3t           # webhook only: X-Sandwatch-Signature: sha256=<HMAC-SHA256 of the body>
//!     min_priority: warning
//!     rules: ["Sandbox *"]     # globs on rule names; any matches
//!     tags: [network]          # any tag matches
//!     group_window: 5s
//!     rate_limit: 30/min
//!     timeout: 5s
//!     retries: { max: 8, initial: 200ms, max_delay: 30s }
//! outbox: { max_pending: 10000, max_failed: 10000 }
//! ```
//!
//! Parsing is in two passes: serde reads the file's shape (syntax, types, unknown keys, with the
//! location `serde_yaml_ng` gives), then the values are checked (durations, priorities, URLs,
//! what each type needs) and an error is placed at the key's line, found in the text.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    path::Path,
    time::Duration,
};

use serde::Deserialize;

use crate::alert::{Alert, Priority};

/// PagerDuty's Events API v2 endpoint, the default `url` of a `pagerduty` hook.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A hooks file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// `key` is the dotted path of the offending value (`hooks[1].timeout`), empty for the file.
    #[error("{file}:{line}:{column}: {}{message}", key_prefix(.key))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// What a hook speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// The alert JSON (an array when the hook groups), optionally signed.
    Webhook { secret: Option<String> },
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty { routing_key: String },
    /// Alertmanager API v2 (`POST {url}/api/v2/alerts`).
    Alertmanager,
}

impl HookKind {
    /// The `type` as the file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            HookKind::Webhook { .. } => "webhook",
            HookKind::Slack => "slack",
            HookKind::PagerDuty { .. } => "pagerduty",
            HookKind::Alertmanager => "alertmanager",
        }
    }
}

/// At most `count` messages per `per`, in bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// How often and how patiently a failed delivery is retried: exponential back-off from
/// `initial`, doubling, capped at `max_delay`, with random jitter; `max` retries after the
/// first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max: u32,
    pub initial: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max: 8,
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// One on-call endpoint and which alerts it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct HookConfig {
    /// Unique in the file; the outbox files its deliveries under it, so keep it stable.
    pub name: String,
    pub kind: HookKind,
    pub url: String,
    /// Alerts below this priority are not sent (default: every priority).
    pub min_priority: Priority,
    /// Globs (`*`, `?`) on the rule's name; empty: every rule.
    pub rules: Vec<String>,
    /// An alert with any of these tags; empty: every alert.
    pub tags: Vec<String>,
    /// Alerts of the same rule in the same sandbox within this window go as one message
    /// (zero: no grouping).
    pub group_window: Duration,
    pub rate_limit: Option<RateLimit>,
    /// One attempt's limit, connection to end of answer.
    pub timeout: Duration,
    pub retries: RetryPolicy,
    /// Extra HTTP headers (e.g. `Authorization`) for webhook and Alertmanager hooks.
    pub headers: BTreeMap<String, String>,
}

impl HookConfig {
    /// Whether this hook takes `alert`: priority at least `min_priority`, a rule glob matching
    /// (if any are given) and a tag in common (if any are given).
    pub fn accepts(&self, alert: &Alert) -> bool {
        alert.priority >= self.min_priority
            && (self.rules.is_empty()
                || self
                    .rules
                    .iter()
                    .any(|g| wildmatch::WildMatch::new(g).matches(&alert.rule)))
            && (self.tags.is_empty() || alert.tags.iter().any(|t| self.tags.contains(t)))
    }
}

/// Bounds of the outbox (see `outbox.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Deliveries waiting at most; beyond, `send` refuses (loudly) rather than grow without end.
    pub max_pending: usize,
    /// Given-up deliveries kept for inspection; beyond, the oldest are removed with a warning.
    pub max_failed: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_pending: 10_000,
            max_failed: 10_000,
        }
    }
}

/// A whole hooks file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HooksConfig {
    pub hooks: Vec<HookConfig>,
    pub outbox: OutboxLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    hooks: Vec<RawHook>,
    #[serde(default)]
    outbox: Option<RawOutbox>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    max_pending: Option<usize>,
    max_failed: Option<usize>,
}

// Durations, priorities and limits are read as text here and checked in the second pass, so
// their errors can name the key and its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    secret: Option<String>,
    routing_key: Option<String>,
    min_priority: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    group_window: Option<String>,
    rate_limit: Option<String>,
    timeout: Option<String>,
    retries: Option<RawRetries>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetries {
    max: Option<u32>,
    initial: Option<String>,
    max_delay: Option<String>,
}

/// A value error of hook `index` at `key` (`timeout`, `retries.max`), before it is located.
struct Bad {
    index: Option<usize>,
    key: String,
    message: String,
}

fn bad(index: usize, key: &str, message: impl Into<String>) -> Bad {
    Bad {
        index: Some(index),
        key: key.to_owned(),
        message: message.into(),
    }
}

impl HooksConfig {
    /// Reads and checks a hooks file.
    pub fn load(path: impl AsRef<Path>) -> Result<HooksConfig, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        HooksConfig::from_yaml(&file, &text)
    }

    /// Checks hooks-file `text`; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<HooksConfig, ConfigError> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile {
                hooks: Vec::new(),
                outbox: None,
            }
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                let full = e.to_string();
                // serde_yaml_ng puts the path first and the location last; both have their own
                // place in ours.
                let message = full
                    .rsplit_once(" at line ")
                    .map_or(full.as_str(), |(m, _)| m);
                let (key, message) = match message.split_once(": ") {
                    Some((k, m)) if !k.contains(' ') => (k.to_owned(), m.to_owned()),
                    _ => (String::new(), message.to_owned()),
                };
                ConfigError::Invalid {
                    file: file.to_owned(),
                    line,
                    column,
                    key,
                    message,
                }
            })?
        };
        HooksConfig::check(raw).map_err(|b| {
            let (line, column) = locate(text, b.index, &b.key);
            let key = match b.index {
                Some(i) if b.key.is_empty() => format!("hooks[{i}]"),
                Some(i) => format!("hooks[{i}].{}", b.key),
                None => b.key,
            };
            ConfigError::Invalid {
                file: file.to_owned(),
                line,
                column,
                key,
                message: b.message,
            }
        })
    }

    fn check(raw: RawFile) -> Result<HooksConfig, Bad> {
        let mut hooks = Vec::with_capacity(raw.hooks.len());
        let mut names = HashSet::new();
        for (i, h) in raw.hooks.into_iter().enumerate() {
            let hook = check_hook(i, h)?;
            if !names.insert(hook.name.clone()) {
                return Err(bad(
                    i,
                    "name",
                    format!(
                        "a second hook named {:?}: give each hook its own name (the default is its type)",
                        hook.name
                    ),
                ));
            }
            hooks.push(hook);
        }
        let mut outbox = OutboxLimits::default();
        if let Some(o) = raw.outbox {
            for (key, value, slot) in [
                ("outbox.max_pending", o.max_pending, &mut outbox.max_pending),
                ("outbox.max_failed", o.max_failed, &mut outbox.max_failed),
            ] {
                match value {
                    Some(0) => {
                        return Err(Bad {
                            index: None,
                            key: key.to_owned(),
                            message: "must be at least 1".into(),
                        });
                    }
                    Some(n) => *slot = n,
                    None => {}
                }
            }
        }
        Ok(HooksConfig { hooks, outbox })
    }

    /// The hook named `name`.
    pub fn hook(&self, name: &str) -> Option<&HookConfig> {
        self.hooks.iter().find(|h| h.name == name)
    }
}

fn check_hook(i: usize, h: RawHook) -> Result<HookConfig, Bad> {
    let only = |key: &str, value: &Option<String>, kind: &str| -> Result<(), Bad> {
        match value {
            Some(_) => Err(bad(
                i,
                key,
                format!("`{key}` is for {kind} hooks, not {}", h.kind),
            )),
            None => Ok(()),
        }
    };
    let kind = match h.kind.as_str() {
        "webhook" => {
            only("routing_key", &h.routing_key, "pagerduty")?;
            HookKind::Webhook {
                secret: h.secret.clone(),
            }
        }
        "slack" | "alertmanager" => {
            only("secret", &h.secret, "webhook")?;
            only("routing_key", &h.routing_key, "pagerduty")?;
            if h.kind == "slack" {
                HookKind::Slack
            } else {
                HookKind::Alertmanager
            }
        }
        "pagerduty" => {
            only("secret", &h.secret, "webhook")?;
            match &h.routing_key {
                Some(k) if !k.trim().is_empty() => HookKind::PagerDuty {
                    routing_key: k.clone(),
                },
                _ => {
                    return Err(bad(
                        i,
                        "",
                        "a pagerduty hook needs `routing_key` (the integration key of an Events API v2 service)",
                    ));
                }
            }
        }
        other => {
            return Err(bad(
                i,
                "type",
                format!(
                    "unknown hook type {other:?} (types: webhook, slack, pagerduty, alertmanager)"
                ),
            ));
        }
    };
    if matches!(kind, HookKind::Slack | HookKind::PagerDuty { .. }) && !h.headers.is_empty() {
        return Err(bad(
            i,
            "headers",
            format!(
                "`headers` is for webhook and alertmanager hooks, not {}",
                kind.name()
            ),
        ));
    }
    let name = h.name.unwrap_or_else(|| kind.name().to_owned());
    if name.trim().is_empty() {
        return Err(bad(i, "name", "a hook's name cannot be empty"));
    }
    let url = match (h.url, &kind) {
        (Some(u), _) => u,
        (None, HookKind::PagerDuty { .. }) => PAGERDUTY_EVENTS_URL.to_owned(),
        (None, _) => {
            return Err(bad(i, "", format!("a {} hook needs `url`", kind.name())));
        }
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => {
            return Err(bad(
                i,
                "url",
                format!(
                    "{url:?}: an http or https URL with a host, not {}:",
                    u.scheme()
                ),
            ));
        }
        Err(e) => return Err(bad(i, "url", format!("{url:?}: {e}"))),
    }
    let min_priority = match h.min_priority {
        None => Priority::Debug,
        Some(p) => p
            .parse()
            .map_err(|e: crate::alert::UnknownPriority| bad(i, "min_priority", e.to_string()))?,
    };
    for (n, glob) in h.rules.iter().enumerate() {
        if glob.is_empty() {
            return Err(bad(
                i,
                &format!("rules[{n}]"),
                "an empty rule glob matches nothing",
            ));
        }
    }
    let duration = |key: &str, value: Option<String>, default: Duration| -> Result<Duration, Bad> {
        match value {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|m| bad(i, key, m)),
        }
    };
    let group_window = duration("group_window", h.group_window, Duration::ZERO)?;
    let timeout = duration("timeout", h.timeout, Duration::from_secs(5))?;
    if timeout.is_zero() {
        return Err(bad(i, "timeout", "must be above zero"));
    }
    let rate_limit = match h.rate_limit {
        None => None,
        Some(r) => Some(parse_rate_limit(&r).map_err(|m| bad(i, "rate_limit", m))?),
    };
    let mut retries = RetryPolicy::default();
    if let Some(r) = h.retries {
        if let Some(max) = r.max {
            retries.max = max;
        }
        retries.initial = duration("retries.initial", r.initial, retries.initial)?;
        retries.max_delay = duration("retries.max_delay", r.max_delay, retries.max_delay)?;
        if retries.initial.is_zero() {
            return Err(bad(i, "retries.initial", "must be above zero"));
        }
        if retries.max_delay < retries.initial {
            return Err(bad(
                i,
                "retries.max_delay",
                format!(
                    "{} is below retries.initial ({})",
                    humantime::format_duration(retries.max_delay),
                    humantime::format_duration(retries.initial)
                ),
            ));
        }
    }
    Ok(HookConfig {
        name,
        kind,
        url,
        min_priority,
        rules: h.rules,
        tags: h.tags,
        group_window,
        rate_limit,
        timeout,
        retries,
        headers: h.headers,
    })
}

/// `5s`, `200ms`, `1m 30s`, `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {text:?}: {e} (e.g. 5s, 200ms, 1m)"))
}

/// `30/min`, `2/s`, `5/10s`, `100/h`.
fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let fail =
        || format!("invalid rate limit {text:?}: give COUNT/PERIOD, e.g. 30/min, 2/s, 5/10s");
    let (count, per) = text.split_once('/').ok_or_else(fail)?;
    let count: u32 = count.trim().parse().map_err(|_| fail())?;
    let per = per.trim();
    let per = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => humantime::parse_duration(other).map_err(|_| fail())?,
    };
    if count == 0 || per.is_zero() {
        return Err(format!(
            "invalid rate limit {text:?}: count and period must be above zero"
        ));
    }
    Ok(RateLimit { count, per })
}

/// The 1-based line and column of `key` (`timeout`, `retries.max`, `rules[2]`; empty: the item
/// itself) in hook `index` of block-style or flow-style YAML `text`, or of a top-level dotted
/// key when `index` is None. Falls back to the nearest enclosing thing it finds.
fn locate(text: &str, index: Option<usize>, key: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let significant = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    let keys: Vec<&str> = key
        .split('.')
        .filter(|k| !k.is_empty())
        .map(|k| k.split('[').next().unwrap_or(k))
        .collect();
    // Where to search: the hook's lines, or the whole file.
    let (mut from, mut to) = (0, lines.len());
    let mut found = (1, 1);
    if let Some(index) = index {
        let Some(hooks) = lines.iter().position(|l| l.starts_with("hooks:")) else {
            return found;
        };
        found = (hooks + 1, 1);
        let end = (hooks + 1..lines.len())
            .find(|&i| significant(lines[i]) && indent(lines[i]) == 0 && !lines[i].starts_with('-'))
            .unwrap_or(lines.len());
        let items: Vec<usize> = (hooks + 1..end)
            .filter(|&i| lines[i].trim_start().starts_with('-'))
            .collect();
        // Items of the sequence sit at the first item's indent; deeper dashes are inner lists.
        let item_indent = items.first().map(|&i| indent(lines[i]));
        let items: Vec<usize> = items
            .into_iter()
            .filter(|&i| Some(indent(lines[i])) == item_indent)
            .collect();
        let Some(&start) = items.get(index) else {
            return found;
        };
        found = (start + 1, indent(lines[start]) + 1);
        from = start;
        to = items.get(index + 1).copied().unwrap_or(end);
    }
    for k in keys {
        let hit = (from..to).find_map(|i| find_key(lines[i], k).map(|col| (i, col)));
        let Some((i, col)) = hit else { break };
        found = (i + 1, col + 1);
        from = i;
    }
    found
}

/// The byte column of `key:` as a key in `line` (after start, `-`, `{`, `,` or a space).
fn find_key(line: &str, key: &str) -> Option<usize> {
    let pattern = format!("{key}:");
    let mut start = 0;
    while let Some(pos) = line[start..].find(&pattern) {
        let at = start + pos;
        let before = line[..at].trim_end().chars().last();
        let after = line[at + pattern.len()..].chars().next();
        if matches!(before, None | Some('-' | '{' | ',')) && matches!(after, None | Some(' ')) {
            return Some(at);
        }
        start = at + pattern.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
hooks:
  - name: oncall-webhook
    type: webhook
    url: http://127.0.0.1:9000/alerts
    secret: s3cr3t
    min_priority: warning
    rules: [\"Sandbox *\"]
    tags: [network]
    group_window: 5s
    rate_limit: 30/min
    timeout: 5s
    retries: { max: 8, initial: 200ms, max_delay: 30s }
  - { name: pd, type: pagerduty, routing_key: R0UT1NG, url: http://127.0.0.1:9001/v2/enqueue }
  - { name: am, type: alertmanager, url: http://127.0.0.1:9093 }
  - type: slack
    url: https://hooks.slack.com/services/T/B/X
";

    fn err(text: &str) -> String {
        HooksConfig::from_yaml("hooks.yaml", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_documented_example_loads_with_defaults_filled() {
        let c = HooksConfig::from_yaml("hooks.yaml", FULL).unwrap();
        let names: Vec<&str> = c.hooks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["oncall-webhook", "pd", "am", "slack"]);
        let w = &c.hooks[0];
        assert_eq!(
            w.kind,
            HookKind::Webhook {
                secret: Some("s3cr3t".into())
            }
        );
        assert_eq!(w.min_priority, Priority::Warning);
        assert_eq!(w.group_window, Duration::from_secs(5));
        assert_eq!(
            w.rate_limit,
            Some(RateLimit {
                count: 30,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(w.retries, RetryPolicy::default());
        let pd = &c.hooks[1];
        assert_eq!(
            pd.kind,
            HookKind::PagerDuty {
                routing_key: "R0UT1NG".into()
            }
        );
        assert_eq!(pd.min_priority, Priority::Debug, "default: every priority");
        assert_eq!(pd.timeout, Duration::from_secs(5));
        assert_eq!(pd.group_window, Duration::ZERO);
        assert_eq!(pd.rate_limit, None);
        assert_eq!(c.outbox, OutboxLimits::default());
        let pd_default = HooksConfig::from_yaml(
            "h.yaml",
            "hooks:\n  - { type: pagerduty, routing_key: K }\n",
        )
        .unwrap();
        assert_eq!(pd_default.hooks[0].url, PAGERDUTY_EVENTS_URL);
        assert!(
            HooksConfig::from_yaml("h.yaml", "")
                .unwrap()
                .hooks
                .is_empty()
        );
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        assert_eq!(
            err(&FULL.replace("timeout: 5s", "timeout: 5 parsecs")),
            "hooks.yaml:11:5: hooks[0].timeout: invalid duration \"5 parsecs\": unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations) (e.g. 5s, 200ms, 1m)"
        );
        assert_eq!(
            err(&FULL.replace("min_priority: warning", "min_priority: severe")),
            "hooks.yaml:6:5: hooks[0].min_priority: unknown priority \"severe\" (priorities: emergency, alert, critical, error, warning, notice, informational, debug)"
        );
        assert_eq!(
            err(&FULL.replace("max_delay: 30s", "max_delay: 30q"))
                .split(": invalid")
                .next(),
            Some("hooks.yaml:12:40: hooks[0].retries.max_delay")
        );
        assert_eq!(
            err(&FULL.replace("routing_key: R0UT1NG, ", "")),
            "hooks.yaml:13:3: hooks[1]: a pagerduty hook needs `routing_key` (the integration key of an Events API v2 service)"
        );
        assert_eq!(
            err(&FULL.replace("type: alertmanager", "type: opsgenie")),
            "hooks.yaml:14:17: hooks[2].type: unknown hook type \"opsgenie\" (types: webhook, slack, pagerduty, alertmanager)"
        );
        assert_eq!(
            err(&FULL.replace("rate_limit: 30/min", "rate_limit: lots"))
                .split(": invalid")
                .next(),
            Some("hooks.yaml:10:5: hooks[0].rate_limit")
        );
        // Shape errors come from serde_yaml_ng with its own location.
        assert_eq!(
            err(&FULL.replace("    secret: s3cr3t", "    secret: s3cr3t\n    colour: red")),
            "hooks.yaml:6:5: hooks[0]: unknown field `colour`, expected one of `name`, `type`, `url`, `secret`, `routing_key`, `min_priority`, `rules`, `tags`, `group_window`, `rate_limit`, `timeout`, `retries`, `headers`"
        );
        assert_eq!(
            err(&FULL.replace("max: 8", "max: -1")),
            "hooks.yaml:12:21: hooks[0].retries.max: invalid type: integer `-1`, expected u32"
        );
        assert_eq!(
            err("hooks:\n  - type: webhook\n"),
            "hooks.yaml:2:3: hooks[0]: a webhook hook needs `url`"
        );
        assert!(
            err("hooks: [\n").starts_with("hooks.yaml:2:1: did not find expected node content"),
            "{}",
            err("hooks: [\n")
        );
        assert_eq!(
            err("hooks:\n  - { type: slack, url: \"http://x\", secret: s }\n"),
            "hooks.yaml:2:37: hooks[0].secret: `secret` is for webhook hooks, not slack"
        );
        assert_eq!(
            err(
                "hooks:\n  - { type: slack, url: \"http://x\" }\n  - { type: slack, url: \"http://y\" }\n"
            ),
            "hooks.yaml:3:3: hooks[1].name: a second hook named \"slack\": give each hook its own name (the default is its type)"
        );
        assert_eq!(
            err("hooks:\n  - { type: webhook, url: \"ftp://x/y\" }\n"),
            "hooks.yaml:2:22: hooks[0].url: \"ftp://x/y\": an http or https URL with a host, not ftp:"
        );
        assert_eq!(
            err("hooks: []\noutbox:\n  max_pending: 0\n"),
            "hooks.yaml:3:3: outbox.max_pending: must be at least 1"
        );
    }

    #[test]
    fn filters_take_priority_rule_globs_and_tags() {
        let c = HooksConfig::from_yaml("hooks.yaml", FULL).unwrap();
        let w = &c.hooks[0];
        let mut alert = Alert::new(
            1,
            "h",
            "Sandbox shell connected out",
            Priority::Critical,
            Some("sb".into()),
            "o",
            vec![],
        );
        alert.tags = vec!["process".into(), "network".into()];
        assert!(w.accepts(&alert));
        let low = Alert {
            priority: Priority::Notice,
            ..alert.clone()
        };
        assert!(!w.accepts(&low), "below min_priority");
        let other_rule = Alert {
            rule: "Terminal shell in container".into(),
            ..alert.clone()
        };
        assert!(!w.accepts(&other_rule), "rule glob");
        let other_tags = Alert {
            tags: vec!["filesystem".into()],
            ..alert.clone()
        };
        assert!(!w.accepts(&other_tags), "no tag in common");
        assert!(c.hooks[1].accepts(&low), "no filters: everything");
    }

    #[test]
    fn rate_limits_and_durations_parse() {
        let r = |t: &str| parse_rate_limit(t).unwrap();
        assert_eq!(r("2/s").per, Duration::from_secs(1));
        assert_eq!(
            r("5/10s"),
            RateLimit {
                count: 5,
                per: Duration::from_secs(10)
            }
        );
        assert_eq!(r("100/h").per, Duration::from_secs(3600));
        assert!(parse_rate_limit("0/s").is_err());
        assert!(parse_rate_limit("5").is_err());
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
    }
}
