//! The judge audit's probes (`crate::audit`), one row each.

use super::ledger::{Ledger, LedgerError};
use crate::audit::Tally;
use rusqlite::params;

/// One probe of the judge, about to be written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The teacher's image against pure noise: whether the teacher's was shown first, and
    /// whether the judge chose it.
    Known {
        /// The right image was shown first.
        right_first: bool,
        /// The judge chose the right image.
        right: bool,
    },
    /// A comparison asked again with the images swapped: whether both answers chose the same
    /// image (or both said neither).
    Swap {
        /// The answers agreed.
        consistent: bool,
    },
}

impl Ledger {
    /// Records `probe`, asked about `sample` in `round`, with the judge's raw reply.
    pub fn record_probe(&self, round: i64, sample: i64, probe: &Probe, raw: &str) -> Result<(), LedgerError> {
        let (kind, right_first, passed) = match *probe {
            Probe::Known { right_first, right } => ("known", Some(right_first), right),
            Probe::Swap { consistent } => ("swap", None, consistent),
        };
        self.sql(|c| {
            c.execute(
                "INSERT INTO audit_probes (round_id, sample_id, kind, right_first, passed, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![round, sample, kind, right_first, passed, raw],
            )
            .map(|_| ())
        })
    }

    /// Every probe so far, counted.
    pub fn audit_tally(&self) -> Result<Tally, LedgerError> {
        self.sql(|c| {
            let mut tally = Tally::default();
            let mut stmt = c.prepare(
                "SELECT kind, coalesce(right_first, 0), count(*), sum(passed) FROM audit_probes
                 GROUP BY kind, right_first",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })?;
            for row in rows {
                let (kind, right_first, asked, passed) = row?;
                let counts = (asked as u64, passed as u64);
                match (kind.as_str(), right_first) {
                    ("swap", _) => tally.swaps = counts,
                    (_, true) => tally.right_first = counts,
                    (_, false) => tally.right_second = counts,
                }
            }
            Ok(tally)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_counted_by_kind_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = crate::store::RunDir::create(dir.path(), "").unwrap();
        let image = evolve_sdk::Image::from_rgb(2, 2, vec![9; 12]).unwrap();
        let stored = run.images.put(&image).unwrap();
        let new = crate::store::NewSample {
            prompt: "a red circle",
            image: &stored,
            teacher: "shapes",
            origin: evolve_sdk::Origin::Seed,
            parent: None,
            round: None,
        };
        let sample = run.ledger.add_sample(&new).unwrap();
        let round = run.ledger.begin_round(10).unwrap();
        for (right_first, right) in [(true, true), (true, true), (true, false), (false, true), (false, false)] {
            run.ledger.record_probe(round, sample, &Probe::Known { right_first, right }, "(A)").unwrap();
        }
        for consistent in [true, true, true, false] {
            run.ledger.record_probe(round, sample, &Probe::Swap { consistent }, "(B)").unwrap();
        }
        let tally = run.ledger.audit_tally().unwrap();
        assert_eq!(tally, Tally { right_first: (3, 2), right_second: (2, 1), swaps: (4, 3) });
    }
}
