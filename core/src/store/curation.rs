//! The director's records in the ledger: prompts waiting to be bought, the teachers' candidate
//! images with the tournament's winner, round selection and judgment history.
//!
//! A new prompt is written down as *pending* before any teacher is paid for it. Resolving it
//! (every teacher's image stored, the winner added as a sample) is one transaction, so a run
//! killed in between finds the prompt still pending on resume and finishes the purchase — with
//! the images already paid for found by request hash, not bought again.

use super::images::StoredImage;
use super::ledger::{Ledger, LedgerError, NewSample, SampleRow, insert_image, insert_sample, sample_row};
use evolve_sdk::{Origin, Outcome};
use rusqlite::{OptionalExtension, params};

/// A prompt to buy, about to be written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPending {
    /// The prompt.
    pub prompt: String,
    /// Why it is wanted.
    pub origin: Origin,
    /// The sample it was expanded or mutated from.
    pub parent: Option<i64>,
    /// The round that wants it (`None` for seeds).
    pub round: Option<i64>,
}

/// A prompt written down and not yet bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    /// Its id.
    pub id: i64,
    /// The prompt and why it is wanted.
    pub want: NewPending,
}

/// One teacher's image for a pending prompt.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The teacher's label.
    pub teacher: String,
    /// Its image, already durable.
    pub image: StoredImage,
}

/// How one teacher's images fared in the judge's tournaments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeacherRecord {
    /// The teacher's label.
    pub teacher: String,
    /// Tournaments it won.
    pub wins: u64,
    /// Tournaments in which its image was as good as the winner's (it won, or tied with it).
    pub as_good: u64,
    /// Tournaments it took part in.
    pub entered: u64,
}

impl Ledger {
    /// `wanted` without the prompts `add_pending` would skip: those already in the ledger as a
    /// sample or an open pending prompt, and repeats within `wanted` (the first is kept). A
    /// round choosing within its share of the budget chooses among these, so that its share is
    /// not spent on prompts that would never be bought.
    pub fn new_prompts(&self, wanted: Vec<NewPending>) -> Result<Vec<NewPending>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM prompts p JOIN samples s ON s.prompt_id = p.id WHERE p.text = ?1)
                 OR EXISTS(SELECT 1 FROM pending WHERE prompt = ?1 AND sample_id IS NULL AND dropped IS NULL)",
            )
            .map_err(self.err())?;
        let mut seen = std::collections::HashSet::new();
        let mut fresh = vec![];
        for want in wanted {
            let known: bool = stmt.query_row([&want.prompt], |r| r.get(0)).map_err(self.err())?;
            if !known && seen.insert(want.prompt.clone()) {
                fresh.push(want);
            }
        }
        Ok(fresh)
    }

    /// Writes down `wanted` prompts in one transaction, skipping any already in the ledger as a
    /// sample or an open pending prompt. Returns the rows written.
    pub fn add_pending(&mut self, wanted: &[NewPending]) -> Result<Vec<PendingRow>, LedgerError> {
        self.transaction(|tx| {
            let mut rows = vec![];
            for want in wanted {
                let known: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM prompts p JOIN samples s ON s.prompt_id = p.id WHERE p.text = ?1)
                     OR EXISTS(SELECT 1 FROM pending WHERE prompt = ?1 AND sample_id IS NULL AND dropped IS NULL)",
                    [&want.prompt],
                    |r| r.get(0),
                )?;
                if known {
                    continue;
                }
                tx.execute(
                    "INSERT INTO pending (prompt, origin, parent_id, round_id) VALUES (?1, ?2, ?3, ?4)",
                    params![want.prompt, want.origin.as_str(), want.parent, want.round],
                )?;
                rows.push(PendingRow { id: tx.last_insert_rowid(), want: want.clone() });
            }
            Ok(rows)
        })
    }

    /// Prompts written down and neither bought nor dropped, oldest first.
    pub fn open_pending(&self) -> Result<Vec<PendingRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, prompt, origin, parent_id, round_id FROM pending
                 WHERE sample_id IS NULL AND dropped IS NULL ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                let origin: String = r.get(2)?;
                Ok(PendingRow {
                    id: r.get(0)?,
                    want: NewPending {
                        prompt: r.get(1)?,
                        origin: Origin::from_name(&origin).unwrap_or(Origin::Seed),
                        parent: r.get(3)?,
                        round: r.get(4)?,
                    },
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }

    /// Whether any prompt was ever written down (a run that has started buying).
    pub fn has_pending_history(&self) -> Result<bool, LedgerError> {
        self.sql(|c| c.query_row("SELECT EXISTS(SELECT 1 FROM pending)", [], |r| r.get(0)))
    }

    /// Resolves a pending prompt in one transaction: every candidate image recorded (with
    /// whether it was as good as the winner's, `as_good`), the one at `winner` added as a
    /// training sample. Returns the new sample's id.
    pub fn resolve_pending(
        &mut self,
        pending: &PendingRow,
        candidates: &[Candidate],
        winner: usize,
        as_good: &[bool],
    ) -> Result<i64, LedgerError> {
        self.transaction(|tx| {
            let won = &candidates[winner.min(candidates.len().saturating_sub(1))];
            let sample = NewSample {
                prompt: &pending.want.prompt,
                image: &won.image,
                teacher: &won.teacher,
                origin: pending.want.origin,
                parent: pending.want.parent,
                round: pending.want.round,
            };
            let sample_id = insert_sample(tx, &sample)?;
            for (i, candidate) in candidates.iter().enumerate() {
                insert_image(tx, &candidate.image)?;
                tx.execute(
                    "INSERT OR REPLACE INTO candidates (pending_id, teacher, image_hash, won, as_good)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        pending.id,
                        candidate.teacher,
                        candidate.image.hash().as_str(),
                        i == winner,
                        i == winner || as_good.get(i).copied().unwrap_or(false)
                    ],
                )?;
            }
            tx.execute("UPDATE pending SET sample_id = ?2 WHERE id = ?1", params![pending.id, sample_id])?;
            Ok(sample_id)
        })
    }

    /// Gives up on a pending prompt (every teacher refused it), saying why.
    pub fn drop_pending(&self, pending: i64, reason: &str) -> Result<(), LedgerError> {
        self.sql(|c| c.execute("UPDATE pending SET dropped = ?2 WHERE id = ?1", params![pending, reason]).map(|_| ()))
    }

    /// Up to `n` active samples, least recently judged first (never-judged before all).
    pub fn select_for_round(&self, n: usize) -> Result<Vec<SampleRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, p.text, s.image_hash, s.teacher, s.origin, s.parent_id, s.active
                 FROM samples s JOIN prompts p ON p.id = s.prompt_id
                 WHERE s.active = 1 ORDER BY s.last_judged_round IS NOT NULL, s.last_judged_round, s.id LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([n as i64], sample_row).and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }

    /// Active samples in the set.
    pub fn active_count(&self) -> Result<u64, LedgerError> {
        self.sql(|c| c.query_row("SELECT count(*) FROM samples WHERE active = 1", [], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
    }

    /// Earlier outcomes for `sample`, oldest first.
    pub fn outcome_history(&self, sample: i64) -> Result<Vec<Outcome>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT outcome FROM judgments WHERE sample_id = ?1 ORDER BY round_id, id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([sample], |r| {
                let text: String = r.get(0)?;
                Ok(if text == "teacher_better" { Outcome::TeacherBetter } else { Outcome::BaseAsGood })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }

    /// The most recently written prompts of the set (what a mutation must differ from).
    pub fn recent_prompts(&self, n: usize) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.text FROM samples s JOIN prompts p ON p.id = s.prompt_id ORDER BY s.id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows =
            stmt.query_map([n as i64], |r| r.get::<_, String>(0)).and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map(|mut v| {
            v.reverse();
            v
        })
        .map_err(self.err())
    }

    /// Closes rounds a killed run left open, marking them interrupted. Returns how many.
    pub fn close_interrupted_rounds(&self) -> Result<usize, LedgerError> {
        self.sql(|c| {
            c.execute(
                "UPDATE rounds SET interrupted = 1, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')
                 WHERE finished_at IS NULL",
                [],
            )
        })
    }

    /// Rounds started so far.
    pub fn round_count(&self) -> Result<u64, LedgerError> {
        self.sql(|c| c.query_row("SELECT count(*) FROM rounds", [], |r| r.get::<_, i64>(0))).map(|n| n.max(0) as u64)
    }

    /// The teacher whose image sample `id` trains on.
    pub fn sample_teacher(&self, id: i64) -> Result<Option<String>, LedgerError> {
        self.sql(|c| c.query_row("SELECT teacher FROM samples WHERE id = ?1", [id], |r| r.get(0)).optional())
    }

    /// Per-teacher tournament records (prompts bought from two teachers or more), by label.
    pub fn teacher_records(&self) -> Result<Vec<TeacherRecord>, LedgerError> {
        let mut stmt = self
            .conn
            // Only tournaments: a prompt bought from one teacher (routed) has no loser.
            .prepare_cached(
                "SELECT teacher, sum(won), sum(as_good), count(*) FROM candidates
                 WHERE pending_id IN (SELECT pending_id FROM candidates GROUP BY pending_id HAVING count(*) > 1)
                 GROUP BY teacher ORDER BY teacher",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TeacherRecord {
                    teacher: r.get(0)?,
                    wins: r.get::<_, i64>(1)?.max(0) as u64,
                    as_good: r.get::<_, i64>(2)?.max(0) as u64,
                    entered: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }
}
