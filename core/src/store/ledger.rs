//! The run ledger: one SQLite database (WAL, `synchronous = FULL`) recording everything a run
//! decided and paid for.

use super::images::{ImageHash, ImageStore, StoredImage};
use super::migrations::MIGRATIONS;
use evolve_sdk::{Cost, Origin, Outcome};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Errors from the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused an operation.
    #[error("ledger {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The ledger was written by a newer evolve.
    #[error("ledger {} has schema version {found}, newer than this evolve understands ({supported}); upgrade evolve", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
}

/// The hash that identifies one paid request: blake3 over the teacher's label and the
/// canonical JSON of the request. Equal requests to the same teacher hash equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestHash(String);

impl RequestHash {
    /// The hash of `request` sent to the plugin instance `plugin`.
    pub fn of(plugin: &str, request: &impl Serialize) -> RequestHash {
        // serde_json's default map is ordered, so object keys serialise in a canonical order.
        let canonical = serde_json::to_value(request).unwrap_or(serde_json::Value::Null);
        let mut hasher = blake3::Hasher::new();
        hasher.update(plugin.as_bytes());
        hasher.update(&[0]);
        hasher.update(canonical.to_string().as_bytes());
        RequestHash(hasher.finalize().to_hex().to_string())
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A paid call about to be recorded.
pub struct NewApiCall<'a> {
    /// Its request hash.
    pub request: RequestHash,
    /// The plugin instance (teacher label) that served it.
    pub plugin: String,
    /// The request as JSON, for auditing.
    pub request_json: String,
    /// The image it returned, already durable.
    pub image: &'a StoredImage,
    /// The provider's rewrite of the prompt, if any.
    pub revised_prompt: Option<String>,
    /// What it cost.
    pub cost: Cost,
    /// The journalled attempt that delivered it ([`Ledger::attempt_sent`]), settled with it.
    pub attempt: Option<i64>,
}

/// A recorded paid call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The plugin instance that served it.
    pub plugin: String,
    /// The image it returned.
    pub image: ImageHash,
    /// The provider's rewrite of the prompt, if any.
    pub revised_prompt: Option<String>,
    /// What it cost.
    pub cost: Cost,
}

/// A training sample about to be added.
pub struct NewSample<'a> {
    /// Its caption.
    pub prompt: &'a str,
    /// The teacher image it trains on.
    pub image: &'a StoredImage,
    /// The teacher (label) whose image won.
    pub teacher: &'a str,
    /// How it entered the set.
    pub origin: Origin,
    /// The sample it was expanded or mutated from.
    pub parent: Option<i64>,
    /// The round that added it (`None` for seeds).
    pub round: Option<i64>,
}

/// A sample as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    /// Its id.
    pub id: i64,
    /// Its caption.
    pub prompt: String,
    /// The teacher image it trains on.
    pub image: ImageHash,
    /// The teacher (label) whose image it is.
    pub teacher: String,
    /// How it entered the set.
    pub origin: String,
    /// The sample it came from.
    pub parent: Option<i64>,
    /// Whether it is in the active set.
    pub active: bool,
}

/// A judgment about to be recorded.
pub struct NewJudgment<'a> {
    /// The round.
    pub round: i64,
    /// The judged sample.
    pub sample: i64,
    /// The base model's image, already durable.
    pub base_image: &'a StoredImage,
    /// The teacher's image.
    pub teacher_image: &'a ImageHash,
    /// The conclusion.
    pub outcome: Outcome,
    /// Whether the judge saw the base image first (position bias audits).
    pub base_shown_first: bool,
    /// The judge's confidence.
    pub confidence: f32,
    /// The judge's raw reply.
    pub raw: &'a str,
}

/// What a round did, recorded when it finishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Samples judged.
    pub selected: u32,
    /// Of those, how many the teacher won.
    pub teacher_wins: u32,
    /// Samples added (expansion and mutation).
    pub added: u32,
    /// Samples deactivated.
    pub deactivated: u32,
    /// Of the added, how many by mutation.
    pub mutated: u32,
    /// Verdicts asked again with the images swapped.
    pub rejudged: u32,
}

/// The result of [`Ledger::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyReport {
    /// Image rows checked.
    pub images: usize,
    /// Problems found; empty means consistent.
    pub problems: Vec<String>,
}

impl ConsistencyReport {
    /// Whether nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The run ledger.
pub struct Ledger {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_at_version(path, MIGRATIONS.len() as u32)
    }

    /// Opens the ledger migrating only up to `version` (for migration tests).
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: u32) -> Result<Ledger, LedgerError> {
        let conn = Connection::open(path).map_err(|source| LedgerError::Sqlite { path: path.into(), source })?;
        let mut ledger = Ledger { conn, path: path.to_path_buf() };
        ledger.sql(|c| {
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: a committed paid call survives power loss, not just a process crash.
            c.pragma_update(None, "synchronous", "FULL")?;
            c.pragma_update(None, "foreign_keys", true)
        })?;
        ledger.migrate(version)?;
        Ok(ledger)
    }

    pub(super) fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        f(&self.conn).map_err(|source| LedgerError::Sqlite { path: self.path.clone(), source })
    }

    /// Runs `f` in one transaction, committed only if `f` succeeds. The transaction takes the
    /// write lock when it begins (`BEGIN IMMEDIATE`), waiting for other writers there: a
    /// deferred one that reads before it writes fails at once, without waiting, if another
    /// connection (the trainer's) committed in between.
    pub(super) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run(&mut self.conn).map_err(|source| LedgerError::Sqlite { path, source })
    }

    pub(super) fn err(&self) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
        |source| LedgerError::Sqlite { path: self.path.clone(), source }
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<u32, LedgerError> {
        self.sql(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
    }

    fn migrate(&mut self, target: u32) -> Result<(), LedgerError> {
        let current = self.schema_version()?;
        let supported = MIGRATIONS.len() as u32;
        if current > supported {
            return Err(LedgerError::NewerSchema { path: self.path.clone(), found: current, supported });
        }
        if current >= target {
            return Ok(());
        }
        // A migration may rebuild a table others reference (SQLite's way to change a
        // constraint): foreign keys are off while it runs, and checked before it commits.
        self.sql(|c| c.pragma_update(None, "foreign_keys", false))?;
        let migrated = (|| {
            for (i, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(current as usize) {
                self.transaction(|tx| {
                    tx.execute_batch(sql)?;
                    let broken: i64 =
                        tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
                    if broken > 0 {
                        return Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                            Some(format!("migration to version {} leaves {broken} broken references", i + 1)),
                        ));
                    }
                    tx.pragma_update(None, "user_version", (i + 1) as u32)
                })?;
            }
            Ok(())
        })();
        self.sql(|c| c.pragma_update(None, "foreign_keys", true))?;
        migrated
    }

    /// Opens the ledger at `path` to read only, as it stands (no migration, no lock on a live
    /// run's writes): for exports and reports. A ledger from a newer evolve is refused.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|source| LedgerError::Sqlite { path: path.into(), source })?;
        let ledger = Ledger { conn, path: path.to_path_buf() };
        let found = ledger.schema_version()?;
        let supported = MIGRATIONS.len() as u32;
        if found > supported {
            return Err(LedgerError::NewerSchema { path: path.into(), found, supported });
        }
        Ok(ledger)
    }

    /// The recorded result of a paid request, if it was paid for before.
    pub fn lookup_call(&self, request: &RequestHash) -> Result<Option<ApiCall>, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT plugin, image_hash, revised_prompt, cost_micro_usd FROM api_calls WHERE request_hash = ?1",
                [request.as_str()],
                |r| {
                    Ok(ApiCall {
                        plugin: r.get(0)?,
                        image: hash_column(r, 1)?,
                        revised_prompt: r.get(2)?,
                        cost: Cost { micro_usd: r.get::<_, i64>(3)?.max(0) as u64 },
                    })
                },
            )
            .optional()
        })
    }

    /// Records a paid call and its image in one transaction. Recording the same request twice
    /// keeps the first record.
    pub fn record_call(&mut self, call: &NewApiCall<'_>) -> Result<(), LedgerError> {
        self.transaction(|tx| {
            insert_image(tx, call.image)?;
            tx.execute(
            "INSERT OR IGNORE INTO api_calls (request_hash, plugin, request, image_hash, revised_prompt, cost_micro_usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                call.request.as_str(),
                call.plugin,
                call.request_json,
                call.image.hash().as_str(),
                call.revised_prompt,
                call.cost.micro_usd as i64
            ],
            )?;
            if let Some(attempt) = call.attempt {
                tx.execute("UPDATE attempts SET state = 'delivered' WHERE id = ?1", [attempt])?;
            }
            Ok(())
        })
    }

    /// Paid calls so far and what they cost in total: the delivered ones at their cost, and every
    /// attempt that may have been billed without delivering (in flight, queued, or lost) at its
    /// quote.
    pub fn call_totals(&self) -> Result<(u64, Cost), LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM api_calls) + (SELECT count(*) FROM attempts WHERE state != 'delivered'),
                        (SELECT coalesce(sum(cost_micro_usd), 0) FROM api_calls)
                          + (SELECT coalesce(sum(quoted_micro_usd), 0) FROM attempts WHERE state != 'delivered')",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, Cost { micro_usd: r.get::<_, i64>(1)?.max(0) as u64 })),
            )
        })
    }

    /// Records an image (e.g. a base-model render) that is already durable.
    pub fn record_image(&self, image: &StoredImage) -> Result<(), LedgerError> {
        self.sql(|c| insert_image(c, image))
    }

    /// Adds a training sample (and its prompt and image rows) in one transaction.
    pub fn add_sample(&mut self, sample: &NewSample<'_>) -> Result<i64, LedgerError> {
        self.transaction(|tx| insert_sample(tx, sample))
    }

    /// Takes a sample out of the active set (it stays in the ledger).
    pub fn deactivate(&self, sample: i64, round: i64) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "UPDATE samples SET active = 0, round_removed = ?2 WHERE id = ?1 AND active = 1",
                params![sample, round],
            )
            .map(|_| ())
        })
    }

    /// Whether a prompt is already in the ledger (expansion and mutation skip known prompts).
    pub fn has_prompt(&self, text: &str) -> Result<bool, LedgerError> {
        self.sql(|c| c.query_row("SELECT EXISTS(SELECT 1 FROM prompts WHERE text = ?1)", [text], |r| r.get(0)))
    }

    /// Every sample, or only the active ones, in id order.
    pub fn samples(&self, active_only: bool) -> Result<Vec<SampleRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, p.text, s.image_hash, s.teacher, s.origin, s.parent_id, s.active
                 FROM samples s JOIN prompts p ON p.id = s.prompt_id
                 WHERE s.active = 1 OR ?1 = 0 ORDER BY s.id",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([active_only], sample_row).and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }

    /// Opens a round at trainer step `step`; returns its id.
    pub fn begin_round(&self, step: u64) -> Result<i64, LedgerError> {
        self.sql(|c| {
            c.execute("INSERT INTO rounds (step) VALUES (?1)", [step as i64])?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Closes a round with what it did.
    pub fn finish_round(&self, round: i64, summary: RoundSummary) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "UPDATE rounds SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), selected = ?2, teacher_wins = ?3,
                 added = ?4, deactivated = ?5, mutated = ?6, rejudged = ?7 WHERE id = ?1",
                params![
                    round,
                    summary.selected,
                    summary.teacher_wins,
                    summary.added,
                    summary.deactivated,
                    summary.mutated,
                    summary.rejudged
                ],
            )
            .map(|_| ())
        })
    }

    /// Records a judgment and marks the sample judged in this round, in one transaction.
    pub fn record_judgment(&mut self, j: &NewJudgment<'_>) -> Result<i64, LedgerError> {
        let outcome = match j.outcome {
            Outcome::TeacherBetter => "teacher_better",
            Outcome::BaseAsGood => "base_as_good",
        };
        self.transaction(|tx| {
            insert_image(tx, j.base_image)?;
            tx.execute(
            "INSERT INTO judgments (round_id, sample_id, base_image_hash, teacher_image_hash, outcome, base_shown_first, confidence, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                j.round,
                j.sample,
                j.base_image.hash().as_str(),
                j.teacher_image.as_str(),
                outcome,
                j.base_shown_first,
                j.confidence,
                j.raw
            ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("UPDATE samples SET last_judged_round = ?2 WHERE id = ?1", params![j.sample, j.round])?;
            Ok(id)
        })
    }

    /// Records metric `name` at trainer step `step` (a later value for the same step replaces it).
    pub fn record_metric(&self, step: u64, name: &str, value: f64) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT OR REPLACE INTO metrics (step, name, value) VALUES (?1, ?2, ?3)",
                params![step as i64, name, value],
            )
            .map(|_| ())
        })
    }

    /// Records that plugin instance `instance` was quarantined (the first reason is kept).
    pub fn record_fault(&self, instance: &str, round: Option<i64>, reason: &str) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT OR IGNORE INTO plugin_faults (instance, round_id, reason) VALUES (?1, ?2, ?3)",
                params![instance, round, reason],
            )
            .map(|_| ())
        })
    }

    /// Quarantined plugin instances and why, in the order they failed.
    pub fn faults(&self) -> Result<Vec<(String, String)>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare("SELECT instance, reason FROM plugin_faults ORDER BY created_at, instance")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The series of metric `name`, by step.
    pub fn metric(&self, name: &str) -> Result<Vec<(u64, f64)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT step, value FROM metrics WHERE name = ?1 ORDER BY step")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([name], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(self.err())
    }

    /// Checks SQLite's integrity and foreign keys, and that every image row's file is present
    /// with the hash it is named by.
    pub fn check(&self, images: &ImageStore) -> Result<ConsistencyReport, super::StoreError> {
        let mut report = ConsistencyReport::default();
        let integrity: String = self.sql(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))?;
        if integrity != "ok" {
            report.problems.push(format!("integrity_check: {integrity}"));
        }
        let broken_keys: i64 =
            self.sql(|c| c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)))?;
        if broken_keys > 0 {
            report.problems.push(format!("{broken_keys} rows violate foreign keys"));
        }
        let mut stmt = self.conn.prepare("SELECT hash FROM images").map_err(self.err())?;
        let hashes = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err())?;
        for hex in hashes {
            report.images += 1;
            match ImageHash::parse(&hex) {
                Some(hash) if images.verify(&hash) => {}
                Some(hash) => report.problems.push(format!("image {hash} is missing or corrupt")),
                None => report.problems.push(format!("image row with malformed hash {hex:?}")),
            }
        }
        Ok(report)
    }
}

/// Inserts a sample with its prompt and image rows (inside the caller's transaction).
pub(super) fn insert_sample(tx: &Connection, sample: &NewSample<'_>) -> rusqlite::Result<i64> {
    insert_image(tx, sample.image)?;
    tx.execute("INSERT OR IGNORE INTO prompts (text) VALUES (?1)", [sample.prompt])?;
    let prompt_id: i64 = tx.query_row("SELECT id FROM prompts WHERE text = ?1", [sample.prompt], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO samples (prompt_id, image_hash, teacher, origin, parent_id, round_added)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            prompt_id,
            sample.image.hash().as_str(),
            sample.teacher,
            sample.origin.as_str(),
            sample.parent,
            sample.round
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn insert_image(c: &Connection, image: &StoredImage) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO images (hash, width, height, bytes) VALUES (?1, ?2, ?3, ?4)",
        params![image.hash().as_str(), image.width(), image.height(), image.bytes() as i64],
    )
    .map(|_| ())
}

/// A [`SampleRow`] from `SELECT s.id, p.text, s.image_hash, s.teacher, s.origin, s.parent_id, s.active`.
pub(super) fn sample_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SampleRow> {
    Ok(SampleRow {
        id: r.get(0)?,
        prompt: r.get(1)?,
        image: hash_column(r, 2)?,
        teacher: r.get(3)?,
        origin: r.get(4)?,
        parent: r.get(5)?,
        active: r.get(6)?,
    })
}

pub(super) fn hash_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<ImageHash> {
    let hex: String = row.get(index)?;
    ImageHash::parse(&hex).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("bad image hash {hex:?}").into(),
        )
    })
}
