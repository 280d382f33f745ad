//! Windowed thresholds: a rule with `threshold:` fires when its condition matched more than
//! `count` times (or on more than `count` distinct values) within `window`, per key. After
//! firing, a key stays quiet until its window has passed, so that a burst raises one alert, not
//! one per event above the line.

use std::{collections::VecDeque, time::Duration};

use arrow_array::TimestampNanosecondArray;

use crate::engine::{EngineState, FastMap, Selection, columns::BatchColumns, compile::FieldSlot};

#[derive(Default)]
pub struct WindowState {
    keys: FastMap<String, KeyWindow>,
}

#[derive(Default)]
struct KeyWindow {
    /// Match times in the window, oldest first (count thresholds).
    times: VecDeque<i64>,
    /// Distinct value → last time seen (distinct thresholds).
    values: FastMap<String, i64>,
    /// No new alert for this key before this time.
    quiet_until: i64,
}

/// Keys are trimmed when more than this many are live: a rule keyed by an attacker-chosen value
/// must not grow without bound.
const MAX_KEYS: usize = 1 << 16;

impl WindowState {
    /// The rows of `hits` (ascending, all matching the condition) at which the threshold is
    /// crossed.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &mut self,
        hits: &Selection,
        count: u64,
        window: Duration,
        by: &[usize],
        distinct: Option<usize>,
        cols: &mut BatchColumns<'_>,
        slots: &[FieldSlot],
        state: &EngineState,
    ) -> Selection {
        let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        let key_cols: Vec<_> = by
            .iter()
            .map(|s| cols.get(&slots[*s].field, &slots[*s].key, state))
            .collect();
        let distinct_col = distinct.map(|s| cols.get(&slots[s].field, &slots[s].key, state));
        // Every table the rules read has a `time` column (timestamp, ns).
        let times = cols
            .batch
            .column_by_name("time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
        if self.keys.len() > MAX_KEYS {
            self.keys.clear();
        }
        let mut fired = Vec::new();
        for &row in hits {
            let r = row as usize;
            let now = times.map_or(0, |t| t.value(r));
            let key: String = key_cols
                .iter()
                .map(|c| c.display(r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\u{1f}");
            let w = self.keys.entry(key).or_default();
            let horizon = now.saturating_sub(window_ns);
            let seen = match &distinct_col {
                None => {
                    while w.times.front().is_some_and(|t| *t <= horizon) {
                        w.times.pop_front();
                    }
                    w.times.push_back(now);
                    w.times.len() as u64
                }
                Some(c) => {
                    let Some(v) = c.display(r) else { continue };
                    w.values.retain(|_, t| *t > horizon);
                    w.values.insert(v, now);
                    w.values.len() as u64
                }
            };
            if seen > count && now >= w.quiet_until {
                fired.push(row);
                w.quiet_until = now.saturating_add(window_ns);
            }
        }
        fired
    }
}
