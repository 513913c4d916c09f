//! Scoring a model on an evaluator's held-out suite, GenEval-style: the share of images that
//! meet every requirement of their prompt, per category, and their mean as the overall score.

use evolve_sdk::{
    BaseModel, EvalCase, EvalSuite, Evaluator, GenerateRequest, Image, PluginError, SampleRequest, SplitMix64, Teacher,
};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;

/// An evaluator whose suite renders every prompt `images` times, each with its own seed, as
/// GenEval does (4 images per prompt). Why: with one image per prompt a category of a dozen
/// prompts moves the overall score by points from the noise alone, which hides the differences
/// benchmarks look for. The first image of each prompt keeps the suite's own seed, so one image
/// per prompt is the plain suite.
pub struct ImagesPerPrompt {
    inner: Arc<dyn Evaluator>,
    images: usize,
}

impl ImagesPerPrompt {
    /// `inner` at `images` images per prompt; `inner` itself when `images` is 1 (or 0).
    pub fn wrap(inner: Arc<dyn Evaluator>, images: usize) -> Arc<dyn Evaluator> {
        if images <= 1 { inner } else { Arc::new(ImagesPerPrompt { inner, images }) }
    }
}

impl Evaluator for ImagesPerPrompt {
    fn suite(&self) -> EvalSuite {
        repeated(self.inner.suite(), self.images)
    }

    fn score(&self, case: &EvalCase, image: &Image) -> Result<f32, PluginError> {
        self.inner.score(case, image)
    }

    fn holds_out(&self, prompt: &str) -> bool {
        self.inner.holds_out(prompt)
    }
}

/// `suite` with its cases repeated `images` times: the whole suite once per image, so that the
/// first pass is `suite` itself and renders exactly as it would alone.
pub fn repeated(suite: EvalSuite, images: usize) -> EvalSuite {
    let cases = (0..images.max(1) as u64)
        .flat_map(|image| {
            suite.cases.iter().map(move |case| EvalCase {
                seed: if image == 0 { case.seed } else { SplitMix64::from_parts(&[case.seed, image]).next_u64() },
                ..case.clone()
            })
        })
        .collect();
    EvalSuite { cases, ..suite }
}

/// One category's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryScore {
    /// The category (e.g. `counting`).
    pub category: String,
    /// Prompts in it.
    pub prompts: usize,
    /// Images scored in it (prompts x images per prompt).
    pub images: usize,
    /// Mean score in `[0, 1]`.
    pub score: f64,
}

/// A model's scores on a suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The suite's name.
    pub suite: String,
    /// The suite's version.
    pub version: u32,
    /// What was scored (`teacher:shapes`, a run directory, ...).
    pub subject: String,
    /// Per category, in the suite's order.
    pub categories: Vec<CategoryScore>,
    /// Mean of the category scores.
    pub overall: f64,
}

impl EvalReport {
    /// Aggregates `scores` (one per case of `suite`, in order).
    pub fn from_scores(suite: &EvalSuite, subject: &str, scores: &[f32]) -> EvalReport {
        let mut categories: Vec<CategoryScore> = vec![];
        let mut prompts = HashSet::new();
        for (case, &score) in suite.cases.iter().zip(scores) {
            let entry = match categories.iter().position(|c| c.category == case.category) {
                Some(i) => &mut categories[i],
                None => {
                    categories.push(CategoryScore {
                        category: case.category.clone(),
                        prompts: 0,
                        images: 0,
                        score: 0.0,
                    });
                    categories.last_mut().expect("just pushed")
                }
            };
            if prompts.insert((&case.category, &case.prompt)) {
                entry.prompts += 1;
            }
            entry.images += 1;
            entry.score += score as f64;
        }
        for c in &mut categories {
            c.score /= c.images.max(1) as f64;
        }
        let overall = categories.iter().map(|c| c.score).sum::<f64>() / categories.len().max(1) as f64;
        EvalReport {
            suite: suite.name.clone(),
            version: suite.version,
            subject: subject.to_string(),
            categories,
            overall,
        }
    }

    /// Images drawn per prompt (the same for every prompt of a suite this module scores).
    pub fn images_per_prompt(&self) -> usize {
        let total = |count: fn(&CategoryScore) -> usize| self.categories.iter().map(count).sum::<usize>();
        total(|c| c.images) / total(|c| c.prompts).max(1)
    }

    /// A plain-text table for terminals.
    pub fn table(&self) -> String {
        let mut out = format!("{} v{} — {}\n", self.suite, self.version, self.subject);
        out.push_str(&format!("{:<16} {:>7} {:>7} {:>8}\n", "category", "prompts", "images", "score"));
        for c in &self.categories {
            out.push_str(&format!("{:<16} {:>7} {:>7} {:>7.1}%\n", c.category, c.prompts, c.images, c.score * 100.0));
        }
        out.push_str(&format!(
            "{:<16} {:>7} {:>7} {:>7.1}%\n",
            "overall",
            self.categories.iter().map(|c| c.prompts).sum::<usize>(),
            self.categories.iter().map(|c| c.images).sum::<usize>(),
            self.overall * 100.0
        ));
        out
    }
}

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The subject could not render a prompt.
    #[error("rendering {prompt:?} failed: {source}")]
    Render {
        /// The prompt.
        prompt: String,
        /// Why.
        source: PluginError,
    },
    /// The evaluator could not score an image.
    #[error("scoring {prompt:?} failed: {source}")]
    Score {
        /// The prompt.
        prompt: String,
        /// Why.
        source: PluginError,
    },
}

/// Why a run's model could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreRunError {
    /// The run, its experiment or its latest checkpoint could not be opened.
    #[error(transparent)]
    RunModel(#[from] crate::run_model::RunModelError),
    /// Neither the experiment nor the caller names an evaluator.
    #[error("the run's experiment has no [eval] section; pick an evaluator (`evolve eval --suite NAME`)")]
    NoSuite,
    /// The evaluator could not be built.
    #[error("cannot build evaluator `{plugin}`: {source}")]
    Build {
        /// The plugin.
        plugin: String,
        /// Why.
        source: crate::registry::BuildError,
    },
    /// Rendering or scoring failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// Scores the latest checkpoint of the run at `run` on `suite` (default: the experiment's
/// evaluator) at `images` images per prompt (default: the experiment's
/// `director.eval_images_per_prompt`).
pub fn score_run(
    run: &std::path::Path,
    registry: &crate::registry::Registry,
    suite: Option<&str>,
    images: Option<u32>,
) -> Result<EvalReport, ScoreRunError> {
    let (experiment, mut model, _) = crate::run_model::open(run, registry)?;
    let section = match (suite, &experiment.eval) {
        (Some(name), _) => crate::experiment::PluginSection::named(name),
        (None, Some(section)) => section.clone(),
        (None, None) => return Err(ScoreRunError::NoSuite),
    };
    let ctx = crate::run_model::context(&experiment, "eval");
    let evaluator = registry
        .evaluator(&section.plugin, section.config.clone(), &ctx)
        .map_err(|source| ScoreRunError::Build { plugin: section.plugin.to_string(), source })?;
    let images = images.unwrap_or(experiment.director.eval_images_per_prompt) as usize;
    let evaluator = ImagesPerPrompt::wrap(Arc::from(evaluator), images);
    Ok(eval_model(model.as_mut(), evaluator.as_ref(), &run.display().to_string(), |_, _| {})?)
}

/// Scores `teacher` on `evaluator`'s suite at `size` x `size` pixels, with as many calls in
/// flight as the teacher allows. Transient failures are retried with back-off.
pub async fn eval_teacher(
    teacher: Arc<dyn Teacher>,
    label: &str,
    evaluator: &dyn Evaluator,
    size: u32,
) -> Result<EvalReport, EvalError> {
    let suite = evaluator.suite();
    let permits = Arc::new(tokio::sync::Semaphore::new(teacher.limits().concurrency.max(1) as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, case) in suite.cases.iter().enumerate() {
        let (teacher, permits) = (Arc::clone(&teacher), Arc::clone(&permits));
        let request = GenerateRequest { prompt: case.prompt.clone(), width: size, height: size, seed: case.seed };
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let rendered = crate::acquire::with_retries(6, || teacher.generate(&request)).await;
            (index, rendered.map(|g| g.image))
        });
    }
    let mut images: Vec<Option<Image>> = vec![None; suite.cases.len()];
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, result)) = joined else { continue };
        let prompt = suite.cases[index].prompt.clone();
        images[index] = Some(result.map_err(|source| EvalError::Render { prompt, source })?);
    }
    let mut scores = Vec::with_capacity(suite.cases.len());
    for (case, image) in suite.cases.iter().zip(images) {
        let image = image.ok_or_else(|| EvalError::Render {
            prompt: case.prompt.clone(),
            source: PluginError::Failed("render task did not finish".into()),
        })?;
        let score =
            evaluator.score(case, &image).map_err(|source| EvalError::Score { prompt: case.prompt.clone(), source })?;
        scores.push(score);
    }
    Ok(EvalReport::from_scores(&suite, &format!("teacher:{label}"), &scores))
}

/// Images per sampling batch in [`eval_model`]; fixed, because each image's noise depends on
/// its place in the batch.
pub const EVAL_BATCH: usize = 64;

/// Scores a base model on `evaluator`'s suite; `progress(done, total)` after each batch.
pub fn eval_model(
    model: &mut dyn BaseModel,
    evaluator: &dyn Evaluator,
    subject: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let suite = evaluator.suite();
    let mut scores = Vec::with_capacity(suite.cases.len());
    for chunk in suite.cases.chunks(EVAL_BATCH) {
        let request = SampleRequest {
            prompts: chunk.iter().map(|c| c.prompt.clone()).collect(),
            seed: chunk[0].seed,
            steps: None,
            guidance: None,
            ..SampleRequest::default()
        };
        let images =
            model.generate(&request).map_err(|source| EvalError::Render { prompt: chunk[0].prompt.clone(), source })?;
        for (case, image) in chunk.iter().zip(&images) {
            let score = evaluator
                .score(case, image)
                .map_err(|source| EvalError::Score { prompt: case.prompt.clone(), source })?;
            scores.push(score);
        }
        progress(scores.len(), suite.cases.len());
    }
    Ok(EvalReport::from_scores(&suite, subject, &scores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_sdk::EvalCase;

    #[test]
    fn overall_is_the_mean_of_categories() {
        let case = |c: &str| EvalCase { prompt: "p".into(), category: c.into(), seed: 0 };
        let suite = EvalSuite { name: "S".into(), version: 1, cases: vec![case("a"), case("a"), case("b")] };
        let report = EvalReport::from_scores(&suite, "x", &[1.0, 0.0, 1.0]);
        assert_eq!(report.categories[0].score, 0.5);
        assert_eq!(report.categories[1].score, 1.0);
        assert_eq!(report.overall, 0.75);
        assert!(report.table().contains("overall"));
    }

    #[test]
    fn repeated_suites_keep_the_first_pass_and_score_over_images() {
        let case = |p: &str, c: &str, seed| EvalCase { prompt: p.into(), category: c.into(), seed };
        let suite = EvalSuite { name: "S".into(), version: 1, cases: vec![case("p", "a", 7), case("q", "b", 9)] };
        let four = repeated(suite.clone(), 4);
        assert_eq!(four.cases.len(), 8);
        assert_eq!(four.cases[..2], suite.cases[..], "the first pass is the suite itself");
        let seeds: HashSet<u64> = four.cases.iter().filter(|c| c.prompt == "p").map(|c| c.seed).collect();
        assert_eq!(seeds.len(), 4, "every image of a prompt has its own seed");
        assert_eq!(repeated(suite.clone(), 1), suite);
        // Category a: 3 of 4 images right; b: 1 of 4.
        let report = EvalReport::from_scores(&four, "x", &[1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!((report.categories[0].prompts, report.categories[0].images), (1, 4));
        assert_eq!(report.categories[0].score, 0.75);
        assert_eq!(report.categories[1].score, 0.25);
        assert_eq!(report.overall, 0.5);
        assert_eq!(report.images_per_prompt(), 4);
    }
}
