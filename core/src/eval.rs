//! Scoring a model on an evaluator's held-out suite, GenEval-style: the share of prompts whose
//! image meets every requirement, per category, and their mean as the overall score.

use evolve_sdk::{BaseModel, EvalSuite, Evaluator, GenerateRequest, Image, PluginError, SampleRequest, Teacher};
use serde::Serialize;
use std::sync::Arc;

/// One category's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryScore {
    /// The category (e.g. `counting`).
    pub category: String,
    /// Prompts in it.
    pub prompts: usize,
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
        for (case, &score) in suite.cases.iter().zip(scores) {
            let entry = match categories.iter().position(|c| c.category == case.category) {
                Some(i) => &mut categories[i],
                None => {
                    categories.push(CategoryScore { category: case.category.clone(), prompts: 0, score: 0.0 });
                    categories.last_mut().expect("just pushed")
                }
            };
            entry.prompts += 1;
            entry.score += score as f64;
        }
        for c in &mut categories {
            c.score /= c.prompts.max(1) as f64;
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

    /// A plain-text table for terminals.
    pub fn table(&self) -> String {
        let mut out = format!("{} v{} — {}\n", self.suite, self.version, self.subject);
        out.push_str(&format!("{:<16} {:>7} {:>8}\n", "category", "prompts", "score"));
        for c in &self.categories {
            out.push_str(&format!("{:<16} {:>7} {:>7.1}%\n", c.category, c.prompts, c.score * 100.0));
        }
        out.push_str(&format!(
            "{:<16} {:>7} {:>7.1}%\n",
            "overall",
            self.categories.iter().map(|c| c.prompts).sum::<usize>(),
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
}
