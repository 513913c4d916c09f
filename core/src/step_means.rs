//! What the training loops record in the ledger every few steps: the mean of each step statistic
//! since the last record, not the last step's value.
//!
//! One step's loss depends on the diffusion timesteps that step happened to draw (a batch of
//! high-noise samples can weigh several times a batch of clean ones), so a curve of single-step
//! losses is mostly that draw. The mean over the interval is the curve people read, and a test can
//! compare two points of it.

use evolve_sdk::StepStats;

/// Steps between two records of the training metrics.
pub const RECORD_EVERY: u64 = 10;

/// Sums of the step statistics since the last [`StepMeans::take`].
#[derive(Debug, Default, Clone)]
pub struct StepMeans {
    loss: f64,
    grad_norm: f64,
    learning_rate: f32,
    steps: u32,
}

/// The statistics of an interval: means of the loss and gradient norm, the latest learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalStats {
    /// Mean training loss of the interval's steps.
    pub loss: f64,
    /// Mean gradient norm (before clipping) of the interval's steps.
    pub grad_norm: f64,
    /// The learning rate of the interval's last step (a schedule, not a measurement).
    pub learning_rate: f64,
}

impl StepMeans {
    /// Adds one step.
    pub fn add(&mut self, stats: &StepStats) {
        self.loss += f64::from(stats.loss);
        self.grad_norm += f64::from(stats.grad_norm);
        self.learning_rate = stats.learning_rate;
        self.steps += 1;
    }

    /// The interval's statistics, starting a new interval; `None` when no step was added since the
    /// last call.
    pub fn take(&mut self) -> Option<IntervalStats> {
        let taken = std::mem::take(self);
        (taken.steps > 0).then(|| {
            let n = f64::from(taken.steps);
            IntervalStats {
                loss: taken.loss / n,
                grad_norm: taken.grad_norm / n,
                learning_rate: f64::from(taken.learning_rate),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(loss: f32, grad_norm: f32, learning_rate: f32) -> StepStats {
        StepStats { step: 0, loss, learning_rate, grad_norm }
    }

    #[test]
    fn an_interval_reports_means_and_the_latest_learning_rate_then_starts_over() {
        let mut means = StepMeans::default();
        assert_eq!(means.take(), None, "nothing added yet");
        means.add(&step(1.0, 4.0, 0.1));
        means.add(&step(3.0, 2.0, 0.2));
        assert_eq!(means.take(), Some(IntervalStats { loss: 2.0, grad_norm: 3.0, learning_rate: 0.2f32 as f64 }));
        assert_eq!(means.take(), None, "take starts a new interval");
        means.add(&step(5.0, 1.0, 0.3));
        assert_eq!(means.take().map(|s| s.loss), Some(5.0));
    }
}
