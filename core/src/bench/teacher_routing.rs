//! `evolve bench teacher-routing`: what each `director.teacher_selection` policy pays and what
//! its model scores, over seeds, with three teachers of the embedded world that differ in price
//! and quality (a dear exact one, a fair one that renders a wrong prompt of the same structure
//! 30% of the time, a cheap one that does 80% of the time).
//!
//! Every policy runs the same experiment (the director in lockstep, as asked, no money limit):
//! what differs is whom each new prompt is bought from, so the cost ratio at the score reached
//! is the policy's saving.
//!
//! A run's score is its final model's, at `eval_images` images per ShapesEval prompt: with one,
//! the dozen single-object prompts alone move a run's score by a couple of points, as much as
//! the differences between policies.

use super::BenchError;
use super::data_efficiency::stats::{Estimate, estimate};
use crate::director::{self, RunOptions};
use crate::experiment;
use crate::registry::Registry;
use std::path::{Path, PathBuf};

/// The policies compared, `all` (the baseline) first.
pub const POLICIES: [&str; 3] = ["all", "parent_winner", "bandit"];

/// How the benchmark runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Trainer steps of every run.
    pub steps: u64,
    /// Seeds per policy.
    pub seeds: Vec<u64>,
    /// Initial prompts, bought before training.
    pub initial: u64,
    /// Where the runs are written.
    pub out: PathBuf,
    /// Keep a finished run already in `out` whose experiment file is this one's, instead of
    /// running it again.
    pub resume: bool,
    /// Images per ShapesEval prompt of each run's final score.
    pub eval_images: u32,
}

impl Settings {
    /// The full benchmark: 4 seeds of 1500 steps, each run scored at 4 images per prompt: about
    /// 50 minutes on 2 cores (the README's figures).
    pub fn full(out: PathBuf) -> Settings {
        Settings { steps: 1500, seeds: vec![0, 1, 2, 3], initial: 300, out, resume: false, eval_images: 4 }
    }

    /// A smoke run: one seed, a few steps.
    pub fn quick(out: PathBuf) -> Settings {
        Settings { steps: 40, seeds: vec![0], initial: 16, out, resume: false, eval_images: 1 }
    }
}

/// One run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The policy.
    pub policy: &'static str,
    /// Its seed.
    pub seed: u64,
    /// Teacher calls bought.
    pub calls: u64,
    /// What they cost, USD.
    pub cost: f64,
    /// ShapesEval overall.
    pub score: f64,
}

/// The experiment of one run.
pub fn experiment_text(policy: &str, seed: u64, settings: &Settings) -> String {
    let every = (settings.steps / 8).max(1);
    format!(
        r#"
[run]
name = "teacher-routing"
seed = {seed}
[base_model]
plugin = "dit"
config = {{ preset = "tiny", guidance = 4.5, timestep_spacing = "trailing" }}
[[teachers]]
name = "exact"
plugin = "shapes"
config = {{ price_usd = 0.04 }}
[[teachers]]
name = "fair"
plugin = "shapes"
config = {{ price_usd = 0.02, sloppiness = 0.3 }}
[[teachers]]
name = "cheap"
plugin = "shapes"
config = {{ price_usd = 0.01, sloppiness = 0.8 }}
[judge]
plugin = "shapes"
[eval]
plugin = "shapes"
[prompts]
generate = {initial}
[training]
batch_size = 32
checkpoint_every = {steps}
[director]
every_steps = {every}
sample_steps = 10
lockstep = true
teacher_selection = "{policy}"
[budget]
max_steps = {steps}
"#,
        initial = settings.initial,
        steps = settings.steps,
    )
}

/// Runs every policy at every seed; `progress` hears about each run as it starts.
pub fn measure(
    settings: &Settings,
    registry: &Registry,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Point>, BenchError> {
    let io = BenchError::io;
    std::fs::create_dir_all(&settings.out).map_err(io(&settings.out))?;
    let mut points = vec![];
    for &seed in &settings.seeds {
        for policy in POLICIES {
            let name = format!("{policy}-seed{seed}");
            let (path, run_dir) = (settings.out.join(format!("{name}.toml")), settings.out.join(&name));
            let text = experiment_text(policy, seed, settings);
            let unchanged = settings.resume && std::fs::read_to_string(&path).is_ok_and(|kept| kept == text);
            let kept = if unchanged { finished(&run_dir)? } else { None };
            let (calls, cost) = match kept {
                Some(totals) => {
                    progress(&format!("{policy}, seed {seed}: kept"));
                    totals
                }
                None => {
                    progress(&format!("{policy}, seed {seed}, {} steps", settings.steps));
                    let _ = std::fs::remove_dir_all(&run_dir);
                    std::fs::write(&path, &text).map_err(io(&path))?;
                    let experiment = experiment::parse(&text, &path, registry)?;
                    let options =
                        RunOptions { run_dir: run_dir.clone(), resume: false, quiet: true, json: false, gpus: 1 };
                    let outcome = director::run(&experiment, &path, registry, &options)?;
                    let report = outcome.eval.as_ref().ok_or_else(|| BenchError::NoEvaluation(name.clone()))?;
                    // The run's own evaluation is the final score when it drew as many images.
                    if report.images_per_prompt() == settings.eval_images as usize {
                        keep_score(&run_dir, report)?;
                    }
                    (outcome.calls, outcome.cost.usd())
                }
            };
            let score = final_score(&run_dir, settings.eval_images, registry)?;
            points.push(Point { policy, seed, calls, cost, score });
        }
    }
    Ok(points)
}

/// A finished run's teacher calls and cost (USD); `None` if it did not finish (no evaluation).
fn finished(run_dir: &Path) -> Result<Option<(u64, f64)>, BenchError> {
    let ledger = run_dir.join("ledger.sqlite");
    if !ledger.is_file() {
        return Ok(None);
    }
    let ledger = crate::store::Ledger::open(&ledger)?;
    if ledger.metric("eval/overall")?.is_empty() {
        return Ok(None);
    }
    let (calls, cost) = ledger.call_totals()?;
    Ok(Some((calls, cost.usd())))
}

/// The ShapesEval overall of a finished run's final model at `images` images per prompt, kept
/// in the run's folder (`eval-N-images.json`) so that a resumed benchmark scores a run once.
fn final_score(run_dir: &Path, images: u32, registry: &Registry) -> Result<f64, BenchError> {
    let kept = kept_score_path(run_dir, images as usize);
    let read = std::fs::read(&kept).ok().and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    if let Some(overall) = read.as_ref().and_then(|report| report["overall"].as_f64()) {
        return Ok(overall);
    }
    let report = crate::eval::score_run(run_dir, registry, None, Some(images))?;
    keep_score(run_dir, &report)?;
    Ok(report.overall)
}

fn kept_score_path(run_dir: &Path, images: usize) -> PathBuf {
    run_dir.join(format!("eval-{images}-images.json"))
}

/// Writes `report` where [`final_score`] looks for a score at its number of images.
fn keep_score(run_dir: &Path, report: &crate::eval::EvalReport) -> Result<(), BenchError> {
    let kept = kept_score_path(run_dir, report.images_per_prompt());
    std::fs::write(&kept, serde_json::to_vec_pretty(report)?).map_err(BenchError::io(&kept))
}

/// The table (mean score and cost per policy with 95% intervals) and the `name: value` lines.
pub fn summarise(points: &[Point]) -> (String, Vec<String>) {
    let of = |policy: &str, value: fn(&Point) -> f64| -> Estimate {
        estimate(&points.iter().filter(|p| p.policy == policy).map(value).collect::<Vec<_>>())
    };
    let mut table =
        format!("{:<14} {:>25} {:>25} {:>8}\n", "policy", "ShapesEval % (95% CI)", "cost USD (95% CI)", "calls");
    // One seed has no interval.
    let range = |(low, high): (f64, f64), scale: f64| {
        if low.is_finite() && high.is_finite() {
            format!("[{:>6.2}, {:>6.2}]", scale * low, scale * high)
        } else {
            format!("[{:^14}]", "one seed")
        }
    };
    let mut figures = vec![];
    let baseline = of("all", |p| p.cost).mean;
    for policy in POLICIES {
        let (score, cost) = (of(policy, |p| p.score), of(policy, |p| p.cost));
        let calls = of(policy, |p| p.calls as f64).mean;
        table.push_str(&format!(
            "{policy:<14} {:>8.2} {} {:>8.2} {} {calls:>8.0}\n",
            100.0 * score.mean,
            range(score.interval(), 100.0),
            cost.mean,
            range(cost.interval(), 1.0),
        ));
        figures.push(format!("{policy}_score: {:.4}", score.mean));
        figures.push(format!("{policy}_cost_usd: {:.4}", cost.mean));
        if policy != "all" && baseline > 0.0 {
            figures.push(format!("{policy}_cost_ratio: {:.3}", cost.mean / baseline));
        }
    }
    // Runs of one seed share their initial prompts and the noise of every image the model
    // renders for the evaluation, so a policy's score is also compared with `all`'s seed by
    // seed. (Not their batches: purchases finish in any order, and so the training set's.)
    for policy in POLICIES.into_iter().filter(|&p| p != "all") {
        let differences: Vec<f64> = points
            .iter()
            .filter(|p| p.policy == policy)
            .filter_map(|p| points.iter().find(|a| a.policy == "all" && a.seed == p.seed).map(|a| p.score - a.score))
            .collect();
        if differences.is_empty() {
            continue;
        }
        let difference = estimate(&differences);
        table.push_str(&format!(
            "{policy} - all, seed by seed: {:+.2} points {}\n",
            100.0 * difference.mean,
            range(difference.interval(), 100.0)
        ));
        figures.push(format!("{policy}_score_minus_all: {:.4}", difference.mean));
    }
    (table, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_is_one_experiment_apart() {
        let settings = Settings::quick(PathBuf::from("x"));
        let texts: Vec<String> = POLICIES.iter().map(|p| experiment_text(p, 3, &settings)).collect();
        for (policy, text) in POLICIES.iter().zip(&texts) {
            assert!(text.contains(&format!("teacher_selection = \"{policy}\"")));
            assert_eq!(text.replace(policy, "P"), texts[0].replace("all", "P"), "only the policy differs");
        }
    }

    #[test]
    fn the_summary_gives_each_policys_cost_against_all() {
        let point = |policy, seed, cost, score| Point { policy, seed, calls: 10, cost, score };
        let points = [
            point("all", 0, 10.0, 0.30),
            point("all", 1, 12.0, 0.32),
            point("parent_winner", 0, 4.0, 0.29),
            point("parent_winner", 1, 4.4, 0.31),
            point("bandit", 0, 5.0, 0.30),
            point("bandit", 1, 6.0, 0.31),
        ];
        let (table, figures) = summarise(&points);
        assert!(table.contains("parent_winner"), "{table}");
        assert!(figures.contains(&"bandit_cost_ratio: 0.500".to_string()), "{figures:?}");
        assert!(figures.contains(&"parent_winner_cost_ratio: 0.382".to_string()), "{figures:?}");
        // Seed by seed: bandit +0.00 and -0.01 against all.
        assert!(figures.contains(&"bandit_score_minus_all: -0.0050".to_string()), "{figures:?}");
        assert!(table.contains("bandit - all, seed by seed: -0.50 points"), "{table}");
    }
}
