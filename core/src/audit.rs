//! The judge audit: how far a judge's verdicts can be trusted, estimated while the run goes.
//!
//! Two kinds of probe ride along with a round's comparisons (`[audit]` in the experiment):
//!
//! - **known answer**: the teacher's image against pure noise, in random order. The teacher's
//!   image is right by construction, so every miss is the judge's error;
//! - **swap**: a comparison asked again with the two images swapped. A judge that reads the
//!   images answers the same both times; one that leans on position does not.
//!
//! A judge that answers "the first image" with probability `b` whatever it sees, and otherwise
//! reads the images and errs with probability `e`, is right on a known-answer probe with
//! probability `p1 = b + (1 - b)(1 - e)` when the right image is shown first and
//! `p2 = (1 - b)(1 - e)` when it is shown second. So `b = p1 - p2` and `e = 1 - p2 / (1 - b)`:
//! position bias and error rate are both identified by the two rates. Their 95% intervals are
//! credible intervals, from Jeffreys posteriors (`Beta(k + ½, n - k + ½)`) of `p1` and `p2`
//! sampled together, so that a judge never caught erring gets an interval, not a point.

use crate::experiment::AuditSettings;
use evolve_sdk::SplitMix64;
use rand::RngCore;
use rand_distr::{Beta, Distribution};

/// Posterior draws per interval.
const DRAWS: usize = 4000;

/// Probe counts (everything the estimates need).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Known-answer probes with the right image shown first: (asked, answered right).
    pub right_first: (u64, u64),
    /// Known-answer probes with the right image shown second: (asked, answered right).
    pub right_second: (u64, u64),
    /// Swap probes: (asked, answered the same image both times).
    pub swaps: (u64, u64),
}

/// An estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// Whether `value` lies within the interval.
    pub fn contains(&self, value: f64) -> bool {
        (self.low..=self.high).contains(&value)
    }
}

/// What the probes say about the judge (`None`: no probe of that kind yet).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimates {
    /// How often the judge answers "the first image" whatever it sees.
    pub position_bias: Option<Interval>,
    /// How often a judge that reads the images still answers wrong.
    pub error_rate: Option<Interval>,
    /// How often a comparison asked again with the images swapped gets the same answer.
    pub consistency: Option<Interval>,
}

/// The estimates of `tally`; `seed` makes the intervals reproducible.
pub fn estimate(tally: &Tally, seed: u64) -> Estimates {
    let mut rng = Rng(SplitMix64::new(seed));
    let consistency = (tally.swaps.0 > 0).then(|| {
        let draws = posterior(tally.swaps, &mut rng);
        summarise(ratio(tally.swaps), draws)
    });
    if tally.right_first.0 == 0 || tally.right_second.0 == 0 {
        return Estimates { consistency, ..Estimates::default() };
    }
    let (p1, p2) = (posterior(tally.right_first, &mut rng), posterior(tally.right_second, &mut rng));
    let (bias, error): (Vec<f64>, Vec<f64>) = p1.iter().zip(&p2).map(|(&p1, &p2)| bias_and_error(p1, p2)).unzip();
    let (b, e) = bias_and_error(ratio(tally.right_first), ratio(tally.right_second));
    Estimates { position_bias: Some(summarise(b, bias)), error_rate: Some(summarise(e, error)), consistency }
}

/// What is wrong with a judge whose probes gave `found`, by `settings`' limits: a flaw counts
/// only once its whole 95% interval is past the limit, so a few unlucky probes early in a run
/// do not condemn a judge.
pub fn failures(found: &Estimates, settings: &AuditSettings) -> Vec<String> {
    let mut failed = vec![];
    let show = |i: &Interval| format!("{:.2} (95% interval {:.2} to {:.2})", i.estimate, i.low, i.high);
    if let Some(bias) = found.position_bias.filter(|i| i.low > settings.max_position_bias) {
        failed.push(format!("position bias {} above {}", show(&bias), settings.max_position_bias));
    }
    if let Some(error) = found.error_rate.filter(|i| i.low > settings.max_error_rate) {
        failed.push(format!("error rate {} above {}", show(&error), settings.max_error_rate));
    }
    if let Some(consistency) = found.consistency.filter(|i| i.high < settings.min_consistency) {
        failed.push(format!("self-consistency {} below {}", show(&consistency), settings.min_consistency));
    }
    failed
}

/// `(b, e)` from the two known-answer rates (the model in the module's comment), each clamped
/// to `[0, 1]`: a judge right more often when the answer comes second has no bias towards first.
fn bias_and_error(p1: f64, p2: f64) -> (f64, f64) {
    let b = (p1 - p2).clamp(0.0, 1.0);
    let e = if b >= 1.0 { 0.0 } else { (1.0 - p2 / (1.0 - b)).clamp(0.0, 1.0) };
    (b, e)
}

fn ratio((n, k): (u64, u64)) -> f64 {
    k as f64 / n.max(1) as f64
}

/// Draws of a rate from its Jeffreys posterior after `k` successes in `n`.
fn posterior((n, k): (u64, u64), rng: &mut Rng) -> Vec<f64> {
    let k = k.min(n) as f64;
    match Beta::new(k + 0.5, n as f64 - k + 0.5) {
        Ok(beta) => (0..DRAWS).map(|_| beta.sample(rng)).collect(),
        // Unreachable for the shapes above; a flat posterior is the honest fallback.
        Err(_) => (0..DRAWS).map(|i| (i as f64 + 0.5) / DRAWS as f64).collect(),
    }
}

/// The 2.5% and 97.5% quantiles of `draws` around `estimate`.
fn summarise(estimate: f64, mut draws: Vec<f64>) -> Interval {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    Interval { estimate, low: at(0.025).min(estimate), high: at(0.975).max(estimate) }
}

/// The SDK's seeded generator, for `rand_distr`'s samplers.
pub(crate) struct Rng(SplitMix64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.0.chance(p)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes of a judge with position bias `b` and error rate `e`, `n` of each order.
    fn simulate(b: f64, e: f64, n: u64, seed: u64) -> Tally {
        let mut rng = SplitMix64::new(seed);
        let mut answer = |right_first: bool| {
            if rng.chance(b) { right_first } else { !rng.chance(e) }
        };
        let first = (0..n).filter(|_| answer(true)).count() as u64;
        let second = (0..n).filter(|_| answer(false)).count() as u64;
        Tally { right_first: (n, first), right_second: (n, second), swaps: (0, 0) }
    }

    #[test]
    fn the_intervals_recover_the_judges_flaws() {
        let mut missed = 0;
        let mut cases = 0;
        for (b, e) in [(0.0, 0.0), (0.1, 0.1), (0.3, 0.05), (0.0, 0.25), (0.5, 0.2)] {
            for seed in 0..20 {
                let found = estimate(&simulate(b, e, 200, seed), seed);
                let (bias, error) = (found.position_bias.unwrap(), found.error_rate.unwrap());
                cases += 2;
                missed += usize::from(!bias.contains(b)) + usize::from(!error.contains(e));
                assert!(bias.high - bias.low < 0.25, "{bias:?}");
            }
        }
        // 95% intervals: about 1 in 20 may miss; far more would mean they are too narrow.
        assert!(missed <= cases / 10, "{missed} of {cases} intervals missed the set value");
    }

    #[test]
    fn an_exact_judge_gets_intervals_at_zero_not_points() {
        let found = estimate(&Tally { right_first: (50, 50), right_second: (50, 50), swaps: (40, 40) }, 1);
        let bias = found.position_bias.unwrap();
        assert_eq!(bias.estimate, 0.0);
        assert!(bias.low == 0.0 && bias.high > 0.0 && bias.high < 0.1, "{bias:?}");
        let consistency = found.consistency.unwrap();
        assert!(consistency.estimate == 1.0 && consistency.low > 0.9 && consistency.low < 1.0, "{consistency:?}");
    }

    #[test]
    fn a_judge_fails_only_once_its_interval_is_past_the_limit() {
        let settings = AuditSettings::default();
        let biased = estimate(&simulate(0.6, 0.05, 100, 3), 3);
        let failed = failures(&biased, &settings);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].starts_with("position bias 0.") && failed[0].ends_with("above 0.2"), "{failed:?}");
        // Four probes cannot tell a judge that erred twice from a sound one.
        let early = Tally { right_first: (2, 1), right_second: (2, 1), swaps: (2, 1) };
        assert!(failures(&estimate(&early, 1), &settings).is_empty());
        let inconsistent = Tally { swaps: (100, 30), ..Tally::default() };
        assert!(failures(&estimate(&inconsistent, 1), &settings)[0].starts_with("self-consistency 0.30"));
    }

    #[test]
    fn without_probes_of_both_orders_there_is_no_estimate() {
        let found = estimate(&Tally { right_first: (10, 9), right_second: (0, 0), swaps: (0, 0) }, 1);
        assert_eq!(found, Estimates::default());
    }
}
