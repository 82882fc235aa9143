//! Retention schedules and legal holds: which records are due for disposal, and when.
//!
//! Owns `<data-dir>/retention.json` (atomic writes under one lock). A schedule is per dataset:
//! dispose of a record a number of days after it was ingested, and/or a number of days after a
//! "no longer in use" date set for the dataset. A legal hold on a record or a whole dataset
//! keeps it whatever its schedule says. [`Retention::due`] only plans; deleting is the caller's
//! job (see [`crate::deletion`]), so a dry run and a real run see the same plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use indexer::Library;
use indexer::filter::{DateRange, RecordFilter};
use indexer::record::DateAxis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// When records of one dataset are disposed of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Dispose of a record this many days after it was ingested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_ingest_days: Option<u32>,
    /// The dataset is no longer in use from this date on...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_on: Option<DateTime<Utc>>,
    /// ...and its records are disposed of this many days after it (0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_retired_days: Option<u32>,
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    /// Why (case reference).
    pub reason: String,
    /// Who placed it.
    pub by: String,
    /// When.
    pub since: DateTime<Utc>,
}

/// Every schedule and hold of a library.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Schedules by dataset.
    pub schedules: BTreeMap<String, Schedule>,
    /// Holds on whole datasets.
    pub dataset_holds: BTreeMap<String, Hold>,
    /// Holds on single records, by id.
    pub record_holds: BTreeMap<String, Hold>,
}

/// A record due for disposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Due {
    /// Record id.
    pub id: String,
    /// Its dataset.
    pub dataset: String,
    /// Which rule made it due.
    pub rule: String,
}

/// What a retention run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// When the plan was made (the cut-off dates are relative to it).
    pub at: DateTime<Utc>,
    /// Records to dispose of.
    pub due: Vec<Due>,
    /// Records that would be due but are on hold.
    pub held: usize,
}

/// Why a retention change failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A schedule that cannot work.
    #[error("schedule for dataset {dataset:?}: {reason}")]
    InvalidSchedule {
        /// The dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the policy, or planning over the library, failed.
    #[error(transparent)]
    Store(#[from] indexer::Error),
}

/// The retention policy of one library.
#[derive(Debug)]
pub struct Retention {
    path: PathBuf,
    policy: Mutex<RetentionPolicy>,
}

impl Retention {
    /// Opens `<dir>/retention.json` (absent: no schedules, no holds).
    ///
    /// # Errors
    /// [`RetentionError::Store`] when the file exists but cannot be read or parsed.
    pub fn open(dir: &Path) -> Result<Self, RetentionError> {
        let path = dir.join("retention.json");
        let policy = indexer::library::read_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            policy: Mutex::new(policy),
        })
    }

    /// The policy now.
    pub fn policy(&self) -> RetentionPolicy {
        self.lock().clone()
    }

    /// Replaces the policy after checking every schedule.
    ///
    /// # Errors
    /// [`RetentionError::InvalidSchedule`], or a write failure (then nothing changed).
    pub fn set_policy(&self, policy: RetentionPolicy) -> Result<(), RetentionError> {
        for (dataset, s) in &policy.schedules {
            let invalid = |reason: &str| RetentionError::InvalidSchedule {
                dataset: dataset.clone(),
                reason: reason.into(),
            };
            if s.after_ingest_days.is_none() && s.retired_on.is_none() {
                return Err(invalid(
                    "give after_ingest_days, retired_on (with after_retired_days), or both",
                ));
            }
            if s.after_retired_days.is_some() && s.retired_on.is_none() {
                return Err(invalid("after_retired_days needs retired_on"));
            }
        }
        let mut guard = self.lock();
        let bytes = serde_json::to_vec_pretty(&policy).expect("policy serialises");
        indexer::library::write_atomic(&self.path, &bytes)?;
        *guard = policy;
        Ok(())
    }

    /// Changes the policy with `change` and saves it.
    ///
    /// # Errors
    /// As [`Retention::set_policy`].
    pub fn update(&self, change: impl FnOnce(&mut RetentionPolicy)) -> Result<(), RetentionError> {
        let mut next = self.policy();
        change(&mut next);
        self.set_policy(next)
    }

    /// Records due for disposal at `now`, holds excepted.
    ///
    /// # Errors
    /// Index failures.
    pub fn due(&self, library: &Library, now: DateTime<Utc>) -> Result<Plan, RetentionError> {
        let policy = self.policy();
        let mut plan = Plan {
            at: now,
            ..Plan::default()
        };
        let kw = library.keyword();
        for (dataset, s) in &policy.schedules {
            let mut rules: Vec<(String, RecordFilter)> = Vec::new();
            let base = RecordFilter {
                datasets: vec![dataset.clone()],
                ..RecordFilter::default()
            };
            if let Some(days) = s.after_ingest_days {
                let cutoff = now - Duration::days(i64::from(days));
                rules.push((
                    format!(
                        "{days} days after ingest (ingested before {})",
                        cutoff.to_rfc3339()
                    ),
                    RecordFilter {
                        dates: vec![DateRange {
                            axis: DateAxis::Ingested,
                            after: None,
                            before: Some(cutoff),
                        }],
                        ..base.clone()
                    },
                ));
            }
            if let Some(retired) = s.retired_on {
                let days = s.after_retired_days.unwrap_or(0);
                if now >= retired + Duration::days(i64::from(days)) {
                    rules.push((
                        format!(
                            "{days} days after the dataset was retired on {}",
                            retired.date_naive()
                        ),
                        base.clone(),
                    ));
                }
            }
            for (rule, filter) in rules {
                for id in kw.filter_ids(&filter).map_err(indexer::Error::from)? {
                    if plan.due.iter().any(|d| d.id == id) {
                        continue;
                    }
                    if policy.dataset_holds.contains_key(dataset)
                        || policy.record_holds.contains_key(&id)
                    {
                        plan.held += 1;
                        continue;
                    }
                    plan.due.push(Due {
                        id,
                        dataset: dataset.clone(),
                        rule: rule.clone(),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// Whether a record (of `dataset`) is on hold, and why.
    pub fn hold_of(&self, id: &str, dataset: &str) -> Option<Hold> {
        let p = self.lock();
        p.record_holds
            .get(id)
            .or_else(|| p.dataset_holds.get(dataset))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RetentionPolicy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retention::open(dir.path()).unwrap();
        let bad = RetentionPolicy {
            schedules: [("d".to_owned(), Schedule::default())].into(),
            ..Default::default()
        };
        assert!(matches!(
            r.set_policy(bad),
            Err(RetentionError::InvalidSchedule { .. })
        ));
        r.update(|p| {
            p.schedules.insert(
                "d".into(),
                Schedule {
                    after_ingest_days: Some(30),
                    ..Default::default()
                },
            );
        })
        .unwrap();
        let again = Retention::open(dir.path()).unwrap();
        assert_eq!(again.policy().schedules["d"].after_ingest_days, Some(30));
    }
}
