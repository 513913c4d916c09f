//! The statistics of the data-efficiency benchmark: a mean with its 95% confidence interval over
//! seeds (Student's t), the teacher calls an arm needs to reach a score (interpolated between
//! budgets), and that ratio's interval by a paired bootstrap over seeds.
//!
//! Written by hand rather than with a statistics crate: a t quantile table and a percentile
//! bootstrap are a few lines, and the whole benchmark needs nothing else.

use evolve_sdk::SplitMix64;

/// Bootstrap resamples for the ratio's interval.
const RESAMPLES: usize = 2000;

/// Two-sided 97.5% quantiles of Student's t with 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// A mean and the half-width of its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// Half the interval's width (infinite with fewer than two values).
    pub half_width: f64,
}

impl Estimate {
    /// The interval's ends.
    pub fn interval(self) -> (f64, f64) {
        (self.mean - self.half_width, self.mean + self.half_width)
    }

    /// Whether the intervals of `self` and `other` share no point.
    pub fn separate_from(self, other: Estimate) -> bool {
        let ((a_low, a_high), (b_low, b_high)) = (self.interval(), other.interval());
        a_high < b_low || b_high < a_low
    }
}

/// The mean of `values` with its t interval.
pub fn estimate(values: &[f64]) -> Estimate {
    let n = values.len();
    if n == 0 {
        return Estimate { mean: f64::NAN, half_width: f64::INFINITY };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate { mean, half_width: f64::INFINITY };
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T_975.get(n - 2).copied().unwrap_or(1.96);
    Estimate { mean, half_width: t * (variance / n as f64).sqrt() }
}

/// Where a curve reaches a score: a number of teacher calls, or a ratio of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    /// Reached there, between two measured budgets (or at one).
    At(f64),
    /// Reached already at the curve's first point, so at most there: no smaller budget was
    /// measured (with one budget it is always so, and the figure says little).
    AtMost(f64),
}

impl Reach {
    /// The figure, measured or bound.
    pub fn value(self) -> f64 {
        match self {
            Reach::At(v) | Reach::AtMost(v) => v,
        }
    }

    fn map(self, f: impl FnOnce(f64) -> f64) -> Reach {
        match self {
            Reach::At(v) => Reach::At(f(v)),
            Reach::AtMost(v) => Reach::AtMost(f(v)),
        }
    }
}

/// The teacher calls at which a curve of (calls, score) points, ascending in calls, first reaches
/// `target`, interpolating linearly in log calls between points; `None` if it never does.
pub fn calls_to_reach(curve: &[(f64, f64)], target: f64) -> Option<Reach> {
    let first = curve.first()?;
    if first.1 >= target {
        return Some(Reach::AtMost(first.0));
    }
    curve.windows(2).find(|w| w[1].1 >= target).map(|w| {
        let ((c0, s0), (c1, s1)) = (w[0], w[1]);
        let along = if s1 > s0 { (target - s0) / (s1 - s0) } else { 1.0 };
        if along >= 1.0 {
            return Reach::At(c1);
        }
        Reach::At((c0.max(1.0).ln() + along * (c1.max(1.0).ln() - c0.max(1.0).ln())).exp())
    })
}

/// Per seed, an arm's (calls, score) at every budget, budgets ascending.
pub type Runs = Vec<Vec<(f64, f64)>>;

/// The fraction of the baseline's calls at its largest budget that `arm` needs to reach the
/// baseline's mean score there, from the mean curves over seeds; `None` if never reached.
pub fn calls_ratio(baseline: &Runs, arm: &Runs) -> Option<Reach> {
    let (base_curve, arm_curve) = (mean_curve(baseline), mean_curve(arm));
    let &(base_calls, target) = base_curve.last()?;
    calls_to_reach(&arm_curve, target).map(|calls| calls.map(|c| c / base_calls.max(1.0)))
}

/// [`calls_ratio`] with a 95% percentile interval from resampling seeds (the same seeds for
/// both arms: seed `i` of each shares its initial weights and prompts). An interval end is
/// infinite where resamples never reached the target.
pub fn calls_ratio_interval(baseline: &Runs, arm: &Runs) -> (Option<Reach>, (f64, f64)) {
    let point = calls_ratio(baseline, arm);
    let n = baseline.len().min(arm.len());
    if n < 2 {
        return (point, (0.0, f64::INFINITY));
    }
    let mut rng = SplitMix64::new(0xB007);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            let pick = |runs: &Runs| picks.iter().map(|&i| runs[i].clone()).collect::<Runs>();
            calls_ratio(&pick(baseline), &pick(arm)).map_or(f64::INFINITY, Reach::value)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (point, (at(0.025), at(0.975)))
}

/// The pointwise mean over seeds of per-seed curves.
fn mean_curve(runs: &Runs) -> Vec<(f64, f64)> {
    let len = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            let n = runs.len() as f64;
            (runs.iter().map(|r| r[i].0).sum::<f64>() / n, runs.iter().map(|r| r[i].1).sum::<f64>() / n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_use_students_t() {
        let e = estimate(&[1.0, 2.0, 3.0]);
        assert_eq!(e.mean, 2.0);
        // sd 1, n 3: 4.303 / sqrt(3).
        assert!((e.half_width - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert!(estimate(&[5.0]).half_width.is_infinite());
        assert!(estimate(&[0.0, 0.1, 0.0]).separate_from(estimate(&[0.9, 1.0, 1.1])));
        assert!(!estimate(&[0.0, 1.0]).separate_from(estimate(&[0.5, 0.6])));
    }

    #[test]
    fn calls_to_reach_interpolates_in_log_calls() {
        let curve = [(10.0, 0.1), (100.0, 0.3), (1000.0, 0.5)];
        assert_eq!(calls_to_reach(&curve, 0.05), Some(Reach::AtMost(10.0)), "reached at the first budget");
        let Some(Reach::At(half_way)) = calls_to_reach(&curve, 0.2) else { panic!("between budgets") };
        assert!((half_way - 100f64.sqrt() * 10f64.sqrt()).abs() < 1e-9, "{half_way}");
        assert_eq!(calls_to_reach(&curve, 0.5), Some(Reach::At(1000.0)));
        assert_eq!(calls_to_reach(&curve, 0.6), None);
    }

    #[test]
    fn the_ratio_and_its_interval_follow_the_seeds() {
        // The baseline reaches 0.3 at 200 calls; the arm at 60 calls on every seed.
        let baseline: Runs = (0..4).map(|i| vec![(20.0, 0.05), (60.0, 0.1), (200.0, 0.3 + 0.01 * i as f64)]).collect();
        let arm: Runs = (0..4).map(|i| vec![(20.0, 0.1), (60.0, 0.4 + 0.01 * i as f64), (200.0, 0.5)]).collect();
        let (ratio, (low, high)) = calls_ratio_interval(&baseline, &arm);
        let Some(Reach::At(ratio)) = ratio else { panic!("the arm's first budget is below the target") };
        assert!(ratio > 0.1 && ratio < 0.3, "{ratio}");
        assert!(low <= ratio && ratio <= high && high < 0.3, "{low} {ratio} {high}");
        // An arm that never gets there has no ratio and an open interval.
        let weak: Runs = (0..4).map(|_| vec![(20.0, 0.0), (60.0, 0.0), (200.0, 0.1)]).collect();
        let (none, (_, open)) = calls_ratio_interval(&baseline, &weak);
        assert!(none.is_none() && open.is_infinite());
    }

    #[test]
    fn a_ratio_reached_at_the_first_budget_is_an_upper_bound() {
        // One budget: both arms' only point; the arm is ahead, so its ratio is 1 "at most".
        let baseline: Runs = vec![vec![(500.0, 0.10)], vec![(500.0, 0.12)]];
        let arm: Runs = vec![vec![(500.0, 0.15)], vec![(500.0, 0.11)]];
        assert_eq!(calls_ratio(&baseline, &arm), Some(Reach::AtMost(1.0)));
        // Two budgets, the arm's smaller one already past the baseline's larger: at most 1/3.
        let baseline: Runs = vec![vec![(500.0, 0.10), (1500.0, 0.2)]];
        let arm: Runs = vec![vec![(500.0, 0.25), (1500.0, 0.3)]];
        assert_eq!(calls_ratio(&baseline, &arm), Some(Reach::AtMost(1.0 / 3.0)));
    }
}
