//! The judge's spending: one row per judge call that cost money.

use super::ledger::{Ledger, LedgerError};
use evolve_sdk::{Cost, Usage};
use rusqlite::params;

/// Which judge method a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeCallKind {
    /// A comparison.
    Compare,
    /// An expansion.
    Expand,
    /// A mutation.
    Mutate,
}

impl JudgeCallKind {
    fn as_str(self) -> &'static str {
        match self {
            JudgeCallKind::Compare => "compare",
            JudgeCallKind::Expand => "expand",
            JudgeCallKind::Mutate => "mutate",
        }
    }
}

/// The judge's spending so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeTotals {
    /// Calls recorded.
    pub calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Their cost.
    pub cost: Cost,
}

impl Ledger {
    /// Records a judge call that used `usage`; `failed` when it gave no usable answer (charged
    /// all the same).
    pub fn record_judge_call(&self, kind: JudgeCallKind, usage: &Usage, failed: bool) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO judge_calls (kind, input_tokens, output_tokens, cost_micro_usd, failed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    kind.as_str(),
                    usage.input_tokens as i64,
                    usage.output_tokens as i64,
                    usage.cost.micro_usd as i64,
                    failed
                ],
            )
            .map(|_| ())
        })
    }

    /// What the judge has spent.
    pub fn judge_totals(&self) -> Result<JudgeTotals, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
                        coalesce(sum(cost_micro_usd), 0) FROM judge_calls",
                [],
                |r| {
                    Ok(JudgeTotals {
                        calls: r.get::<_, i64>(0)? as u64,
                        input_tokens: r.get::<_, i64>(1)? as u64,
                        output_tokens: r.get::<_, i64>(2)? as u64,
                        cost: Cost { micro_usd: r.get::<_, i64>(3)? as u64 },
                    })
                },
            )
        })
    }
}
