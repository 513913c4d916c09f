//! `evolve bench data-efficiency`: ShapesEval against teacher calls, at equal training steps,
//! for uniform random prompts (the paper's baseline, `evolve train --static`) and for the
//! director (`evolve run`): with an exact judge, with one that errs like a real VLM, and without
//! each of its curation steps (the paper's ablations).
//!
//! Every arm runs at every budget over several seeds (the same seeds for every arm), so each
//! point is a mean with a 95% interval ([`stats`]); the headline is the fraction of the
//! baseline's largest budget each arm needs to reach the baseline's score there, with a
//! bootstrap interval. Every point is a real training run on the embedded world, so the
//! defaults are sized for about an hour on a 2-core CPU; `--quick` is a smoke run.

pub mod categories;
pub mod chart;
pub mod recorded;
pub mod stats;

use super::BenchError;
use crate::director::{self, RunOptions};
use crate::experiment::{self, Experiment};
use crate::registry::Registry;
use crate::static_train::{self, StaticOptions};
use stats::{Estimate, Reach, Runs};
use std::path::PathBuf;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Trainer steps of every run (equal for every arm).
    pub steps: u64,
    /// Teacher-call budgets, ascending.
    pub budgets: Vec<u64>,
    /// Run seeds: every arm and budget runs once per seed.
    pub seeds: Vec<u64>,
    /// The arms to run.
    pub arms: Vec<Arm>,
    /// Where the runs, the table and the figure are written.
    pub out: PathBuf,
    /// Keep the points already in `out/points.csv` and measure only the others; refused when
    /// the folder's [`recorded`] settings differ from these.
    pub resume: bool,
    /// Where every arm's initial prompts come from.
    pub pool: Pool,
    /// Images per ShapesEval prompt of each run's final score (GenEval draws 4; default 1):
    /// more images narrow the evaluation's own noise at proportionally more time per
    /// evaluation.
    pub eval_images: u32,
    /// A checkpoint of the tiny preset every arm's model starts from (the dit's `start_from`),
    /// as the paper's arms all start from one pretrained model; `None`: random weights. The
    /// calls that trained it are spent before the benchmark and counted in no arm.
    pub start_from: Option<PathBuf>,
    /// Every run's peak learning rate (the dit's `optim.learning_rate`); `None`: the model's
    /// default (1e-3, the recipe that trains the embedded default from random weights). A
    /// fine-tune from `start_from` on a few hundred images may want less, as fine-tunes do.
    pub learning_rate: Option<f64>,
}

/// Where the initial prompts come from: the uniform arm's whole set, and the director's seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Written by the judge, uniformly over the grammar (the distribution ShapesEval is drawn
    /// from: the strongest baseline this world has).
    Grammar,
    /// The first prompts of the world's natural set for the seed ([`evolve_shapes::natural`]:
    /// skewed as real captions are). Only the initial prompts: the judge's expansions and
    /// mutations still walk the whole grammar, as a VLM writes what it likes.
    Natural,
}

impl Pool {
    /// Its name on the command line (`--pool`).
    pub fn key(self) -> &'static str {
        match self {
            Pool::Grammar => "grammar",
            Pool::Natural => "natural",
        }
    }
}

/// Images per trainer step of every run (the main job's).
pub const BATCH: u32 = 32;

impl Settings {
    /// The full benchmark: 6 arms × 3 budgets × 3 seeds of 400 steps (54 runs, about an hour
    /// on 2 CPU cores).
    pub fn full(out: PathBuf) -> Settings {
        Settings {
            steps: 400,
            budgets: vec![20, 60, 200],
            seeds: vec![0, 1, 2],
            arms: Arm::PAPER.to_vec(),
            out,
            resume: false,
            pool: Pool::Grammar,
            // Four images, as GenEval draws, would add over a minute to each of the 54 runs.
            eval_images: 1,
            start_from: None,
            learning_rate: None,
        }
    }

    /// A smoke run: every arm at two small budgets, two seeds, 30 steps.
    pub fn quick(out: PathBuf) -> Settings {
        Settings { steps: 30, budgets: vec![8, 16], seeds: vec![0, 1], ..Settings::full(out) }
    }
}

/// One way of spending the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// Uniformly random prompts bought up front, trained on uniformly (the baseline).
    Uniform,
    /// The director with the exact judge and the paper's curation chain.
    Director,
    /// The director with a judge that flips 10% of its verdicts and prefers the first image
    /// shown 10% of the time.
    NoisyJudge,
    /// The director without expansion (no variations of what the model gets wrong).
    WithoutExpansion,
    /// The director without deletion (mastered samples stay).
    WithoutDeletion,
    /// The director without mutation (no unrelated new prompts).
    WithoutMutation,
    /// The director with the exact judge, buying the near misses first
    /// (`director.buy_first = "near_misses"`): not one of the paper's arms (listed last).
    NearMisses,
    /// The director with the exact judge writing expansions that keep only the failed
    /// prompt's structure, every word drawn anew (the `shapes` judge's `expansion =
    /// "redraw"`): not one of the paper's arms (listed last).
    RedrawnExpansions,
    /// The director with the exact judge buying all it asks for in rounds four times as
    /// frequent, so that its calls are spent early in the run, without deletion (nor
    /// mutation, which follows deletions): what it buys trains as long as the baseline's
    /// does. Not one of the paper's arms (listed last).
    BoughtEarly,
    /// [`Arm::BoughtEarly`] with the noisy judge of [`Arm::NoisyJudge`].
    BoughtEarlyNoisyJudge,
}

impl Arm {
    /// Every arm: the paper's ([`Arm::PAPER`]) first, the baseline first of all.
    pub const ALL: [Arm; 10] = [
        Arm::Uniform,
        Arm::Director,
        Arm::NoisyJudge,
        Arm::WithoutExpansion,
        Arm::WithoutDeletion,
        Arm::WithoutMutation,
        Arm::NearMisses,
        Arm::RedrawnExpansions,
        Arm::BoughtEarly,
        Arm::BoughtEarlyNoisyJudge,
    ];

    /// The arms the paper runs (the default): the baseline, the director with the exact and
    /// a noisy judge, and the ablations.
    pub const PAPER: &[Arm] = Arm::ALL.split_at(6).0;

    /// Its name in tables and figures.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Uniform => "uniform (baseline)",
            Arm::Director => "director, exact judge",
            Arm::NoisyJudge => "director, noisy judge",
            Arm::WithoutExpansion => "director w/o expansion",
            Arm::WithoutDeletion => "director w/o deletion",
            Arm::WithoutMutation => "director w/o mutation",
            Arm::NearMisses => "director, near misses first",
            Arm::RedrawnExpansions => "director, redrawn expansions",
            Arm::BoughtEarly => "director, bought early w/o deletion",
            Arm::BoughtEarlyNoisyJudge => "director, bought early, noisy judge",
        }
    }

    /// Its short name on the command line (`--arms`).
    pub fn key(self) -> &'static str {
        match self {
            Arm::Uniform => "uniform",
            Arm::Director => "director",
            Arm::NoisyJudge => "noisy",
            Arm::WithoutExpansion => "no-expansion",
            Arm::WithoutDeletion => "no-deletion",
            Arm::WithoutMutation => "no-mutation",
            Arm::NearMisses => "near-misses",
            Arm::RedrawnExpansions => "redraw",
            Arm::BoughtEarly => "early",
            Arm::BoughtEarlyNoisyJudge => "early-noisy",
        }
    }

    /// The arm whose [`Arm::key`] is `key`.
    pub fn from_key(key: &str) -> Option<Arm> {
        Arm::ALL.into_iter().find(|a| a.key() == key)
    }

    fn slug(self) -> String {
        let words: Vec<&str> =
            self.name().split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
        words.join("-")
    }

    /// The judge's config table.
    fn judge(self) -> &'static str {
        match self {
            Arm::NoisyJudge | Arm::BoughtEarlyNoisyJudge => "{ flip_rate = 0.1, position_bias = 0.1 }",
            Arm::RedrawnExpansions => "{ expansion = \"redraw\" }",
            _ => "{}",
        }
    }

    /// What it buys first when a round's share cannot buy all that was asked for.
    fn buy_first(self) -> &'static str {
        if self == Arm::NearMisses { "near_misses" } else { "any" }
    }

    /// Rounds in a run (one every `steps / rounds` steps) and how they spend: evenly over
    /// the rounds, or all their operators ask for while the budget lasts.
    fn rounds(self) -> (u64, &'static str) {
        if self.bought_early() { (40, "as_asked") } else { (10, "paced") }
    }

    /// Whether it buys all it asks for early, without deletion.
    fn bought_early(self) -> bool {
        matches!(self, Arm::BoughtEarly | Arm::BoughtEarlyNoisyJudge)
    }

    /// The curation chain, as `[[operators]]` tables: the main job's (`examples/shapes`), less
    /// the steps the arm leaves out.
    fn operators(self) -> String {
        let without: &[&str] = match self {
            Arm::WithoutExpansion => &["expansion"],
            Arm::WithoutDeletion => &["deletion"],
            Arm::WithoutMutation => &["mutation"],
            // Mutation follows deletions: without deletion it would never fire.
            _ if self.bought_early() => &["deletion", "mutation"],
            _ => &[],
        };
        [
            ("discrimination", "{}"),
            ("expansion", "{ expand_num = 3 }"),
            ("deletion", "{}"),
            ("mutation", "{ mutation_ratio = 0.5 }"),
        ]
        .into_iter()
        .filter(|(op, _)| !without.contains(op))
        .map(|(op, config)| format!("[[operators]]\nplugin = \"{op}\"\nconfig = {config}\n"))
        .collect()
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Point {
    /// The arm.
    pub arm: Arm,
    /// The call budget it was given.
    pub budget: u64,
    /// Its seed.
    pub seed: u64,
    /// Calls it made.
    pub calls: u64,
    /// ShapesEval overall.
    pub score: f64,
    /// Images per ShapesEval prompt the score was measured at.
    pub images: u32,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// ShapesEval per category, in the suite's order (empty for a point read from a file
    /// written before categories were kept).
    pub categories: Vec<(String, f64)>,
}

/// How many initial prompts `arm` starts from with `budget` calls.
fn initial_prompts(arm: Arm, budget: u64) -> u64 {
    // The director starts from a third of the budget, as the main job does, and spends the
    // rest where the judge finds the model weak, evenly over its rounds (`spend = "paced"`):
    // left to spend as asked it would buy everything in its first rounds, while the untrained
    // model still fails every prompt and the verdicts cannot tell one prompt from another.
    if arm == Arm::Uniform { budget } else { (budget / 3).max(4).min(budget) }
}

/// The experiment file of one run. `prompt_file`: the initial prompts' file, relative to the
/// experiment file (the natural pool); without it the judge writes them. The judge sees the
/// model's renders drawn as ShapesEval draws them (the model's own sampler steps): with the main
/// job's cheaper 10 steps the director scored lower and less steadily (README, 2026-12-02).
pub fn experiment_text(arm: Arm, budget: u64, seed: u64, settings: &Settings, prompt_file: Option<&str>) -> String {
    let (steps, eval_images) = (settings.steps, settings.eval_images);
    let initial = initial_prompts(arm, budget);
    let prompts = match prompt_file {
        Some(file) => format!("file = \"{file}\"\ngenerate = 0"),
        None => format!("generate = {initial}"),
    };
    let (rounds, spend) = arm.rounds();
    let every = (steps / rounds).max(1);
    // `{:?}` writes the path as a TOML basic string: quoted, backslashes and quotes escaped.
    let start_from = match &settings.start_from {
        Some(dir) => format!(", start_from = {:?}", dir.display().to_string()),
        None => String::new(),
    };
    let optim = match settings.learning_rate {
        Some(rate) => format!(", optim = {{ learning_rate = {rate:?} }}"),
        None => String::new(),
    };
    format!(
        r#"
[run]
name = "data-efficiency"
seed = {seed}
[base_model]
plugin = "dit"
config = {{ preset = "tiny", guidance = 4.5, timestep_spacing = "trailing"{start_from}{optim} }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "shapes"
config = {judge}
{operators}
[eval]
plugin = "shapes"
[prompts]
{prompts}
[training]
batch_size = {BATCH}
checkpoint_every = {steps}
[director]
every_steps = {every}
lockstep = true
spend = "{spend}"
buy_first = "{buy_first}"
eval_images_per_prompt = {eval_images}
[budget]
max_teacher_calls = {budget}
max_steps = {steps}
"#,
        judge = arm.judge(),
        operators = arm.operators(),
        buy_first = arm.buy_first(),
    )
}

/// Measures every arm at every budget and seed (each point also appended to `points.csv`);
/// `progress` hears about each run as it starts.
pub fn measure(
    settings: &Settings,
    registry: &Registry,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Point>, BenchError> {
    let mut points = vec![];
    std::fs::create_dir_all(&settings.out).map_err(BenchError::io(&settings.out))?;
    let csv = settings.out.join("points.csv");
    let kept = if settings.resume && csv.exists() { read_points(&csv)? } else { vec![] };
    recorded::check_and_record(&settings.out, settings, !kept.is_empty())?;
    if kept.is_empty() {
        std::fs::write(&csv, CSV_HEADER).map_err(BenchError::io(&csv))?;
    }
    for &seed in &settings.seeds {
        for &budget in &settings.budgets {
            for &arm in &settings.arms {
                let same =
                    |p: &&Point| (p.arm, p.budget, p.seed, p.images) == (arm, budget, seed, settings.eval_images);
                if let Some(point) = kept.iter().find(same) {
                    progress(&format!("{} with {budget} teacher calls, seed {seed}: kept", arm.name()));
                    points.push(point.clone());
                    continue;
                }
                progress(&format!("{} with {budget} teacher calls, seed {seed}, {} steps", arm.name(), settings.steps));
                let point = measure_one(arm, budget, seed, settings, registry)?;
                // Each point is kept as it comes, so an interrupted benchmark still has its runs.
                append(&csv, &csv_line(&point))?;
                points.push(point);
            }
        }
    }
    Ok(points)
}

const CSV_HEADER: &str = "arm,budget,seed,calls,score,seconds,images,categories\n";

fn csv_line(p: &Point) -> String {
    let Point { budget, seed, calls, score, seconds, images, .. } = p;
    let categories = categories::encode(&p.categories);
    format!("{},{budget},{seed},{calls},{score:.6},{seconds:.1},{images},{categories}\n", p.arm.slug())
}

/// The points of `points.csv` (as [`measure`] writes it).
pub fn read_points(path: &std::path::Path) -> Result<Vec<Point>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(BenchError::io(path))?;
    let mut points = vec![];
    for (i, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let bad =
            |what: &'static str| BenchError::Results { path: path.to_path_buf(), line: i + 1, what, text: line.into() };
        let fields: Vec<&str> = line.split(',').collect();
        // Files written before the images column scored at one image per prompt; those written
        // before the categories column kept none.
        let (arm, budget, seed, calls, score, seconds, images, by_category) = match fields[..] {
            [arm, budget, seed, calls, score, seconds] => (arm, budget, seed, calls, score, seconds, "1", ""),
            [arm, budget, seed, calls, score, seconds, images] => {
                (arm, budget, seed, calls, score, seconds, images, "")
            }
            [arm, budget, seed, calls, score, seconds, images, by_category] => {
                (arm, budget, seed, calls, score, seconds, images, by_category)
            }
            _ => return Err(bad("expected arm,budget,seed,calls,score,seconds,images,categories")),
        };
        let arm = Arm::ALL.into_iter().find(|a| a.slug() == arm).ok_or_else(|| bad("unknown arm"))?;
        let number = |field: &str, what: &'static str| field.parse::<f64>().map_err(|_| bad(what));
        points.push(Point {
            arm,
            budget: budget.parse().map_err(|_| bad("bad budget"))?,
            seed: seed.parse().map_err(|_| bad("bad seed"))?,
            calls: calls.parse().map_err(|_| bad("bad calls"))?,
            score: number(score, "bad score")?,
            seconds: number(seconds, "bad seconds")?,
            images: images.parse().map_err(|_| bad("bad images"))?,
            categories: categories::decode(by_category).ok_or_else(|| bad("bad categories"))?,
        });
    }
    Ok(points)
}

fn append(path: &std::path::Path, line: &str) -> Result<(), BenchError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(BenchError::io(path))?;
    file.write_all(line.as_bytes()).map_err(BenchError::io(path))
}

fn measure_one(
    arm: Arm,
    budget: u64,
    seed: u64,
    settings: &Settings,
    registry: &Registry,
) -> Result<Point, BenchError> {
    let name = format!("{}-{budget}-seed{seed}", arm.slug());
    let run_dir = settings.out.join(&name);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&settings.out).map_err(BenchError::io(&settings.out))?;
    let path = settings.out.join(format!("{name}.toml"));
    let prompt_file = match settings.pool {
        Pool::Grammar => None,
        Pool::Natural => {
            let file = format!("{name}.prompts.txt");
            let prompts = evolve_shapes::natural::prompts(seed, initial_prompts(arm, budget) as usize);
            let target = settings.out.join(&file);
            std::fs::write(&target, prompts.join("\n") + "\n").map_err(BenchError::io(&target))?;
            Some(file)
        }
    };
    let text = experiment_text(arm, budget, seed, settings, prompt_file.as_deref());
    std::fs::write(&path, &text).map_err(BenchError::io(&path))?;
    let experiment: Experiment = experiment::parse(&text, &path, registry)?;
    let started = std::time::Instant::now();
    let (calls, report) = if arm == Arm::Uniform {
        let options = StaticOptions { run_dir: run_dir.clone(), resume: false, quiet: true };
        let outcome = static_train::run(&experiment, &path, registry, &options)?;
        (outcome.samples as u64, outcome.eval)
    } else {
        let options = RunOptions { run_dir: run_dir.clone(), resume: false, quiet: true, json: false, gpus: 1 };
        let outcome = director::run(&experiment, &path, registry, &options)?;
        (outcome.calls, outcome.eval)
    };
    let report = report.ok_or(BenchError::NoEvaluation(name))?;
    let categories = report.categories.into_iter().map(|c| (c.category, c.score)).collect();
    let seconds = started.elapsed().as_secs_f64();
    Ok(Point { arm, budget, seed, calls, score: report.overall, seconds, images: settings.eval_images, categories })
}

/// Per seed, `arm`'s (calls, score) at every budget.
fn runs_of(points: &[Point], arm: Arm, settings: &Settings) -> Runs {
    settings
        .seeds
        .iter()
        .map(|&seed| {
            let of_seed = |budget: u64| points.iter().find(|p| p.arm == arm && p.seed == seed && p.budget == budget);
            settings.budgets.iter().filter_map(|&b| of_seed(b)).map(|p| (p.calls as f64, p.score)).collect()
        })
        .filter(|curve: &Vec<(f64, f64)>| curve.len() == settings.budgets.len())
        .collect()
}

/// `arm`'s mean calls and score estimate at each budget.
pub fn line(points: &[Point], arm: Arm, settings: &Settings) -> chart::Line {
    let points = settings
        .budgets
        .iter()
        .map(|&budget| {
            let at: Vec<&Point> = points.iter().filter(|p| p.arm == arm && p.budget == budget).collect();
            let calls = at.iter().map(|p| p.calls as f64).sum::<f64>() / at.len().max(1) as f64;
            (calls, stats::estimate(&at.iter().map(|p| p.score).collect::<Vec<_>>()))
        })
        .collect();
    chart::Line { label: arm.name().to_string(), points }
}

/// The results table (mean ± 95% half-interval per arm and budget) and the `figure: value`
/// lines: each arm's calls ratio to match the baseline, with its interval, and whether its
/// interval at the smallest budget is clear of the baseline's.
pub fn summarise(points: &[Point], settings: &Settings) -> (String, Vec<String>) {
    let header: String = settings.budgets.iter().map(|b| format!("{:>19}", format!("{b} calls"))).collect();
    // The arm column fits the longest name shown.
    let width = settings.arms.iter().map(|a| a.name().len() + 1).max().unwrap_or(0).max(26);
    let mut table = format!("{:<width$}{header}   calls ratio to match baseline (95% CI)\n", "arm (mean ± 95% CI)");
    let mut figures = vec![];
    let baseline = runs_of(points, Arm::Uniform, settings);
    let show = |e: Estimate| format!("{:.1}% ± {:.1}", 100.0 * e.mean, 100.0 * e.half_width);
    // "≤": the arm reached the target at its smallest budget, so a smaller one might have too.
    let ratio_text = |ratio: Option<Reach>, (low, high): (f64, f64)| {
        let end = |v: f64| if v.is_finite() { format!("{v:.2}") } else { "not reached".into() };
        let point = match ratio {
            Some(Reach::At(r)) => format!("{r:.2}"),
            Some(Reach::AtMost(r)) => format!("≤ {r:.2}"),
            None => "not reached".into(),
        };
        format!("{point} ({} to {})", end(low), end(high))
    };
    for &arm in &settings.arms {
        let cells: String =
            line(points, arm, settings).points.iter().map(|(_, e)| format!("{:>19}", show(*e))).collect();
        let ratio = if arm == Arm::Uniform {
            "1 (baseline)".to_string()
        } else {
            let text = if settings.budgets.len() < 2 {
                // Calls are equal at a single budget: the ratio could only read 1 or "not reached".
                "needs two budgets or more".to_string()
            } else {
                let (ratio, interval) = stats::calls_ratio_interval(&baseline, &runs_of(points, arm, settings));
                ratio_text(ratio, interval)
            };
            figures.push(format!("data-efficiency {} calls ratio to match uniform: {text}", arm.name()));
            text
        };
        table.push_str(&format!("{:<width$}{cells}   {ratio}\n", arm.name()));
    }
    if let Some(by_category) = categories::table(points, settings) {
        table.push_str(&by_category);
    }
    for &budget in &settings.budgets {
        for &arm in settings.arms.iter().filter(|&&arm| arm != Arm::Uniform) {
            if let Some(difference) = paired_difference(points, arm, budget, settings) {
                let (low, high) = difference.interval();
                figures.push(format!(
                    "data-efficiency {} minus uniform at {budget} calls, seed by seed: {:+.1} points [{:+.1}, {:+.1}]",
                    arm.name(),
                    100.0 * difference.mean,
                    100.0 * low,
                    100.0 * high
                ));
            }
        }
    }
    if let Some(&smallest) = settings.budgets.first() {
        let at = |arm: Arm| line(points, arm, settings).points.first().map(|p| p.1);
        for &arm in settings.arms.iter().filter(|&&arm| arm != Arm::Uniform) {
            if let (Some(director), Some(uniform)) = (at(arm), at(Arm::Uniform)) {
                // Which side matters: a director clear of the baseline, but below it, has lost.
                let verdict = match (director.separate_from(uniform), director.mean > uniform.mean) {
                    (false, _) => "overlap",
                    (true, true) => "separate, above uniform",
                    (true, false) => "separate, below uniform",
                };
                figures.push(format!(
                    "data-efficiency intervals at {smallest} calls, {} vs uniform: {verdict}",
                    arm.name()
                ));
            }
        }
    }
    (table, figures)
}

/// `arm`'s score minus the baseline's at `budget`, seed by seed, over the seeds both ran: runs
/// replay from their seed and a director's initial prompts are the first of the baseline's, so
/// the pairs share everything but the arm (`None` without a pair).
fn paired_difference(points: &[Point], arm: Arm, budget: u64, settings: &Settings) -> Option<Estimate> {
    let score =
        |arm: Arm, seed: u64| points.iter().find(|p| (p.arm, p.budget, p.seed) == (arm, budget, seed)).map(|p| p.score);
    let differences: Vec<f64> =
        settings.seeds.iter().filter_map(|&seed| Some(score(arm, seed)? - score(Arm::Uniform, seed)?)).collect();
    (!differences.is_empty()).then(|| stats::estimate(&differences))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point of `arm` at `budget` and `seed` that spent its budget and scored `score`.
    fn scored(arm: Arm, budget: u64, seed: u64, score: f64) -> Point {
        Point { arm, budget, seed, calls: budget, score, seconds: 1.0, images: 1, categories: vec![] }
    }

    #[test]
    fn every_arms_experiment_is_valid_and_leaves_out_its_operators() {
        let registry = Registry::builtin();
        for arm in Arm::ALL {
            let settings = Settings { steps: 100, ..Settings::quick(PathBuf::new()) };
            let text = experiment_text(arm, 60, 1, &settings, None);
            let path = std::path::Path::new("bench.toml");
            let experiment = experiment::parse(&text, path, &registry).unwrap_or_else(|e| panic!("{arm:?}: {e}"));
            let chain: Vec<String> = experiment.operators.iter().map(|o| o.plugin.to_string()).collect();
            let ablated: &[&str] = match arm {
                Arm::WithoutExpansion => &["expansion"],
                Arm::WithoutDeletion => &["deletion"],
                Arm::WithoutMutation => &["mutation"],
                Arm::BoughtEarly | Arm::BoughtEarlyNoisyJudge => &["deletion", "mutation"],
                _ => &[],
            };
            assert_eq!(chain.len(), 4 - ablated.len(), "{arm:?}: {chain:?}");
            let near_misses = experiment.director.buy_first == experiment::BuyFirst::NearMisses;
            assert_eq!(near_misses, arm == Arm::NearMisses, "{arm:?}");
            let redraw = experiment.judge.config.get("expansion").and_then(|v| v.as_str()) == Some("redraw");
            assert_eq!(redraw, arm == Arm::RedrawnExpansions, "{arm:?}");
            let noisy = experiment.judge.config.get("flip_rate").is_some();
            assert_eq!(noisy, matches!(arm, Arm::NoisyJudge | Arm::BoughtEarlyNoisyJudge), "{arm:?}");
            for op in ablated {
                assert!(!chain.iter().any(|c| c == op), "{arm:?}: {chain:?}");
            }
            let early = (experiment.director.every_steps, experiment.director.spend == experiment::Spend::AsAsked);
            let bought_early = matches!(arm, Arm::BoughtEarly | Arm::BoughtEarlyNoisyJudge);
            assert_eq!(early, if bought_early { (2, true) } else { (10, false) }, "{arm:?}");
        }
    }

    #[test]
    fn every_arm_starts_from_the_checkpoint_it_is_given_whatever_its_path_holds() {
        let registry = Registry::builtin();
        let dir = PathBuf::from(r#"/runs/pre "trained"\ckpt"#);
        let settings = Settings { start_from: Some(dir.clone()), ..Settings::quick(PathBuf::new()) };
        for arm in [Arm::Uniform, Arm::Director] {
            let text = experiment_text(arm, 60, 1, &settings, None);
            let experiment = experiment::parse(&text, std::path::Path::new("bench.toml"), &registry)
                .unwrap_or_else(|e| panic!("{arm:?}: {e}"));
            let written = experiment.base_model.config.get("start_from").and_then(|v| v.as_str());
            assert_eq!(written, dir.to_str(), "{arm:?}");
        }
        let scratch = experiment_text(Arm::Director, 60, 1, &Settings::quick(PathBuf::new()), None);
        assert!(!scratch.contains("start_from"));
    }

    #[test]
    fn every_arm_trains_at_the_learning_rate_it_is_given_and_else_at_the_models_own() {
        let registry = Registry::builtin();
        let rate_of = |settings: &Settings, arm| {
            let text = experiment_text(arm, 60, 1, settings, None);
            let experiment = experiment::parse(&text, std::path::Path::new("bench.toml"), &registry)
                .unwrap_or_else(|e| panic!("{arm:?}: {e}"));
            experiment.base_model.config.get("optim").map(|optim| optim["learning_rate"].as_f64())
        };
        let slow = Settings { learning_rate: Some(3e-4), ..Settings::quick(PathBuf::new()) };
        for arm in [Arm::Uniform, Arm::Director] {
            assert_eq!(rate_of(&slow, arm), Some(Some(3e-4)), "{arm:?}");
            assert_eq!(rate_of(&Settings::quick(PathBuf::new()), arm), None, "{arm:?}");
        }
    }

    #[test]
    fn points_read_back_as_written_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("points.csv");
        let points: Vec<Point> = Arm::ALL
            .into_iter()
            .enumerate()
            .map(|(i, arm)| Point {
                arm,
                budget: 60,
                seed: i as u64,
                calls: 59,
                score: 0.125,
                seconds: 61.5,
                images: 4,
                categories: vec![("counting".into(), 0.25 * i as f64)],
            })
            .collect();
        let text: String = std::iter::once(CSV_HEADER.to_string()).chain(points.iter().map(csv_line)).collect();
        std::fs::write(&path, text).unwrap();
        let read = read_points(&path).unwrap();
        assert_eq!(read.len(), points.len());
        for (a, b) in read.iter().zip(&points) {
            assert_eq!(
                (a.arm, a.budget, a.seed, a.calls, a.score, a.seconds, a.images, &a.categories),
                (b.arm, b.budget, b.seed, b.calls, b.score, b.seconds, b.images, &b.categories)
            );
        }
        let old = "arm,budget,seed,calls,score,seconds\nuniform-baseline,60,0,60,0.2,1.0\n";
        std::fs::write(&path, old).unwrap();
        assert_eq!(read_points(&path).unwrap()[0].images, 1, "a file from before the column: one image");
        let seven = "arm,budget,seed,calls,score,seconds,images\nuniform-baseline,60,0,60,0.2,1.0,4\n";
        std::fs::write(&path, seven).unwrap();
        assert!(read_points(&path).unwrap()[0].categories.is_empty(), "a file from before categories: none");
        std::fs::write(&path, format!("{CSV_HEADER}uniform-baseline,60,0,60,0.2,1.0,4,counting=0.2\n")).unwrap();
        let error = read_points(&path).unwrap_err().to_string();
        assert!(error.contains("points.csv:2: bad categories"), "{error}");
        std::fs::write(&path, format!("{CSV_HEADER}director-exact-judge,60,0,sixty,0.1,1.0\n")).unwrap();
        let error = read_points(&path).unwrap_err().to_string();
        assert!(error.contains("points.csv:2: bad calls"), "{error}");
    }

    #[test]
    fn the_summary_gives_each_arm_its_interval_and_ratio() {
        let settings = Settings { out: PathBuf::new(), ..Settings::quick(PathBuf::new()) };
        let mut points = vec![];
        for &seed in &settings.seeds {
            for (i, &budget) in settings.budgets.iter().enumerate() {
                for &arm in &settings.arms {
                    let lift = if arm == Arm::Uniform { 0.0 } else { 0.05 };
                    let score = 0.1 * (i + 1) as f64 + lift + 0.01 * seed as f64;
                    points.push(scored(arm, budget, seed, score));
                }
            }
        }
        let (table, figures) = summarise(&points, &settings);
        assert_eq!(table.lines().count(), 1 + settings.arms.len(), "{table}");
        assert!(table.contains("±"), "{table}");
        // Per arm but the baseline: its ratio, and its paired difference at each budget; then
        // whether its interval at the smallest budget is clear of the baseline's.
        let arms = settings.arms.len() - 1;
        assert_eq!(figures.len(), arms + arms * settings.budgets.len() + arms, "{figures:?}");
        // The director passes the baseline's larger-budget score between its budgets: a ratio.
        assert!(figures[0].contains("director, exact judge calls ratio to match uniform: 0."), "{figures:?}");
        let paired =
            format!("director, exact judge minus uniform at {} calls, seed by seed: +5.0 points", settings.budgets[0]);
        assert!(figures.iter().any(|f| f.contains(&paired)), "{figures:?}");
    }

    #[test]
    fn one_budget_has_no_calls_ratio_to_give() {
        let settings =
            Settings { budgets: vec![16], arms: vec![Arm::Uniform, Arm::Director], ..Settings::quick(PathBuf::new()) };
        let points: Vec<Point> = [(Arm::Uniform, 0.3), (Arm::Director, 0.2)]
            .into_iter()
            .flat_map(|(arm, score)| settings.seeds.iter().map(move |&seed| scored(arm, 16, seed, score)))
            .collect();
        let (table, figures) = summarise(&points, &settings);
        let ratio = "director, exact judge calls ratio to match uniform: needs two budgets or more";
        assert!(figures.iter().any(|f| f == &format!("data-efficiency {ratio}")), "{figures:?}");
        assert!(table.contains("needs two budgets or more") && !table.contains("not reached"), "{table}");
    }

    #[test]
    fn intervals_clear_of_the_baseline_say_on_which_side() {
        let settings = Settings {
            seeds: vec![0, 1, 2],
            arms: vec![Arm::Uniform, Arm::Director],
            ..Settings::quick(PathBuf::new())
        };
        for (lift, side) in [(0.2, "separate, above uniform"), (-0.2, "separate, below uniform"), (0.0, "overlap")] {
            let mut points = vec![];
            for &seed in &settings.seeds {
                for &budget in &settings.budgets {
                    for &arm in &settings.arms {
                        let score = 0.4 + if arm == Arm::Uniform { 0.0 } else { lift } + 0.001 * seed as f64;
                        points.push(scored(arm, budget, seed, score));
                    }
                }
            }
            let (_, figures) = summarise(&points, &settings);
            let expected =
                format!("intervals at {} calls, director, exact judge vs uniform: {side}", settings.budgets[0]);
            assert!(figures.iter().any(|f| f.ends_with(&expected)), "{lift}: {figures:?}");
        }
    }
}
