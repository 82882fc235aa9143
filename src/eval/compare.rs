//! Two saved reports side by side: every metric both have, and what differs between their
//! setups (model, library, options) in words.

use serde::{Deserialize, Serialize};

use super::{EvalReport, QuerySet, System};

/// One metric of two reports side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Query set.
    pub set: QuerySet,
    /// System.
    pub system: System,
    /// Metric name (`nDCG@10`, ...).
    pub metric: String,
    /// In the first report.
    pub a: f64,
    /// In the second report.
    pub b: f64,
}

/// Every metric both reports have, with what differs between their setups (model, library,
/// options) in words.
pub fn compare(a: &EvalReport, b: &EvalReport) -> (Vec<Difference>, Vec<String>) {
    let mut notes = Vec::new();
    let model = |r: &EvalReport| {
        r.model
            .as_ref()
            .map_or("none (keyword only)".to_owned(), |m| {
                format!("{} {}", m.model_id, m.fingerprint())
            })
    };
    if a.model != b.model {
        notes.push(format!("model: {} -> {}", model(a), model(b)));
    }
    if a.untrained.is_some() != b.untrained.is_some() {
        let said = |r: &EvalReport| {
            if r.untrained.is_some() {
                "untrained"
            } else {
                "trained"
            }
        };
        notes.push(format!(
            "the model says it is {} -> {} (an untrained model's lists take no part in the hybrid)",
            said(a),
            said(b)
        ));
    }
    if a.library.ids_sha256 != b.library.ids_sha256 {
        notes.push(format!(
            "records: {} -> {} (a different set of records)",
            a.library.records, b.library.records
        ));
    }
    if a.options != b.options {
        notes.push(format!(
            "options: {} -> {}",
            serde_json::to_string(&a.options).unwrap_or_default(),
            serde_json::to_string(&b.options).unwrap_or_default()
        ));
    }
    let mut rows = Vec::new();
    for sa in &a.sets {
        let Some(sb) = b.sets.iter().find(|s| s.set == sa.set) else {
            continue;
        };
        for xa in &sa.systems {
            let Some(xb) = sb.systems.iter().find(|x| x.system == xa.system) else {
                continue;
            };
            for ((metric, va), (_, vb)) in xa.scores.named().into_iter().zip(xb.scores.named()) {
                rows.push(Difference {
                    set: sa.set,
                    system: xa.system,
                    metric: metric.to_owned(),
                    a: va,
                    b: vb,
                });
            }
        }
    }
    (rows, notes)
}
