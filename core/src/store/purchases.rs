//! The purchase journal: every attempt at a paid call, written down before its request leaves.
//!
//! An attempt is `sent` until the provider answers. A provider that queues the request hands
//! back a job, and the attempt becomes `accepted` with it; a run killed from then on collects
//! that job on resume instead of buying the request again. An attempt whose fate is unknown (no
//! answer came, the process died with the request in flight) or whose paid result was lost is
//! `charged`: it stays in the ledger and counts against the budget at its quote, because the
//! provider may have billed it. A delivered attempt becomes `delivered` in the transaction that
//! records its image in `api_calls` (which counts it from then on); one the provider refused is
//! deleted.

use super::ledger::{Ledger, LedgerError, RequestHash};
use evolve_sdk::{Cost, Job};
use rusqlite::{OptionalExtension, params};

/// An attempt the provider accepted as a job and that has not delivered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The attempt's id.
    pub attempt: i64,
    /// The provider's job.
    pub job: Job,
    /// The attempt's quote, already counted against the budget.
    pub quoted: Cost,
}

impl Ledger {
    /// Writes down an attempt at `request` quoted at `quoted`, before its request leaves.
    pub fn attempt_sent(
        &mut self,
        request: &RequestHash,
        plugin: &str,
        request_json: &str,
        quoted: Cost,
    ) -> Result<i64, LedgerError> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO attempts (request_hash, plugin, request, quoted_micro_usd, state)
                 VALUES (?1, ?2, ?3, ?4, 'sent')",
                params![request.as_str(), plugin, request_json, quoted.micro_usd as i64],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records that the provider queued `attempt` as `job`.
    pub fn attempt_accepted(&self, attempt: i64, job: &Job) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute("UPDATE attempts SET state = 'accepted', job = ?2 WHERE id = ?1", params![attempt, job.0])
                .map(|_| ())
        })
    }

    /// Records that `attempt` may have been billed and delivered nothing, and why.
    pub fn attempt_charged(&self, attempt: i64, reason: &str) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute("UPDATE attempts SET state = 'charged', reason = ?2 WHERE id = ?1", params![attempt, reason])
                .map(|_| ())
        })
    }

    /// Keeps `note` on `attempt` (e.g. a cost above its quote).
    pub fn attempt_note(&self, attempt: i64, note: &str) -> Result<(), LedgerError> {
        self.sql(|c| c.execute("UPDATE attempts SET reason = ?2 WHERE id = ?1", params![attempt, note]).map(|_| ()))
    }

    /// Forgets `attempt`: the provider answered that it took nothing (a 429, a 5xx, a refusal).
    pub fn attempt_refused(&self, attempt: i64) -> Result<(), LedgerError> {
        self.sql(|c| c.execute("DELETE FROM attempts WHERE id = ?1", [attempt]).map(|_| ()))
    }

    /// The job a provider accepted for `request` and that has not delivered, if any.
    pub fn queued_job(&self, request: &RequestHash) -> Result<Option<QueuedJob>, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT id, job, quoted_micro_usd FROM attempts
                 WHERE request_hash = ?1 AND state = 'accepted' AND job IS NOT NULL ORDER BY id LIMIT 1",
                [request.as_str()],
                |r| {
                    Ok(QueuedJob {
                        attempt: r.get(0)?,
                        job: Job(r.get(1)?),
                        quoted: Cost { micro_usd: r.get::<_, i64>(2)?.max(0) as u64 },
                    })
                },
            )
            .optional()
        })
    }

    /// Charges every attempt still marked in flight: called by the run's only holder when it
    /// opens the run, so they were in flight when an earlier process stopped, and the provider
    /// may have billed them. Returns how many there were.
    pub fn charge_interrupted_attempts(&self) -> Result<usize, LedgerError> {
        self.sql(|c| {
            c.execute(
                "UPDATE attempts SET state = 'charged', reason = 'the process stopped while the request was in flight'
                 WHERE state = 'sent'",
                [],
            )
        })
    }

    /// Attempts by state: (`sent`, `accepted`, `charged`) counts.
    pub fn attempt_counts(&self) -> Result<(u64, u64, u64), LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'accepted'),
                        count(*) FILTER (WHERE state = 'charged') FROM attempts",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
        })
    }
}
