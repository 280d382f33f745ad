//! Benchmarks (`cargo xtask bench ...`).

use clap::Subcommand;

#[derive(Subcommand, Clone, Copy, Debug)]
pub enum Suite {
    /// Probe overhead on watched and unwatched workloads, and the highest loss-free event rate.
    Probes,
}

pub fn run(suite: Suite) -> anyhow::Result<()> {
    match suite {
        Suite::Probes => anyhow::bail!("bench probes: not written yet"),
    }
}
