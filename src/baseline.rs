//! `sandwatch baseline train|score|list`: learn a job profile's normal behaviour from the audit
//! log, and explain how a finished sandbox compares.

use std::{io::Write as _, path::PathBuf};

use anyhow::anyhow;
use sandwatch_analytics::{
    AnalyticsError, QueryLimits, SqlSession,
    baseline::{self, AnomalyKind, TrainOptions, model::ModelKind, store::ModelStore},
};

use crate::cli::{EXIT_USAGE, Failure};

#[derive(clap::Subcommand, Debug)]
pub enum BaselineCommand {
    /// Learn a profile's baseline from its past sandboxes and save it as the profile's next
    /// model version.
    Train {
        /// The job profile (a policy's `profile:`).
        #[arg(long, value_name = "NAME")]
        profile: String,
        #[command(flatten)]
        common: Common,
        /// Learn only from sandboxes created at or after this time (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// The statistical model: pca, kmeans or gmm (see docs/architecture.md, Baselines).
        #[arg(long, value_name = "KIND", default_value = baseline::DEFAULT_MODEL.name())]
        model: ModelKind,
        /// Window of the per-sandbox feature vectors, e.g. 10s.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_window)]
        window: i64,
    },
    /// Score a finished sandbox against its profile's baseline and say why.
    Score {
        #[arg(long, value_name = "NAME")]
        profile: String,
        #[arg(long, value_name = "ID")]
        sandbox: String,
        /// A model version other than the newest.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Print the score as JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The profiles with a model, and what each learned from.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args, Debug)]
pub struct Common {
    /// The audit log (`run --data`).
    #[arg(long, value_name = "DIR", default_value = "./sandwatch-data")]
    pub data: PathBuf,
    /// Where models are kept (default: `<data>/baselines`).
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
}

impl Common {
    fn store(&self) -> ModelStore {
        match &self.models {
            Some(d) => ModelStore::new(d.clone()),
            None => ModelStore::for_audit_log(&self.data),
        }
    }
}

fn parse_window(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e})"))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("{s} is too long"))?;
    if ms < 100 {
        return Err(format!("{s}: a window is at least 100ms"));
    }
    Ok(ms)
}

fn failure(e: AnalyticsError) -> Failure {
    let code = match e {
        AnalyticsError::Io { .. } => 1,
        _ => EXIT_USAGE,
    };
    Failure {
        code,
        error: anyhow!(e),
    }
}

async fn session(common: &Common) -> Result<SqlSession, Failure> {
    SqlSession::open(&common.data, QueryLimits::default())
        .await
        .map_err(failure)
}

pub async fn baseline(cmd: BaselineCommand) -> Result<u8, Failure> {
    match cmd {
        BaselineCommand::Train {
            profile,
            common,
            since,
            model,
            window,
        } => {
            let s = session(&common).await?;
            eprintln!(
                "sandwatch: learning profile {profile} from {}",
                common.data.display()
            );
            let options = TrainOptions {
                profile,
                since,
                kind: model,
                window_ms: window,
            };
            let mut m = baseline::train(&s, &options).await.map_err(failure)?;
            let path = common.store().save(&mut m).map_err(failure)?;
            let terms: usize = m.terms.values().map(|t| t.len()).sum();
            println!(
                "profile {} v{}: {} sandboxes, {} windows ({} to {}), {terms} terms, {} model over {} features, threshold {:.3}",
                m.profile,
                m.version,
                m.data.sandboxes,
                m.data.windows,
                m.data.from,
                m.data.to,
                m.model_kind.name(),
                m.features.len(),
                m.model.threshold
            );
            println!("saved {}", path.display());
            Ok(0)
        }
        BaselineCommand::Score {
            profile,
            sandbox,
            version,
            json,
            common,
        } => {
            let store = common.store();
            let model = match version {
                Some(v) => store.version(&profile, v).map_err(failure)?,
                None => store.latest(&profile).map_err(failure)?.ok_or_else(|| Failure {
                    code: EXIT_USAGE,
                    error: anyhow!(
                        "profile {profile} has no model in {} (sandwatch baseline train --profile {profile})",
                        store.dir().display()
                    ),
                })?,
            };
            let s = session(&common).await?;
            let score = baseline::explain(&s, &model, &sandbox)
                .await
                .map_err(failure)?;
            let mut out = std::io::stdout().lock();
            if json {
                let text = serde_json::to_string_pretty(&score).map_err(|e| Failure {
                    code: 1,
                    error: anyhow!("encoding the score: {e}"),
                })?;
                let _ = writeln!(out, "{text}");
            } else {
                let _ = writeln!(
                    out,
                    "sandbox {} against profile {} v{} ({} model, trained on {} sandboxes from {} to {}): {} (score {:.2})",
                    score.sandbox_id,
                    model.profile,
                    model.version,
                    model.model_kind.name(),
                    model.data.sandboxes,
                    model.data.from,
                    model.data.to,
                    if score.anomalous() {
                        "ANOMALOUS"
                    } else {
                        "normal"
                    },
                    score.score()
                );
                for a in &score.new_terms {
                    if let AnomalyKind::NewTerm { .. } = a.kind {
                        let _ = writeln!(
                            out,
                            "  new term: {} (score {:.2})",
                            a.reason(&model),
                            a.score
                        );
                    }
                }
                for w in &score.windows {
                    let _ = writeln!(
                        out,
                        "  window {}: score {:.2} vs threshold {:.2}{}",
                        w.window,
                        w.score,
                        w.threshold,
                        if w.anomalous { "  ANOMALOUS" } else { "" }
                    );
                    for d in &w.deviations {
                        let _ = writeln!(
                            out,
                            "    {:<28} {:>10.0}  normal {:>8.0}  {:+.1}σ",
                            d.feature, d.count, d.normal, d.z
                        );
                    }
                }
            }
            // Like grep: 1 when the sandbox is anomalous, so scripts can branch on it.
            Ok(u8::from(score.anomalous()))
        }
        BaselineCommand::List { common } => {
            let store = common.store();
            let profiles = store.profiles();
            if profiles.is_empty() {
                println!("no baseline models in {}", store.dir().display());
            }
            for p in profiles {
                match store.latest(&p).map_err(failure)? {
                    Some(m) => println!(
                        "{p}: v{} {} model, {} sandboxes, {} windows, {} to {}, trained {}",
                        m.version,
                        m.model_kind.name(),
                        m.data.sandboxes,
                        m.data.windows,
                        m.data.from,
                        m.data.to,
                        m.trained_at
                    ),
                    None => println!("{p}: no model"),
                }
            }
            Ok(0)
        }
    }
}
