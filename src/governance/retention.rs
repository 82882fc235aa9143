//! Retention schedules and legal holds: which records are due for disposal, and when.
//!
//! Owns `<data-dir>/retention.json` (atomic writes under one lock). A schedule is per dataset:
//! dispose of a record a number of days after it was ingested, and/or a number of days after a
//! "no longer in use" date set for the dataset. A legal hold on a record or a whole dataset
//! keeps it whatever its schedule says. [`Retention::due`] only plans; deleting is the caller's
//! job (see [`crate::governance::deletion`]), so a dry run and a real run see the same plan.
//!
//! Record holds are kept by the record's ref (the keyed pseudonym the audit trail uses, see
//! [`crate::governance::audit::AuditLog::record_ref`]), never by its id: an id given to a hold is turned into
//! its ref ([`RetentionPolicy::with_record_refs`]) before it is saved or logged, so neither
//! `retention.json` nor the trail names a record in clear. Holds saved by older versions under
//! the id still hold ([`Retention::hold_of`] looks under both).
//!
//! Every schedule is range-checked when saved (days at most [`MAX_DAYS`], `retired_on` within
//! the years 1900 to 9999) and again before planning, and the date arithmetic is checked, so a
//! policy edited by hand into absurd values is an error naming the field, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike as _, TimeDelta, Utc};
use indexer::Library;
use indexer::filter::{DateRange, RecordFilter};
use indexer::json_file::JsonFile;
use indexer::record::DateAxis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most days a schedule may count (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// Longest dataset name a schedule or hold may name, in characters.
pub const MAX_DATASET_LEN: usize = 256;

/// Longest hold reason or `by`, in characters.
pub const MAX_HOLD_TEXT: usize = 2_000;

/// Length of a record ref (hex digits), as [`crate::governance::audit::AuditLog::record_ref`] makes them.
const REF_LEN: usize = 32;

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
    /// Holds on single records, by the record's ref (the keyed pseudonym of the audit trail).
    /// A record id given here is stored, shown and logged as its ref.
    pub record_holds: BTreeMap<String, Hold>,
}

impl RetentionPolicy {
    /// The policy with every record hold keyed by the record's ref: keys that are already refs
    /// (32 lowercase hex digits) stay, any other key is taken for a record id and replaced by
    /// `record_ref(id)`.
    #[must_use]
    pub fn with_record_refs(mut self, record_ref: impl Fn(&str) -> String) -> Self {
        self.record_holds = std::mem::take(&mut self.record_holds)
            .into_iter()
            .map(|(k, h)| {
                if is_ref(&k) {
                    (k, h)
                } else {
                    (record_ref(&k), h)
                }
            })
            .collect();
        self
    }

    /// Checks every schedule and hold: what [`Retention::set_policy`] refuses.
    ///
    /// # Errors
    /// [`RetentionError::InvalidSchedule`] or [`RetentionError::InvalidHold`], naming the
    /// dataset or hold and the field.
    pub fn check(&self) -> Result<(), RetentionError> {
        for (dataset, s) in &self.schedules {
            let invalid = |reason: String| RetentionError::InvalidSchedule {
                dataset: shown(dataset),
                reason,
            };
            check_dataset(dataset).map_err(invalid)?;
            if s.after_ingest_days.is_none() && s.retired_on.is_none() {
                return Err(invalid(
                    "give after_ingest_days, retired_on (with after_retired_days), or both".into(),
                ));
            }
            if s.after_retired_days.is_some() && s.retired_on.is_none() {
                return Err(invalid("after_retired_days needs retired_on".into()));
            }
            for (field, days) in [
                ("after_ingest_days", s.after_ingest_days),
                ("after_retired_days", s.after_retired_days),
            ] {
                if let Some(days) = days
                    && days > MAX_DAYS
                {
                    return Err(invalid(format!(
                        "{field} is {days}; it must be at most {MAX_DAYS} (100 years)"
                    )));
                }
            }
            if let Some(r) = s.retired_on
                && !(1900..=9999).contains(&r.year())
            {
                return Err(invalid(format!(
                    "retired_on {} is not a date between the years 1900 and 9999",
                    r.to_rfc3339()
                )));
            }
        }
        for (kind, holds) in [
            ("dataset", &self.dataset_holds),
            ("record", &self.record_holds),
        ] {
            for (key, hold) in holds {
                let invalid = |reason: String| RetentionError::InvalidHold {
                    kind,
                    key: shown(key),
                    reason,
                };
                if kind == "dataset" {
                    check_dataset(key).map_err(invalid)?;
                } else if key.is_empty() || key.chars().count() > MAX_DATASET_LEN {
                    return Err(invalid(format!(
                        "a record id or ref is 1 to {MAX_DATASET_LEN} characters"
                    )));
                }
                if hold.reason.trim().is_empty() {
                    return Err(invalid("reason must say why (case reference)".into()));
                }
                for (field, text) in [("reason", &hold.reason), ("by", &hold.by)] {
                    let n = text.chars().count();
                    if n > MAX_HOLD_TEXT {
                        return Err(invalid(format!(
                            "{field} has {n} characters; at most {MAX_HOLD_TEXT}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `key` has the shape of a record ref.
fn is_ref(key: &str) -> bool {
    key.len() == REF_LEN && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_dataset(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_DATASET_LEN {
        return Err(format!(
            "a dataset name is 1 to {MAX_DATASET_LEN} characters, not blank"
        ));
    }
    Ok(())
}

/// A key as shown in an error message: at most 64 characters.
fn shown(key: &str) -> String {
    let mut s: String = key.chars().take(64).collect();
    if key.chars().count() > 64 {
        s.push_str("...");
    }
    s
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
    /// A hold that cannot be kept (blank reason, over-long text or key).
    #[error("{kind} hold {key:?}: {reason}")]
    InvalidHold {
        /// `dataset` or `record`.
        kind: &'static str,
        /// The dataset, or the record id or ref.
        key: String,
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
    file: JsonFile<RetentionPolicy>,
}

impl Retention {
    /// Opens `<dir>/retention.json` (absent: no schedules, no holds).
    ///
    /// # Errors
    /// [`RetentionError::Store`] when the file exists but cannot be read or parsed.
    pub fn open(dir: &Path) -> Result<Self, RetentionError> {
        Ok(Self {
            file: JsonFile::open(dir.join("retention.json"))?,
        })
    }

    /// The policy now.
    pub fn policy(&self) -> RetentionPolicy {
        self.file.read().clone()
    }

    /// Replaces the policy after checking every schedule and hold ([`RetentionPolicy::check`]).
    /// Record holds must already be keyed by ref ([`RetentionPolicy::with_record_refs`]).
    ///
    /// # Errors
    /// [`RetentionError::InvalidSchedule`], [`RetentionError::InvalidHold`] (also for a record
    /// hold not keyed by a ref), or a write failure (then nothing changed).
    pub fn set_policy(&self, policy: RetentionPolicy) -> Result<(), RetentionError> {
        check_keyed(&policy)?;
        self.file.change(|saved| {
            *saved = policy;
            Ok(())
        })
    }

    /// Changes the policy with `change`, keys its record holds by ref (`record_ref` gives a
    /// record's ref) and saves it, all under one lock, so two changes at once both apply.
    ///
    /// # Errors
    /// As [`Retention::set_policy`].
    pub fn update(
        &self,
        record_ref: impl Fn(&str) -> String,
        change: impl FnOnce(&mut RetentionPolicy),
    ) -> Result<(), RetentionError> {
        self.file.change(|saved| {
            let mut next = saved.clone();
            change(&mut next);
            let next = next.with_record_refs(record_ref);
            check_keyed(&next)?;
            *saved = next;
            Ok(())
        })
    }

    /// Records due for disposal at `now`, holds excepted; `record_ref` gives a record's ref
    /// (the key of its hold).
    ///
    /// # Errors
    /// [`RetentionError::InvalidSchedule`] or [`RetentionError::InvalidHold`] when the saved
    /// policy is out of range (edited by hand, or saved by an older version), index failures.
    pub fn due(
        &self,
        library: &Library,
        now: DateTime<Utc>,
        record_ref: impl Fn(&str) -> String,
    ) -> Result<Plan, RetentionError> {
        let policy = self.policy();
        policy.check()?;
        let mut plan = Plan {
            at: now,
            ..Plan::default()
        };
        let kw = library.keyword();
        for (dataset, s) in &policy.schedules {
            let overflow = |field: &str| RetentionError::InvalidSchedule {
                dataset: shown(dataset),
                reason: format!("{field} puts the cut-off outside the dates this library can hold"),
            };
            let mut rules: Vec<(String, RecordFilter)> = Vec::new();
            let base = RecordFilter {
                datasets: vec![dataset.clone()],
                ..RecordFilter::default()
            };
            if let Some(days) = s.after_ingest_days {
                let cutoff = TimeDelta::try_days(i64::from(days))
                    .and_then(|d| now.checked_sub_signed(d))
                    .ok_or_else(|| overflow("after_ingest_days"))?;
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
                let from = TimeDelta::try_days(i64::from(days))
                    .and_then(|d| retired.checked_add_signed(d))
                    .ok_or_else(|| overflow("after_retired_days"))?;
                if now >= from {
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
                        || policy.record_holds.contains_key(&record_ref(&id))
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

    /// Whether a record (id `id`, ref `record_ref`, of `dataset`) is on hold, and why. Holds
    /// are found under the ref, or under the id for holds saved by older versions.
    pub fn hold_of(&self, id: &str, record_ref: &str, dataset: &str) -> Option<Hold> {
        let p = self.file.read();
        p.record_holds
            .get(record_ref)
            .or_else(|| p.record_holds.get(id))
            .or_else(|| p.dataset_holds.get(dataset))
            .cloned()
    }
}

/// [`RetentionPolicy::check`], and every record hold keyed by a ref.
fn check_keyed(policy: &RetentionPolicy) -> Result<(), RetentionError> {
    policy.check()?;
    if let Some(key) = policy.record_holds.keys().find(|k| !is_ref(k)) {
        return Err(RetentionError::InvalidHold {
            kind: "record",
            key: shown(key),
            reason: "record holds are kept by the record's ref, not its id".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ref(id: &str) -> String {
        use sha2::Digest as _;
        let mut r = hex::encode(sha2::Sha256::digest(format!("k{id}")));
        r.truncate(REF_LEN);
        r
    }

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
        r.update(test_ref, |p| {
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

    #[test]
    fn out_of_range_schedules_and_holds_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retention::open(dir.path()).unwrap();
        let far: DateTime<Utc> = "+262000-01-01T00:00:00Z".parse().unwrap();
        for (schedule, field) in [
            (
                Schedule {
                    after_ingest_days: Some(u32::MAX),
                    ..Default::default()
                },
                "after_ingest_days",
            ),
            (
                Schedule {
                    retired_on: Some(Utc::now()),
                    after_retired_days: Some(MAX_DAYS + 1),
                    ..Default::default()
                },
                "after_retired_days",
            ),
            (
                Schedule {
                    retired_on: Some(far),
                    ..Default::default()
                },
                "retired_on",
            ),
        ] {
            let policy = RetentionPolicy {
                schedules: [("d".to_owned(), schedule)].into(),
                ..Default::default()
            };
            let err = r.set_policy(policy).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let hold = Hold {
            reason: "x".repeat(MAX_HOLD_TEXT + 1),
            by: "me".into(),
            since: Utc::now(),
        };
        let policy = RetentionPolicy {
            dataset_holds: [("d".to_owned(), hold)].into(),
            ..Default::default()
        };
        assert!(
            r.set_policy(policy)
                .unwrap_err()
                .to_string()
                .contains("reason")
        );
        assert_eq!(r.policy(), RetentionPolicy::default());
    }

    #[test]
    fn record_holds_are_stored_by_ref_and_found_by_ref_or_legacy_id() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retention::open(dir.path()).unwrap();
        let hold = Hold {
            reason: "case 1".into(),
            by: "legal".into(),
            since: Utc::now(),
        };
        // An id is refused as a key unless turned into its ref first.
        let by_id = RetentionPolicy {
            record_holds: [("0123456789abcdef".to_owned(), hold.clone())].into(),
            ..Default::default()
        };
        assert!(r.set_policy(by_id.clone()).is_err());
        r.set_policy(by_id.with_record_refs(test_ref)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("retention.json")).unwrap();
        assert!(!text.contains("0123456789abcdef"));
        assert!(text.contains(&test_ref("0123456789abcdef")));
        assert!(
            r.hold_of("0123456789abcdef", &test_ref("0123456789abcdef"), "d")
                .is_some()
        );
        assert!(
            r.hold_of("fedcba9876543210", &test_ref("fedcba9876543210"), "d")
                .is_none()
        );
        // A file saved by an older version, keyed by id, still holds.
        std::fs::write(
            dir.path().join("retention.json"),
            serde_json::to_vec(&RetentionPolicy {
                record_holds: [("fedcba9876543210".to_owned(), hold)].into(),
                ..Default::default()
            })
            .unwrap(),
        )
        .unwrap();
        let r = Retention::open(dir.path()).unwrap();
        assert!(r.hold_of("fedcba9876543210", "whatever-ref", "d").is_some());
    }
}
