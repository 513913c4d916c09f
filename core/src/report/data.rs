//! What the report shows, read from a run's ledger (read-only: a report may be written while
//! the run is still going).

use crate::store::ImageHash;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;

/// Judgments shown per round in the image grids.
const GRID_SAMPLES: usize = 8;
/// Rounds with image grids (the most recent ones).
const GRID_ROUNDS: usize = 6;

/// One round's figures.
#[derive(Debug, Clone, Default)]
pub struct RoundRow {
    /// Round id.
    pub id: i64,
    /// Trainer step it started at.
    pub step: u64,
    /// Samples judged.
    pub selected: u64,
    /// Judged samples the teacher won.
    pub teacher_wins: u64,
    /// Samples added by expansion.
    pub expanded: u64,
    /// Samples added by mutation.
    pub mutated: u64,
    /// Samples deactivated.
    pub deactivated: u64,
    /// Whether a kill cut it short.
    pub interrupted: bool,
}

/// One judged pair in a grid.
#[derive(Debug, Clone)]
pub struct GridCell {
    /// The prompt.
    pub prompt: String,
    /// The base model's render.
    pub base: ImageHash,
    /// The teacher's image.
    pub teacher: ImageHash,
    /// Whether the judge preferred the teacher.
    pub teacher_better: bool,
}

/// A sample in the prompt family tree.
#[derive(Debug, Clone)]
pub struct TreeNode {
    /// Sample id.
    pub id: i64,
    /// Its prompt.
    pub prompt: String,
    /// seed, expansion or mutation.
    pub origin: String,
    /// The sample it came from.
    pub parent: Option<i64>,
    /// Whether it is still in the active set.
    pub active: bool,
    /// The teacher whose image it trains on.
    pub teacher: String,
}

/// Everything the report draws.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// The run's name.
    pub name: String,
    /// When the report was read, UTC.
    pub generated_at: String,
    /// Every metric series by name, ordered by step.
    pub metrics: BTreeMap<String, Vec<(f64, f64)>>,
    /// Rounds in order.
    pub rounds: Vec<RoundRow>,
    /// Cumulative teacher calls and cost (USD) against minutes since the first paid call.
    pub spending: Vec<(f64, f64, f64)>,
    /// Cumulative judge calls that reported usage, tokens and cost (USD), against minutes on
    /// the same clock as `spending`.
    pub judge_spending: Vec<(f64, f64, f64, f64)>,
    /// Per-teacher (label, tournaments won, entered).
    pub teachers: Vec<(String, u64, u64)>,
    /// Image grids of the most recent rounds: (round id, step, cells).
    pub grids: Vec<(i64, u64, Vec<GridCell>)>,
    /// Every sample, for the family tree.
    pub tree: Vec<TreeNode>,
    /// Limits from the experiment: max teacher calls and max cost.
    pub max_calls: Option<u64>,
    /// Money limit in USD.
    pub max_cost: Option<f64>,
    /// Judge audit probes asked: (known-answer, swapped).
    pub audit_probes: (u64, u64),
}

/// Reads the report's data from the ledger at `ledger`.
pub fn read(ledger: &Path) -> rusqlite::Result<ReportData> {
    let conn = Connection::open_with_flags(ledger, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let generated_at = conn.query_row("SELECT strftime('%Y-%m-%d %H:%M:%S UTC', 'now')", [], |r| r.get(0))?;
    let mut data = ReportData { generated_at, ..ReportData::default() };

    let mut stmt = conn.prepare("SELECT name, step, value FROM metrics ORDER BY name, step")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?)))?;
    for row in rows {
        let (name, step, value) = row?;
        data.metrics.entry(name).or_default().push((step as f64, value));
    }

    let mut stmt = conn.prepare(
        "SELECT r.id, r.step, r.selected, r.teacher_wins, r.deactivated, r.interrupted,
                (SELECT count(*) FROM samples s WHERE s.round_added = r.id AND s.origin = 'expansion'),
                (SELECT count(*) FROM samples s WHERE s.round_added = r.id AND s.origin = 'mutation')
         FROM rounds r ORDER BY r.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RoundRow {
            id: r.get(0)?,
            step: r.get::<_, i64>(1)?.max(0) as u64,
            selected: r.get::<_, i64>(2)?.max(0) as u64,
            teacher_wins: r.get::<_, i64>(3)?.max(0) as u64,
            deactivated: r.get::<_, i64>(4)?.max(0) as u64,
            interrupted: r.get(5)?,
            expanded: r.get::<_, i64>(6)?.max(0) as u64,
            mutated: r.get::<_, i64>(7)?.max(0) as u64,
        })
    })?;
    data.rounds = rows.collect::<Result<_, _>>()?;

    // One clock for teachers and judge: minutes since the first paid call of either. A ledger
    // from before the judge's spending was recorded (schema v7, read without migrating) has none.
    let judge_table: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'judge_calls')",
        [],
        |r| r.get(0),
    )?;
    let start = if judge_table {
        "(SELECT min(t) FROM (SELECT min(created_at) AS t FROM api_calls UNION ALL SELECT min(created_at) FROM judge_calls))"
    } else {
        "(SELECT min(created_at) FROM api_calls)"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT (julianday(created_at) - julianday({start})) * 1440.0,
                cost_micro_usd FROM api_calls ORDER BY created_at, rowid"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)?)))?;
    let (mut calls, mut cost) = (0.0, 0.0);
    for row in rows {
        let (minutes, micro) = row?;
        calls += 1.0;
        cost += micro as f64 / 1e6;
        data.spending.push((minutes, calls, cost));
    }
    if judge_table {
        let mut stmt = conn.prepare(&format!(
            "SELECT (julianday(created_at) - julianday({start})) * 1440.0, input_tokens + output_tokens, cost_micro_usd
             FROM judge_calls ORDER BY created_at, rowid"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        let (mut calls, mut tokens, mut cost) = (0.0, 0.0, 0.0);
        for row in rows {
            let (minutes, used, micro) = row?;
            calls += 1.0;
            tokens += used as f64;
            cost += micro as f64 / 1e6;
            data.judge_spending.push((minutes, calls, tokens, cost));
        }
    }

    let mut stmt =
        conn.prepare("SELECT teacher, sum(won), count(*) FROM candidates GROUP BY teacher ORDER BY teacher")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get::<_, i64>(2)?.max(0) as u64)))?;
    data.teachers = rows.collect::<Result<_, _>>()?;

    let recent: Vec<&RoundRow> = data.rounds.iter().rev().filter(|r| r.selected > 0).take(GRID_ROUNDS).collect();
    let mut stmt = conn.prepare(
        "SELECT p.text, j.base_image_hash, j.teacher_image_hash, j.outcome = 'teacher_better'
         FROM judgments j JOIN samples s ON s.id = j.sample_id JOIN prompts p ON p.id = s.prompt_id
         WHERE j.round_id = ?1 ORDER BY j.id LIMIT ?2",
    )?;
    for round in recent.into_iter().rev() {
        let rows = stmt.query_map(rusqlite::params![round.id, GRID_SAMPLES as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
        })?;
        let mut cells = vec![];
        for row in rows {
            let (prompt, base, teacher, teacher_better) = row?;
            if let (Some(base), Some(teacher)) = (ImageHash::parse(&base), ImageHash::parse(&teacher)) {
                cells.push(GridCell { prompt, base, teacher, teacher_better });
            }
        }
        data.grids.push((round.id, round.step, cells));
    }

    let mut stmt = conn.prepare(
        "SELECT s.id, p.text, s.origin, s.parent_id, s.active, s.teacher
         FROM samples s JOIN prompts p ON p.id = s.prompt_id ORDER BY s.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TreeNode {
            id: r.get(0)?,
            prompt: r.get(1)?,
            origin: r.get(2)?,
            parent: r.get(3)?,
            active: r.get(4)?,
            teacher: r.get(5)?,
        })
    })?;
    data.tree = rows.collect::<Result<_, _>>()?;

    // A ledger from before the audit (schema v5, read without migrating) has no probes.
    let probes = |kind: &str| {
        conn.query_row("SELECT count(*) FROM audit_probes WHERE kind = ?1", [kind], |r| r.get::<_, i64>(0))
            .map_or(0, |n| n.max(0) as u64)
    };
    data.audit_probes = (probes("known"), probes("swap"));
    Ok(data)
}
