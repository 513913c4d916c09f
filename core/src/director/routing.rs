//! Which teachers a new prompt is bought from (`director.teacher_selection`).
//!
//! Buying every prompt from every teacher and keeping the tournament's winner costs N teachers
//! N times per prompt. EvolveDirector renders an expansion with the teacher whose image won its
//! parent's tournament; `bandit` goes further and learns, from the tournaments it still holds,
//! which teacher wins most per dollar.

use crate::experiment::TeacherSelection;
use crate::store::{PendingRow, TeacherRecord};
use evolve_sdk::{Cost, Origin, SplitMix64};
use rand_distr::{Beta, Distribution};

/// Share of `bandit` purchases still bought from every teacher, so that the tournaments go on
/// telling the teachers apart.
pub const EXPLORE: f64 = 0.1;

/// Tournaments a teacher must have entered before `bandit` trusts its record.
pub const MIN_ENTERED: u64 = 5;

/// What routing knows about one teacher.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its label.
    pub label: &'a str,
    /// Its quote for this prompt.
    pub price: Cost,
}

/// The indices of `teachers` to buy `row` from. `parent_teacher` is the teacher whose image
/// the prompt's parent trains on; `records` the teachers' tournament records so far.
pub fn choose(
    selection: TeacherSelection,
    row: &PendingRow,
    teachers: &[Candidate<'_>],
    parent_teacher: Option<&str>,
    records: &[TeacherRecord],
    seed: u64,
) -> Vec<usize> {
    let all = (0..teachers.len()).collect();
    if teachers.len() < 2 {
        return all;
    }
    match selection {
        TeacherSelection::All => all,
        TeacherSelection::ParentWinner => {
            match parent_teacher.and_then(|parent| teachers.iter().position(|t| t.label == parent)) {
                Some(index) => vec![index],
                None => all,
            }
        }
        TeacherSelection::Bandit => {
            let mut rng = crate::audit::Rng::new(seed);
            let record = |label: &str| records.iter().find(|r| r.teacher == label);
            let unproven = teachers.iter().any(|t| record(t.label).is_none_or(|r| r.entered < MIN_ENTERED));
            // The initial set, teachers without a record yet, and a share of the rest: a
            // tournament of all.
            if row.want.origin == Origin::Seed || unproven || rng.chance(EXPLORE) {
                return all;
            }
            // Thompson sampling: a plausible win rate for each, drawn from its record, per
            // micro-dollar (a free teacher is worth its win rate a million times over).
            let value = |t: &Candidate<'_>, rng: &mut crate::audit::Rng| {
                let (wins, entered) = record(t.label).map_or((0, 0), |r| (r.wins, r.entered));
                let losses = entered.saturating_sub(wins);
                let rate = Beta::new(1.0 + wins as f64, 1.0 + losses as f64).map_or(0.5, |b| b.sample(rng));
                rate / t.price.micro_usd.max(1) as f64
            };
            let values: Vec<f64> = teachers.iter().map(|t| value(t, &mut rng)).collect();
            let best = (0..teachers.len()).max_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap_or(0);
            vec![best]
        }
    }
}

/// `seed` mixed with what identifies a purchase, so that a choice does not depend on the order
/// purchases run in.
pub fn seed_for(run_seed: u64, row: &PendingRow) -> u64 {
    SplitMix64::from_parts(&[run_seed, row.id as u64, 0x7EAC]).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewPending;

    fn row(origin: Origin) -> PendingRow {
        let parent = (origin != Origin::Seed).then_some(1);
        PendingRow { id: 7, want: NewPending { prompt: "a red circle".into(), origin, parent, round: None } }
    }

    fn record(teacher: &str, wins: u64, entered: u64) -> TeacherRecord {
        TeacherRecord { teacher: teacher.into(), wins, entered }
    }

    #[test]
    fn all_buys_from_everyone_and_parent_winner_from_the_parents_teacher() {
        let teachers = [Candidate { label: "a", price: Cost::ZERO }, Candidate { label: "b", price: Cost::ZERO }];
        let expansion = row(Origin::Expansion);
        assert_eq!(choose(TeacherSelection::All, &expansion, &teachers, Some("b"), &[], 1), [0, 1]);
        assert_eq!(choose(TeacherSelection::ParentWinner, &expansion, &teachers, Some("b"), &[], 1), [1]);
        // A parent from elsewhere (an imported sample) or none: everyone.
        assert_eq!(choose(TeacherSelection::ParentWinner, &expansion, &teachers, Some("imported"), &[], 1), [0, 1]);
        assert_eq!(choose(TeacherSelection::ParentWinner, &row(Origin::Seed), &teachers, None, &[], 1), [0, 1]);
    }

    #[test]
    fn the_bandit_buys_the_most_wins_per_dollar_and_keeps_exploring() {
        let dear = Candidate { label: "dear", price: Cost::from_usd(0.08) };
        let cheap = Candidate { label: "cheap", price: Cost::from_usd(0.01) };
        let teachers = [dear, cheap];
        let expansion = row(Origin::Expansion);
        let choices = |records: &[TeacherRecord]| -> Vec<Vec<usize>> {
            (0..1000).map(|seed| choose(TeacherSelection::Bandit, &expansion, &teachers, None, records, seed)).collect()
        };
        // Without records: a tournament of all.
        assert!(choices(&[]).iter().all(|c| c == &[0, 1]));
        // The dear one wins 90% of its tournaments, the cheap one 60%: per dollar, the cheap one.
        let picks = choices(&[record("dear", 90, 100), record("cheap", 60, 100)]);
        let cheap_only = picks.iter().filter(|c| c.as_slice() == [1]).count();
        let everyone = picks.iter().filter(|c| c.len() == 2).count();
        assert!(cheap_only > 850, "{cheap_only} of 1000");
        assert!((60..=140).contains(&everyone), "about a tenth explore: {everyone}");
        // A cheap teacher that never wins is not worth its price.
        let picks = choices(&[record("dear", 95, 100), record("cheap", 1, 100)]);
        assert!(picks.iter().filter(|c| c.as_slice() == [0]).count() > 850);
        // The initial set is always a tournament.
        let seed = row(Origin::Seed);
        let records = [record("dear", 90, 100), record("cheap", 60, 100)];
        assert_eq!(choose(TeacherSelection::Bandit, &seed, &teachers, None, &records, 3), [0, 1]);
    }
}
