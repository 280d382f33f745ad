//! What each hook type receives: the HTTP request (URL, headers, JSON body) for a message of one
//! or more alerts. Pure functions of the hook's configuration and the alerts.

use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    alert::{Alert, hex},
    config::{HookConfig, HookKind},
};

/// Header carrying the dedup keys of the alerts in a webhook message (comma-separated).
pub const DEDUP_KEY_HEADER: &str = "X-Sandwatch-Dedup-Key";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` when the webhook has a secret.
pub const SIGNATURE_HEADER: &str = "X-Sandwatch-Signature";
/// Header carrying the alert ids of a webhook message (comma-separated).
pub const ALERT_ID_HEADER: &str = "X-Sandwatch-Alert-Id";

/// Slack shows at most 50 blocks; a grouped message lists this many alerts and counts the rest.
const SLACK_MAX_LISTED: usize = 10;
/// Slack's limit on a section's text is 3000 characters.
const SLACK_MAX_TEXT: usize = 2900;
/// PagerDuty's limit on `summary`.
const PAGERDUTY_MAX_SUMMARY: usize = 1024;

/// One HTTP POST to make.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The request that delivers `alerts` (one message: one alert, or one group) to `hook`. A
/// PagerDuty message carries one dedup key; the dispatcher splits groups accordingly.
pub fn render(hook: &HookConfig, alerts: &[&Alert]) -> HttpRequest {
    assert!(!alerts.is_empty(), "a message has at least one alert");
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let (url, body) = match &hook.kind {
        HookKind::Webhook { secret } => {
            let body = if hook.group_window.is_zero() {
                serde_json::to_vec(alerts[0])
            } else {
                // A grouping hook always sends an array, so receivers parse one shape.
                serde_json::to_vec(alerts)
            }
            .expect("alerts are plain data");
            headers.push((
                DEDUP_KEY_HEADER.to_owned(),
                joined(alerts, |a| &a.dedup_key),
            ));
            headers.push((ALERT_ID_HEADER.to_owned(), joined(alerts, |a| &a.id)));
            if let Some(secret) = secret {
                headers.push((
                    SIGNATURE_HEADER.to_owned(),
                    format!("sha256={}", sign(secret.as_bytes(), &body)),
                ));
            }
            (hook.url.clone(), body)
        }
        HookKind::Slack => (hook.url.clone(), to_vec(&slack(alerts))),
        HookKind::PagerDuty { routing_key } => {
            (hook.url.clone(), to_vec(&pagerduty(routing_key, alerts)))
        }
        HookKind::Alertmanager => (alertmanager_url(&hook.url), to_vec(&alertmanager(alerts))),
    };
    for (k, v) in &hook.headers {
        headers.push((k.clone(), v.clone()));
    }
    HttpRequest { url, headers, body }
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialize")
}

/// The distinct values of `f` over `alerts`, in order, comma-separated.
fn joined(alerts: &[&Alert], f: impl Fn(&Alert) -> &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for a in alerts {
        let v = f(a);
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(",")
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// `{base}/api/v2/alerts`, unless the URL already names the endpoint.
pub fn alertmanager_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_owned()
    } else {
        format!("{base}/api/v2/alerts")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn actions_text(a: &Alert) -> String {
    if a.actions_taken.is_empty() {
        return if a.actions.is_empty() {
            "alert".to_owned()
        } else {
            a.actions.join(", ")
        };
    }
    a.actions_taken
        .iter()
        .map(|t| {
            let how = if t.ok { "done" } else { "FAILED" };
            match &t.detail {
                Some(d) => format!("{} {how} ({d})", t.action),
                None => format!("{} {how}", t.action),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sandbox_text(a: &Alert) -> &str {
    a.sandbox_id.as_deref().unwrap_or("(host)")
}

/// A Slack incoming-webhook message: `text` for notifications, `blocks` for the channel.
pub fn slack(alerts: &[&Alert]) -> Value {
    let first = alerts[0];
    let headline = format!(
        "[{}] {} in sandbox {}",
        first.priority.name().to_uppercase(),
        first.rule,
        sandbox_text(first)
    );
    let text = if alerts.len() == 1 {
        format!("{headline}: {}", first.output)
    } else {
        format!("{} alerts: {headline}", alerts.len())
    };
    let mut blocks = vec![
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*{}*", slack_escape(&first.rule)), SLACK_MAX_TEXT)},
        }),
        json!({
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": format!("*Priority*\n{}", first.priority.name())},
                {"type": "mrkdwn", "text": format!("*Sandbox*\n{}", slack_escape(sandbox_text(first)))},
                {"type": "mrkdwn", "text": format!("*Host*\n{}", slack_escape(&first.host))},
                {"type": "mrkdwn", "text": format!("*Actions*\n{}", slack_escape(&actions_text(first)))},
            ],
        }),
    ];
    for a in alerts.iter().take(SLACK_MAX_LISTED) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("`{}` {}", a.time, slack_escape(&a.output)), SLACK_MAX_TEXT)},
        }));
    }
    let mut context = format!(
        "tags: {} · dedup key: {}",
        if first.tags.is_empty() {
            "none".to_owned()
        } else {
            first.tags.join(", ")
        },
        joined(alerts, |a| &a.dedup_key)
    );
    if alerts.len() > SLACK_MAX_LISTED {
        context = format!("and {} more · {context}", alerts.len() - SLACK_MAX_LISTED);
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(&slack_escape(&context), SLACK_MAX_TEXT)}],
    }));
    json!({"text": text, "blocks": blocks})
}

/// A PagerDuty Events API v2 trigger. The alerts share one dedup key; the first speaks for them.
pub fn pagerduty(routing_key: &str, alerts: &[&Alert]) -> Value {
    let a = alerts[0];
    let mut details = json!({
        "rule": a.rule,
        "priority": a.priority.name(),
        "output": a.output,
        "tags": a.tags,
        "sandbox_id": a.sandbox_id,
        "actions": a.actions,
        "actions_taken": a.actions_taken,
        "evidence": a.evidence,
        "fields": a.fields,
        "alert_id": a.id,
    });
    if alerts.len() > 1 {
        details["grouped_alert_ids"] = json!(alerts.iter().map(|a| &a.id).collect::<Vec<_>>());
    }
    let mut payload = json!({
        "summary": truncate(&format!("{}: {}", a.rule, a.output), PAGERDUTY_MAX_SUMMARY),
        "source": a.host,
        "severity": a.priority.severity(),
        "timestamp": a.time,
        "group": a.rule,
        "custom_details": details,
    });
    if let Some(sandbox) = &a.sandbox_id {
        payload["component"] = json!(sandbox);
    }
    if !a.tags.is_empty() {
        payload["class"] = json!(a.tags.join(","));
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": a.dedup_key,
        "client": "sandwatch",
        "payload": payload,
    })
}

/// Alertmanager API v2 postable alerts: one per alert.
pub fn alertmanager(alerts: &[&Alert]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let mut labels = json!({
                    "alertname": a.rule,
                    "rule": a.rule,
                    "priority": a.priority.name(),
                    "severity": a.priority.severity(),
                    "host": a.host,
                    "dedup_key": a.dedup_key,
                    "source": "sandwatch",
                });
                // An empty label value is the label's absence to Alertmanager: leave it out.
                if let Some(sandbox) = a.sandbox_id.as_deref().filter(|s| !s.is_empty()) {
                    labels["sandbox_id"] = json!(sandbox);
                }
                let mut description = format!(
                    "rule: {}\npriority: {}\nsandbox: {}\nhost: {}\nactions: {}",
                    a.rule,
                    a.priority.name(),
                    sandbox_text(a),
                    a.host,
                    actions_text(a)
                );
                if !a.tags.is_empty() {
                    description.push_str(&format!("\ntags: {}", a.tags.join(", ")));
                }
                for e in &a.evidence {
                    description.push_str(&format!(
                        "\nevidence: {} {} pid {} tid {} at {}",
                        e.table,
                        e.event,
                        e.pid,
                        e.tid,
                        crate::alert::rfc3339(e.time_ns)
                    ));
                }
                json!({
                    "labels": labels,
                    "annotations": {
                        "summary": a.output,
                        "description": description,
                        "alert_id": a.id,
                    },
                    "startsAt": a.time,
                    "generatorURL": format!("sandwatch://{}/alerts/{}", a.host, a.id),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alert::{ActionTaken, EventRef, Priority},
        config::HooksConfig,
    };

    fn alert(priority: Priority) -> Alert {
        let mut a = Alert::new(
            1_700_000_000_000_000_000,
            "host-1",
            "Sandbox shell connected out",
            priority,
            Some("sb-1".into()),
            "shell sh connected to 10.0.0.1:4444 <evil>",
            vec![EventRef {
                table: "network_events".into(),
                time_ns: 1_700_000_000_000_000_000,
                pid: 42,
                tid: 42,
                event: "connect".into(),
            }],
        );
        a.tags = vec!["network".into()];
        a.actions = vec!["alert".into(), "kill".into()];
        a.actions_taken = vec![ActionTaken {
            action: "kill".into(),
            at_ns: 1_700_000_000_001_000_000,
            ok: true,
            detail: None,
            latency_ms: None,
        }];
        a
    }

    fn hook(yaml: &str) -> HookConfig {
        HooksConfig::from_yaml("h.yaml", yaml)
            .unwrap()
            .hooks
            .remove(0)
    }

    #[test]
    fn pagerduty_severity_follows_the_mapping() {
        for (p, want) in [
            (Priority::Emergency, "critical"),
            (Priority::Alert, "critical"),
            (Priority::Critical, "critical"),
            (Priority::Error, "error"),
            (Priority::Warning, "warning"),
            (Priority::Notice, "info"),
            (Priority::Informational, "info"),
            (Priority::Debug, "info"),
        ] {
            let a = alert(p);
            let v = pagerduty("KEY", &[&a]);
            assert_eq!(v["payload"]["severity"], want, "{p}");
            assert_eq!(v["dedup_key"], a.dedup_key);
            assert_eq!(v["payload"]["component"], "sb-1");
        }
    }

    #[test]
    fn webhook_signs_the_exact_body_and_groups_as_an_array() {
        let a = alert(Priority::Critical);
        let single = render(
            &hook("hooks:\n  - { type: webhook, url: \"http://127.0.0.1:1/x\", secret: k }\n"),
            &[&a],
        );
        let header = |r: &HttpRequest, name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header(&single, SIGNATURE_HEADER).unwrap(),
            format!("sha256={}", sign(b"k", &single.body))
        );
        assert_eq!(header(&single, DEDUP_KEY_HEADER).unwrap(), a.dedup_key);
        let v: Value = serde_json::from_slice(&single.body).unwrap();
        assert_eq!(v["dedup_key"], a.dedup_key);
        let grouped = render(
            &hook(
                "hooks:\n  - { type: webhook, url: \"http://127.0.0.1:1/x\", group_window: 1s }\n",
            ),
            &[&a],
        );
        let v: Value = serde_json::from_slice(&grouped.body).unwrap();
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(1),
            "grouping hooks send arrays"
        );
        assert!(header(&grouped, SIGNATURE_HEADER).is_none());
    }

    #[test]
    fn slack_escapes_and_bounds_what_it_lists() {
        let a = alert(Priority::Warning);
        let many: Vec<Alert> = (0..12).map(|_| a.clone()).collect();
        let refs: Vec<&Alert> = many.iter().collect();
        let v = slack(&refs);
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("12 alerts: [WARNING]")
        );
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2 + SLACK_MAX_LISTED + 1);
        let listed = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(listed.contains("&lt;evil&gt;"), "{listed}");
        let context = blocks.last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(context.starts_with("and 2 more"), "{context}");
    }

    #[test]
    fn alertmanager_url_is_the_v2_endpoint() {
        assert_eq!(
            alertmanager_url("http://am:9093"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alertmanager_url("http://am:9093/"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alertmanager_url("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
        );
    }
}
