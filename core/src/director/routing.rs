//! Which teachers a new prompt is bought from (`director.teacher_selection`).
//!
//! Buying every prompt from every teacher and keeping the tournament's winner costs N teachers
//! N times per prompt. EvolveDirector renders an expansion with the teacher whose image won its
//! parent's tournament; `bandit` goes further and learns, from the tournaments it still holds,
//! how often each teacher's image is as good as the best, and buys from the cheapest teacher
//! that is as good as the best.
//!
//! Why not wins per dollar: a prompt bought from one teacher goes unchecked into the training
//! set, so a teacher that is right 70% of the time at half the price buys more right images per
//! dollar *and* 30% wrong ones, which cost the model more than they save (measured with `evolve
//! bench teacher-routing`: 3.4 points of ShapesEval on both seeds).

use crate::experiment::TeacherSelection;
use crate::store::{PendingRow, TeacherRecord};
use evolve_sdk::{Cost, SplitMix64};
use rand_distr::{Beta, Distribution};

/// Share of `bandit` purchases that are also bought from one other teacher, drawn at random, so
/// that the tournaments go on telling the teachers apart. Two entrants, not all: a tournament
/// between the choice and one other tells as much about that other teacher, at the price of one
/// extra image instead of all of them.
pub const EXPLORE: f64 = 0.05;

/// Tournaments a teacher must have entered before `bandit` trusts its record.
pub const MIN_ENTERED: u64 = 5;

/// How far below the best teacher's drawn quality a cheaper one may be and still count as good
/// as the best.
pub const TOLERANCE: f64 = 0.05;

/// What routing knows about one teacher.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its label.
    pub label: &'a str,
    /// Its quote for this prompt.
    pub price: Cost,
}

/// The indices of `teachers` to buy a prompt from. `parent_teacher` is the teacher whose image
/// the prompt's parent trains on (none for the initial set); `records` the teachers'
/// tournament records so far.
pub fn choose(
    selection: TeacherSelection,
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
            // Until every teacher has a record: a tournament of all (the first of the initial
            // set). From then on the initial set is routed like any other prompt.
            if unproven {
                return all;
            }
            let exploring = rng.chance(EXPLORE);
            // Thompson sampling: a plausible quality for each (how often its image is as good
            // as the tournament's best), drawn from its record; then the cheapest teacher whose
            // draw is within TOLERANCE of the best draw.
            let quality = |t: &Candidate<'_>, rng: &mut crate::audit::Rng| {
                let (good, entered) = record(t.label).map_or((0, 0), |r| (r.as_good, r.entered));
                let worse = entered.saturating_sub(good);
                Beta::new(1.0 + good as f64, 1.0 + worse as f64).map_or(0.5, |b| b.sample(rng))
            };
            let drawn: Vec<f64> = teachers.iter().map(|t| quality(t, &mut rng)).collect();
            let best = drawn.iter().copied().fold(f64::MIN, f64::max);
            let cheapest = (0..teachers.len())
                .filter(|&i| drawn[i] >= best - TOLERANCE)
                .min_by_key(|&i| teachers[i].price.micro_usd)
                .unwrap_or(0);
            if exploring {
                let other = (cheapest + 1 + rng.below(teachers.len() as u64 - 1) as usize) % teachers.len();
                let mut pair = vec![cheapest, other];
                pair.sort_unstable();
                return pair;
            }
            vec![cheapest]
        }
    }
}

/// How many of the prompts about to be bought together must be bought (and judged) before the
/// rest are routed: with `bandit` and a teacher still unproven, the first [`MIN_ENTERED`], each a
/// tournament of all, so that every teacher has a record when the rest are routed. Without it an
/// initial set, bought all at once before any record exists, would be a tournament of all
/// from first prompt to last.
pub fn warm_up(selection: TeacherSelection, teachers: &[&str], records: &[TeacherRecord]) -> usize {
    let entered = |label: &&str| records.iter().find(|r| r.teacher == *label).map_or(0, |r| r.entered);
    if selection != TeacherSelection::Bandit || teachers.len() < 2 {
        return 0;
    }
    (MIN_ENTERED - teachers.iter().map(entered).min().unwrap_or(0).min(MIN_ENTERED)) as usize
}

/// `seed` mixed with what identifies a purchase, so that a choice does not depend on the order
/// purchases run in.
pub fn seed_for(run_seed: u64, row: &PendingRow) -> u64 {
    SplitMix64::from_parts(&[run_seed, row.id as u64, 0x7EAC]).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(teacher: &str, as_good: u64, entered: u64) -> TeacherRecord {
        TeacherRecord { teacher: teacher.into(), wins: 0, as_good, entered }
    }

    #[test]
    fn all_buys_from_everyone_and_parent_winner_from_the_parents_teacher() {
        let teachers = [Candidate { label: "a", price: Cost::ZERO }, Candidate { label: "b", price: Cost::ZERO }];
        assert_eq!(choose(TeacherSelection::All, &teachers, Some("b"), &[], 1), [0, 1]);
        assert_eq!(choose(TeacherSelection::ParentWinner, &teachers, Some("b"), &[], 1), [1]);
        // A parent from elsewhere (an imported sample) or none: everyone.
        assert_eq!(choose(TeacherSelection::ParentWinner, &teachers, Some("imported"), &[], 1), [0, 1]);
        assert_eq!(choose(TeacherSelection::ParentWinner, &teachers, None, &[], 1), [0, 1]);
    }

    #[test]
    fn only_an_unproven_bandit_warms_up_and_only_for_the_tournaments_it_lacks() {
        let teachers = ["dear", "cheap"];
        assert_eq!(warm_up(TeacherSelection::Bandit, &teachers, &[]), MIN_ENTERED as usize);
        let partly = [record("dear", 2, 3), record("cheap", 1, 2)];
        assert_eq!(warm_up(TeacherSelection::Bandit, &teachers, &partly), MIN_ENTERED as usize - 2);
        let proven = [record("dear", 5, 5), record("cheap", 1, 5)];
        assert_eq!(warm_up(TeacherSelection::Bandit, &teachers, &proven), 0);
        for other in [TeacherSelection::All, TeacherSelection::ParentWinner] {
            assert_eq!(warm_up(other, &teachers, &[]), 0);
        }
        assert_eq!(warm_up(TeacherSelection::Bandit, &teachers[..1], &[]), 0, "one teacher needs no record");
    }

    #[test]
    fn the_bandit_buys_from_the_cheapest_teacher_as_good_as_the_best_and_keeps_exploring() {
        let dear = Candidate { label: "dear", price: Cost::from_usd(0.04) };
        let fair = Candidate { label: "fair", price: Cost::from_usd(0.02) };
        let cheap = Candidate { label: "cheap", price: Cost::from_usd(0.01) };
        let teachers = [dear, fair, cheap];
        let choices = |records: &[TeacherRecord]| -> Vec<Vec<usize>> {
            (0..1000).map(|seed| choose(TeacherSelection::Bandit, &teachers, None, records, seed)).collect()
        };
        let only = |picks: &[Vec<usize>], i: usize| picks.iter().filter(|c| c.as_slice() == [i]).count();
        // Without records: a tournament of all.
        assert!(choices(&[]).iter().all(|c| c == &[0, 1, 2]));
        // The dear one is always as good as the best, the others 70% and 20% of the time: more
        // right images per dollar from `fair`, but also wrong ones. The dear one it is.
        let picks = choices(&[record("dear", 300, 300), record("fair", 210, 300), record("cheap", 60, 300)]);
        assert!(only(&picks, 0) > 850, "{} of 1000", only(&picks, 0));
        // About one in twenty explore: the choice and one other, never all three.
        let exploring: Vec<&Vec<usize>> = picks.iter().filter(|c| c.len() > 1).collect();
        assert!((25..=80).contains(&exploring.len()), "{}", exploring.len());
        assert!(exploring.iter().all(|c| c.len() == 2 && c.contains(&0)), "{exploring:?}");
        assert!(exploring.iter().any(|c| c.contains(&1)) && exploring.iter().any(|c| c.contains(&2)));
        // A cheaper teacher as good as the dear one is the better buy.
        let picks = choices(&[record("dear", 300, 300), record("fair", 299, 300), record("cheap", 60, 300)]);
        assert!(only(&picks, 1) > 850, "{} of 1000", only(&picks, 1));
        // The initial set too, once every teacher has a record; before, a tournament of all.
        let records = [record("dear", 90, 100), record("fair", 60, 100), record("cheap", 10, 100)];
        let seeds: Vec<Vec<usize>> =
            (0..100).map(|s| choose(TeacherSelection::Bandit, &teachers, None, &records, s)).collect();
        assert!(only(&seeds, 0) > 80, "{seeds:?}");
        let unproven = [record("dear", 3, 3), record("fair", 2, 3), record("cheap", 1, 3)];
        assert_eq!(choose(TeacherSelection::Bandit, &teachers, None, &unproven, 3), [0, 1, 2]);
    }
}
