//! The statistical part of a baseline: feature vectors standardized against training, and one of
//! three models fitted with linfa, each giving a score where higher is further from normal:
//!
//! - `kmeans`: distance to the nearest of k centroids;
//! - `pca`: reconstruction error from the principal components that explain 90% of the variance;
//! - `gmm`: negative log-likelihood under a Gaussian mixture.
//!
//! Models are fitted with linfa and kept as plain numbers (centroids, components, means and
//! precisions), so a model file is readable JSON and scoring needs no linfa at run time. The
//! threshold is set from leave-one-out scores of the training windows: each window is scored by
//! a model fitted without it, which is how an unseen benign run scores.

use linfa::{DatasetBase, traits::Fit};
use linfa_clustering::{GaussianMixtureModel, KMeans};
use linfa_reduction::Pca;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::AnalyticsError;

/// Below this spread (in `ln(1 + n)` units) a feature is treated as this spread: a count that
/// never varied in training is not infinitely surprising when it moves by one.
const MIN_STD: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Kmeans,
    Pca,
    Gmm,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [ModelKind::Kmeans, ModelKind::Pca, ModelKind::Gmm];
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Kmeans => "kmeans",
            ModelKind::Pca => "pca",
            ModelKind::Gmm => "gmm",
        }
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("{s:?} is not a model (kmeans, pca, gmm)"))
    }
}

/// Standardization learned from training: per feature mean and spread.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Scaler {
    fn fit(x: &Array2<f64>) -> Self {
        let mean = x.mean_axis(Axis(0)).expect("at least one row");
        let std = x.std_axis(Axis(0), 0.0);
        Self {
            mean: mean.to_vec(),
            std: std.iter().map(|s| s.max(MIN_STD)).collect(),
        }
    }

    pub fn z(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(v, (m, s))| (v - m) / s)
            .collect()
    }
}

/// A fitted model's numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fitted {
    Kmeans {
        centroids: Vec<Vec<f64>>,
    },
    Pca {
        mean: Vec<f64>,
        /// Rows: orthonormal components.
        components: Vec<Vec<f64>>,
    },
    Gmm {
        weights: Vec<f64>,
        means: Vec<Vec<f64>>,
        precisions: Vec<Vec<Vec<f64>>>,
        /// ln det of each precision matrix.
        log_dets: Vec<f64>,
    },
}

/// A statistical model over standardized windows, with its threshold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowModel {
    pub scaler: Scaler,
    pub fitted: Fitted,
    /// A window scoring above this is an anomaly.
    pub threshold: f64,
    /// The leave-one-out scores' quantiles (p50, p90, max) the threshold came from.
    pub training_scores: [f64; 3],
}

/// How far above the highest leave-one-out training score a window must be.
const THRESHOLD_MARGIN: f64 = 1.25;

fn err(kind: ModelKind, e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Baseline(format!("fitting {}: {e}", kind.name()))
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let d = rows.first().map_or(0, Vec::len);
    Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j])
}

fn fit_on(kind: ModelKind, z: &Array2<f64>) -> Result<Fitted, AnalyticsError> {
    let n = z.nrows();
    let d = z.ncols();
    let ds = DatasetBase::from(z.clone());
    Ok(match kind {
        ModelKind::Kmeans => {
            let k = (n / 6).clamp(1, 4);
            let m = KMeans::params(k)
                .max_n_iterations(200)
                .tolerance(1e-6)
                .fit(&ds)
                .map_err(|e| err(kind, e))?;
            Fitted::Kmeans {
                centroids: m.centroids().outer_iter().map(|r| r.to_vec()).collect(),
            }
        }
        ModelKind::Pca => {
            let max_k = (n.saturating_sub(1)).min(d).clamp(1, 8);
            let full = Pca::params(max_k).fit(&ds).map_err(|e| err(kind, e))?;
            let ratios = full.explained_variance_ratio();
            let mut k = 0;
            let mut acc = 0.0;
            while k < ratios.len() && acc < 0.9 {
                acc += ratios[k];
                k += 1;
            }
            let k = k.max(1);
            let comps = full.components();
            Fitted::Pca {
                mean: full.mean().to_vec(),
                components: comps.outer_iter().take(k).map(|r| r.to_vec()).collect(),
            }
        }
        ModelKind::Gmm => {
            let k = if n >= 24 { 2 } else { 1 };
            let m = GaussianMixtureModel::params(k)
                .reg_covariance(0.1)
                .n_runs(2)
                .max_n_iterations(200)
                .fit(&ds)
                .map_err(|e| err(kind, e))?;
            let precisions: Vec<Vec<Vec<f64>>> = m
                .precisions()
                .outer_iter()
                .map(|p| p.outer_iter().map(|r| r.to_vec()).collect())
                .collect();
            let log_dets = precisions
                .iter()
                .map(|p| {
                    log_det(p)
                        .ok_or_else(|| err(kind, "a precision matrix is not positive definite"))
                })
                .collect::<Result<_, _>>()?;
            Fitted::Gmm {
                weights: m.weights().to_vec(),
                means: m.means().outer_iter().map(|r| r.to_vec()).collect(),
                precisions,
                log_dets,
            }
        }
    })
}

/// ln det of a symmetric positive definite matrix, by Cholesky.
fn log_det(a: &[Vec<f64>]) -> Option<f64> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    let mut sum = 0.0;
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                if v <= 0.0 {
                    return None;
                }
                l[i][j] = v.sqrt();
                sum += l[i][j].ln();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(2.0 * sum)
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Fitted {
    /// The score of a standardized vector: higher is further from normal.
    pub fn score(&self, z: &[f64]) -> f64 {
        match self {
            Fitted::Kmeans { centroids } => centroids
                .iter()
                .map(|c| sq_dist(z, c))
                .fold(f64::INFINITY, f64::min)
                .sqrt(),
            Fitted::Pca { mean, components } => {
                let centered: Vec<f64> = z.iter().zip(mean).map(|(v, m)| v - m).collect();
                let mut recon = vec![0.0; centered.len()];
                for c in components {
                    let p: f64 = centered.iter().zip(c).map(|(a, b)| a * b).sum();
                    for (r, ci) in recon.iter_mut().zip(c) {
                        *r += p * ci;
                    }
                }
                sq_dist(&centered, &recon).sqrt()
            }
            Fitted::Gmm {
                weights,
                means,
                precisions,
                log_dets,
            } => {
                let d = z.len() as f64;
                let terms: Vec<f64> = (0..weights.len())
                    .map(|k| {
                        let diff: Vec<f64> = z.iter().zip(&means[k]).map(|(a, b)| a - b).collect();
                        let maha: f64 = precisions[k]
                            .iter()
                            .zip(&diff)
                            .map(|(row, di)| {
                                di * row.iter().zip(&diff).map(|(p, dj)| p * dj).sum::<f64>()
                            })
                            .sum();
                        weights[k].max(1e-300).ln() + 0.5 * log_dets[k]
                            - 0.5 * d * (2.0 * std::f64::consts::PI).ln()
                            - 0.5 * maha
                    })
                    .collect();
                let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
                -lse
            }
        }
    }
}

impl WindowModel {
    /// Fits `kind` on training windows (raw feature vectors) and sets its threshold from
    /// leave-one-out scores.
    pub fn fit(kind: ModelKind, rows: &[Vec<f64>]) -> Result<Self, AnalyticsError> {
        if rows.len() < 3 {
            return Err(AnalyticsError::Baseline(format!(
                "{} training windows: at least 3 are needed",
                rows.len()
            )));
        }
        let x = matrix(rows);
        let scaler = Scaler::fit(&x);
        let z: Vec<Vec<f64>> = rows.iter().map(|r| scaler.z(r)).collect();
        let fitted = fit_on(kind, &matrix(&z))?;
        let mut loo = Vec::with_capacity(z.len());
        for i in 0..z.len() {
            let rest: Vec<Vec<f64>> = rows
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r.clone())
                .collect();
            let s = Scaler::fit(&matrix(&rest));
            let zr: Vec<Vec<f64>> = rest.iter().map(|r| s.z(r)).collect();
            let f = fit_on(kind, &matrix(&zr))?;
            loo.push(f.score(&s.z(&rows[i])));
        }
        loo.sort_by(f64::total_cmp);
        let q = |p: f64| loo[((loo.len() - 1) as f64 * p).round() as usize];
        let max = q(1.0);
        // The NLL of a good fit can be negative: the margin goes on the spread above the median.
        let threshold = q(0.5) + (max - q(0.5)).max(1.0) * THRESHOLD_MARGIN;
        Ok(Self {
            scaler,
            fitted,
            threshold,
            training_scores: [q(0.5), q(0.9), max],
        })
    }

    pub fn score(&self, raw: &[f64]) -> f64 {
        self.fitted.score(&self.scaler.z(raw))
    }

    /// The features furthest from their training mean, as (index, z-score), largest first.
    pub fn outliers(&self, raw: &[f64], n: usize) -> Vec<(usize, f64)> {
        let mut z: Vec<(usize, f64)> = self.scaler.z(raw).into_iter().enumerate().collect();
        z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        z.truncate(n);
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Training windows around a point, with a little spread in every feature.
    fn cloud(n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                (0..6)
                    .map(|j| 3.0 + (((i * 7 + j * 13) % 11) as f64 - 5.0) * 0.05)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_model_scores_an_outlier_above_its_threshold_and_training_below() {
        let train = cloud(20);
        for kind in ModelKind::ALL {
            let m = WindowModel::fit(kind, &train).unwrap();
            for r in &train {
                assert!(
                    m.score(r) <= m.threshold,
                    "{kind:?}: a training window is an anomaly"
                );
            }
            let mut odd = train[0].clone();
            odd[2] += 6.0; // ~400 times the count in one feature
            assert!(
                m.score(&odd) > m.threshold,
                "{kind:?}: {} <= {}",
                m.score(&odd),
                m.threshold
            );
            assert_eq!(m.outliers(&odd, 1)[0].0, 2);
        }
    }

    #[test]
    fn log_det_of_a_diagonal() {
        let a = vec![vec![2.0, 0.0], vec![0.0, 3.0]];
        assert!((log_det(&a).unwrap() - 6f64.ln()).abs() < 1e-12);
        assert!(log_det(&[vec![-1.0]]).is_none());
    }

    #[test]
    fn too_few_windows_is_an_error() {
        assert!(WindowModel::fit(ModelKind::Pca, &cloud(2)).is_err());
    }
}
