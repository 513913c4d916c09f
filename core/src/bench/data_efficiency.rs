//! `evolve bench data-efficiency`: ShapesEval against teacher calls, at equal training steps,
//! for uniform random prompts (the paper's baseline, `evolve train --static`) and for the
//! director (`evolve run`) — with an exact judge and with one that errs like a real VLM.
//!
//! The headline is the fraction of the baseline's largest budget the director needs to reach
//! the baseline's best score (EvolveDirector reports about 1/100 at scale; the goal here is
//! ≤ 1/10). Every point is a real training run on the embedded world, so the defaults are sized
//! for a 2-core CPU; raise `--steps` and `--budgets` on a GPU.

use crate::director::{self, RunOptions};
use crate::experiment::{self, Experiment};
use crate::registry::Registry;
use crate::static_train::{self, StaticOptions};
use std::path::PathBuf;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Trainer steps of every run (equal for every arm).
    pub steps: u64,
    /// Teacher-call budgets, ascending.
    pub budgets: Vec<u64>,
    /// Where the runs are written.
    pub out: PathBuf,
    /// Run seed.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { steps: 500, budgets: vec![20, 60, 200], out: PathBuf::from("target/bench/data-efficiency"), seed: 0 }
    }
}

/// One way of spending the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arm {
    /// Uniformly random prompts bought up front, trained on uniformly.
    Uniform,
    /// The director with a judge that flips `flip_rate` of its verdicts and prefers the first
    /// image with probability `position_bias`.
    Director {
        /// Verdict flip rate.
        flip_rate: f64,
        /// Position bias.
        position_bias: f64,
    },
}

impl Arm {
    /// The arms measured by default.
    pub const ALL: [Arm; 3] = [
        Arm::Uniform,
        Arm::Director { flip_rate: 0.0, position_bias: 0.0 },
        Arm::Director { flip_rate: 0.1, position_bias: 0.1 },
    ];

    /// Its name in tables and figures.
    pub fn name(self) -> String {
        match self {
            Arm::Uniform => "uniform".into(),
            Arm::Director { flip_rate: 0.0, position_bias: 0.0 } => "director(exact judge)".into(),
            Arm::Director { flip_rate, position_bias } => {
                format!("director(flip {flip_rate}, bias {position_bias})")
            }
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Point {
    /// The arm.
    pub arm: Arm,
    /// The call budget it was given.
    pub budget: u64,
    /// Calls it made.
    pub calls: u64,
    /// ShapesEval overall.
    pub score: f64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

fn experiment_text(arm: Arm, budget: u64, settings: &Settings) -> String {
    let (judge, seeds) = match arm {
        Arm::Uniform => ("{}".to_string(), budget),
        // The director starts from a quarter of the budget and spends the rest where the judge
        // finds the model weak.
        Arm::Director { flip_rate, position_bias } => {
            (format!("{{ flip_rate = {flip_rate}, position_bias = {position_bias} }}"), (budget / 4).max(4).min(budget))
        }
    };
    let every = (settings.steps / 10).max(1);
    format!(
        r#"
[run]
name = "data-efficiency"
seed = {seed}
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 10 }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "shapes"
config = {judge}
[eval]
plugin = "shapes"
[prompts]
generate = {seeds}
[training]
batch_size = 16
checkpoint_every = {steps}
[director]
every_steps = {every}
[budget]
max_teacher_calls = {budget}
max_steps = {steps}
"#,
        seed = settings.seed,
        steps = settings.steps,
    )
}

/// Measures every arm at every budget; `progress` hears about each run as it starts.
pub fn measure(settings: &Settings, registry: &Registry, mut progress: impl FnMut(&str)) -> Result<Vec<Point>, String> {
    let mut points = vec![];
    for &budget in &settings.budgets {
        for arm in Arm::ALL {
            progress(&format!("{} with {budget} teacher calls, {} steps", arm.name(), settings.steps));
            points.push(measure_one(arm, budget, settings, registry)?);
        }
    }
    Ok(points)
}

fn measure_one(arm: Arm, budget: u64, settings: &Settings, registry: &Registry) -> Result<Point, String> {
    let slug = arm.name().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let run_dir = settings.out.join(format!("{slug}-{budget}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&settings.out).map_err(|e| format!("{}: {e}", settings.out.display()))?;
    let path = settings.out.join(format!("{slug}-{budget}.toml"));
    let text = experiment_text(arm, budget, settings);
    std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let experiment: Experiment = experiment::parse(&text, &path, registry).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let (calls, report) = match arm {
        Arm::Uniform => {
            let options = StaticOptions { run_dir: run_dir.clone(), resume: false, quiet: true };
            let outcome = static_train::run(&experiment, &path, registry, &options).map_err(|e| e.to_string())?;
            (outcome.samples as u64, outcome.eval)
        }
        Arm::Director { .. } => {
            let options = RunOptions { run_dir: run_dir.clone(), resume: false, quiet: true, json: false };
            let outcome = director::run(&experiment, &path, registry, &options).map_err(|e| e.to_string())?;
            (outcome.calls, outcome.eval)
        }
    };
    let score = report.map(|r| r.overall).ok_or("the run produced no evaluation")?;
    Ok(Point { arm, budget, calls, score, seconds: started.elapsed().as_secs_f64() })
}

/// The fewest calls with which `arm` scored at least `target`, if any budget did.
pub fn calls_to_reach(points: &[Point], arm: Arm, target: f64) -> Option<u64> {
    points.iter().filter(|p| p.arm == arm && p.score >= target).map(|p| p.calls).min()
}

/// The results table and the `figure: value` lines.
pub fn summarise(points: &[Point], settings: &Settings) -> (String, Vec<String>) {
    let mut table = format!("{:<34} {:>7} {:>7} {:>10} {:>8}\n", "arm", "budget", "calls", "ShapesEval", "seconds");
    for p in points {
        table.push_str(&format!(
            "{:<34} {:>7} {:>7} {:>9.1}% {:>8.0}\n",
            p.arm.name(),
            p.budget,
            p.calls,
            100.0 * p.score,
            p.seconds
        ));
    }
    let mut figures = vec![];
    let Some(&largest) = settings.budgets.iter().max() else { return (table, figures) };
    let baseline = points.iter().find(|p| p.arm == Arm::Uniform && p.budget == largest);
    if let Some(baseline) = baseline {
        figures.push(format!("data-efficiency uniform ShapesEval at {largest} calls: {:.4}", baseline.score));
        for arm in Arm::ALL.into_iter().skip(1) {
            let figure = match calls_to_reach(points, arm, baseline.score) {
                Some(calls) => format!("{:.3}", calls as f64 / baseline.calls.max(1) as f64),
                None => "not reached".into(),
            };
            figures.push(format!("data-efficiency {} calls ratio to match uniform: {figure}", arm.name()));
        }
    }
    (table, figures)
}
