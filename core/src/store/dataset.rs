//! The run's text-image set as the ledger holds it, for `evolve export --dataset`: every sample
//! (the tournament's winners, active or deleted) and every losing teacher's image, with cost,
//! lineage and the judge's verdicts.

use super::images::ImageHash;
use super::ledger::{Ledger, LedgerError, hash_column};
use rusqlite::params;
use serde::Serialize;

/// Which of the run's images to take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetFilter {
    /// Only samples in the active set (implies winners only).
    pub active_only: bool,
    /// Only the images that won their prompt's tournament (the samples).
    pub winners_only: bool,
    /// Only images bought for this round (round ids as the report numbers them; the initial
    /// prompts and imported images are round 0).
    pub round: Option<i64>,
}

/// One judgment of a sample: the base model's image against the sample's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVerdict {
    /// The round that judged it.
    pub round: i64,
    /// `teacher_better` (the base model had more to learn) or `base_as_good`.
    pub outcome: String,
    /// The judge's confidence.
    pub confidence: f64,
}

/// One image of the run's set with everything the ledger knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    /// The caption it was bought (or imported) for.
    pub prompt: String,
    /// The image.
    pub image: ImageHash,
    /// The teacher (label) that made it, or `imported`'s source teacher.
    pub teacher: String,
    /// What it cost, in micro-dollars (0 for imported images).
    pub cost_micro_usd: i64,
    /// `seed`, `expansion`, `mutation` or `imported`.
    pub origin: String,
    /// The prompt it was expanded or mutated from.
    pub parent_prompt: Option<String>,
    /// The round that bought it (0: before the first round).
    pub round: i64,
    /// In the active set now.
    pub active: bool,
    /// Won its prompt's tournament (is a training sample).
    pub winner: bool,
    /// The judge's verdicts on it, oldest first (winners only).
    pub verdicts: Vec<DatasetVerdict>,
}

impl Ledger {
    /// The run's images that pass `filter`: samples in id order, then the losing candidates.
    pub fn dataset(&self, filter: &DatasetFilter) -> Result<Vec<DatasetRow>, LedgerError> {
        let mut rows = self.sql(|c| winners(c, filter))?;
        for (sample, row) in rows.iter_mut() {
            row.verdicts = self.sql(|c| verdicts(c, *sample))?;
        }
        let mut rows: Vec<DatasetRow> = rows.into_iter().map(|(_, row)| row).collect();
        if !filter.active_only && !filter.winners_only {
            rows.extend(self.sql(|c| losers(c, filter))?);
        }
        Ok(rows)
    }
}

/// The cost of the call that delivered `image` from `teacher`.
const COST: &str = "COALESCE((SELECT a.cost_micro_usd FROM api_calls a
                              WHERE a.image_hash = {image} AND a.plugin = {teacher} LIMIT 1), 0)";

fn winners(c: &rusqlite::Connection, filter: &DatasetFilter) -> rusqlite::Result<Vec<(i64, DatasetRow)>> {
    let cost = COST.replace("{image}", "s.image_hash").replace("{teacher}", "s.teacher");
    let sql = format!(
        "SELECT s.id, p.text, s.image_hash, s.teacher, {cost}, s.origin, pp.text, COALESCE(s.round_added, 0), s.active
         FROM samples s JOIN prompts p ON p.id = s.prompt_id
         LEFT JOIN samples ps ON ps.id = s.parent_id LEFT JOIN prompts pp ON pp.id = ps.prompt_id
         WHERE (?1 = 0 OR s.active = 1) AND (?2 IS NULL OR COALESCE(s.round_added, 0) = ?2)
         ORDER BY s.id"
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params![filter.active_only, filter.round], |r| {
        Ok((
            r.get(0)?,
            DatasetRow {
                prompt: r.get(1)?,
                image: hash_column(r, 2)?,
                teacher: r.get(3)?,
                cost_micro_usd: r.get(4)?,
                origin: r.get(5)?,
                parent_prompt: r.get(6)?,
                round: r.get(7)?,
                active: r.get(8)?,
                winner: true,
                verdicts: vec![],
            },
        ))
    })?;
    rows.collect()
}

fn losers(c: &rusqlite::Connection, filter: &DatasetFilter) -> rusqlite::Result<Vec<DatasetRow>> {
    let cost = COST.replace("{image}", "c.image_hash").replace("{teacher}", "c.teacher");
    let sql = format!(
        "SELECT pe.prompt, c.image_hash, c.teacher, {cost}, pe.origin, pp.text, COALESCE(pe.round_id, 0)
         FROM candidates c JOIN pending pe ON pe.id = c.pending_id
         LEFT JOIN samples ps ON ps.id = pe.parent_id LEFT JOIN prompts pp ON pp.id = ps.prompt_id
         WHERE c.won = 0 AND (?1 IS NULL OR COALESCE(pe.round_id, 0) = ?1)
         ORDER BY c.pending_id, c.teacher"
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params![filter.round], |r| {
        Ok(DatasetRow {
            prompt: r.get(0)?,
            image: hash_column(r, 1)?,
            teacher: r.get(2)?,
            cost_micro_usd: r.get(3)?,
            origin: r.get(4)?,
            parent_prompt: r.get(5)?,
            round: r.get(6)?,
            active: false,
            winner: false,
            verdicts: vec![],
        })
    })?;
    rows.collect()
}

fn verdicts(c: &rusqlite::Connection, sample: i64) -> rusqlite::Result<Vec<DatasetVerdict>> {
    let mut stmt =
        c.prepare_cached("SELECT round_id, outcome, confidence FROM judgments WHERE sample_id = ?1 ORDER BY id")?;
    let rows = stmt
        .query_map([sample], |r| Ok(DatasetVerdict { round: r.get(0)?, outcome: r.get(1)?, confidence: r.get(2)? }))?;
    rows.collect()
}

/// An image brought in from an existing dataset, already in the image store.
#[derive(Debug, Clone)]
pub struct ImportedSample {
    /// Its caption.
    pub prompt: String,
    /// The image.
    pub image: super::images::StoredImage,
    /// Who made it, as the dataset says (`imported` when it does not).
    pub teacher: String,
}

impl Ledger {
    /// Adds `samples` to the active set as already paid (origin `imported`, no cost), in one
    /// transaction. Returns how many were added: a caption already in the ledger is skipped.
    pub fn import(&mut self, samples: &[ImportedSample]) -> Result<usize, LedgerError> {
        self.transaction(|tx| {
            let mut added = 0;
            for sample in samples {
                let known: bool =
                    tx.query_row("SELECT EXISTS(SELECT 1 FROM prompts WHERE text = ?1)", [&sample.prompt], |r| {
                        r.get(0)
                    })?;
                if known {
                    continue;
                }
                super::ledger::insert_sample(
                    tx,
                    &super::ledger::NewSample {
                        prompt: &sample.prompt,
                        image: &sample.image,
                        teacher: &sample.teacher,
                        origin: evolve_sdk::Origin::Imported,
                        parent: None,
                        round: None,
                    },
                )?;
                added += 1;
            }
            Ok(added)
        })
    }

    /// Whether the ledger holds any sample yet (a run that already started has imported its
    /// dataset, if it names one).
    pub fn has_samples(&self) -> Result<bool, LedgerError> {
        self.sql(|c| c.query_row("SELECT EXISTS(SELECT 1 FROM samples)", [], |r| r.get(0)))
    }
}
