//! What every plugin is, whatever its kind: identity, limits, and what the host gives it.

use serde::{Deserialize, Serialize};

/// The roles a plugin can play in the evolution loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Renders prompts into images (an image API).
    Teacher,
    /// Compares images and writes prompts (a vision-language model).
    Judge,
    /// Turns a judged sample into actions on the training set.
    Operator,
    /// The model being trained.
    BaseModel,
    /// A held-out evaluation suite and its scorer.
    Evaluator,
}

impl PluginKind {
    /// Every kind, in the order the loop uses them.
    pub const ALL: [PluginKind; 5] =
        [PluginKind::BaseModel, PluginKind::Teacher, PluginKind::Judge, PluginKind::Operator, PluginKind::Evaluator];

    /// The name used in experiment files and listings (`teacher`, `base_model`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Teacher => "teacher",
            PluginKind::Judge => "judge",
            PluginKind::Operator => "operator",
            PluginKind::BaseModel => "base_model",
            PluginKind::Evaluator => "evaluator",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's identity as listed by `evolve plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The name experiment files use (`plugin = "shapes"`); unique per kind.
    pub name: String,
    /// Which role the plugin plays.
    pub kind: PluginKind,
    /// The plugin's own version (semver).
    pub version: String,
    /// One line on what it does.
    pub description: String,
}

/// How hard the host may drive a plugin that calls a remote service. The host enforces these;
/// a plugin need not count its own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Calls in flight at once.
    pub concurrency: u32,
    /// Calls started per minute; `None` for no limit.
    pub requests_per_minute: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { concurrency: 4, requests_per_minute: None }
    }
}

/// What the host tells a plugin when it constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginContext {
    /// The instance's label in the experiment (a teacher's `name`, or the plugin name).
    pub instance: String,
    /// The run's seed mixed with the instance label: the root of all the plugin's randomness,
    /// so that a run is reproducible.
    pub seed: u64,
    /// Side of the square images the run trains on (`run.image_size`).
    pub image_size: u32,
    /// The run's compute device (`cpu` or `cuda:N`), for base models.
    pub device: String,
    /// A folder in the run directory where a built-in plugin may keep what it derives and can
    /// derive again (e.g. a base model's VAE latents), surviving resumes; `None` outside a run.
    /// External plugins never see it.
    pub cache_dir: Option<std::path::PathBuf>,
    /// This process's place in a data-parallel training job (`evolve run --gpus N`), for base
    /// models; `None` when the model trains alone. External plugins never see it.
    pub data_parallel: Option<DataParallel>,
}

/// A base model's place in a data-parallel job: `world` processes, one per GPU, each training
/// on its own share of every batch and averaging gradients with the others before each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataParallel {
    /// This process's rank, from 0; rank 0 is the one that also runs the director.
    pub rank: usize,
    /// How many processes train together.
    pub world: usize,
    /// `host:port` where the ranks meet: rank 0 listens there, the others connect.
    pub rendezvous: String,
}

impl PluginContext {
    /// A context for `instance` with `seed`, 32-pixel images, on the CPU.
    pub fn new(instance: impl Into<String>, seed: u64) -> Self {
        PluginContext {
            instance: instance.into(),
            seed,
            image_size: 32,
            device: "cpu".into(),
            cache_dir: None,
            data_parallel: None,
        }
    }

    /// The same context as one rank of a data-parallel job.
    pub fn with_data_parallel(mut self, group: DataParallel) -> Self {
        self.data_parallel = Some(group);
        self
    }

    /// The same context with a cache folder (see [`PluginContext::cache_dir`]).
    pub fn with_cache_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The same context with another image size and device.
    pub fn with_run(mut self, image_size: u32, device: &str) -> Self {
        self.image_size = image_size;
        self.device = device.to_string();
        self
    }
}
