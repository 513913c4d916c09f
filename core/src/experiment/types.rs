//! The typed form of an experiment file. Field docs become the JSON Schema's descriptions,
//! which editors show on hover, so they are written for the person editing the file.

use super::PluginRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An evolve experiment: one run of judge-guided training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "evolve experiment")]
pub struct Experiment {
    /// Identity and placement of the run.
    pub run: RunSettings,
    /// The model being trained.
    pub base_model: PluginSection,
    /// The image models to learn from; each new prompt goes to every teacher and the judge
    /// picks the best image.
    #[schemars(length(min = 1))]
    pub teachers: Vec<TeacherSection>,
    /// The vision-language model that compares images and writes prompts.
    pub judge: PluginSection,
    /// The curation chain, applied in order to every judged sample (default: the paper's
    /// discrimination, expansion, deletion, mutation).
    #[serde(default = "paper_operators")]
    pub operators: Vec<PluginSection>,
    /// The held-out evaluation suite that scores the base model (`evolve eval`); its prompts
    /// are never trained on.
    #[serde(default)]
    pub eval: Option<PluginSection>,
    /// Where the initial prompts come from.
    #[serde(default)]
    pub prompts: PromptSettings,
    /// How the trainer draws batches and saves its state.
    #[serde(default)]
    pub training: TrainingSettings,
    /// How often and how widely the judge re-examines the training set.
    #[serde(default)]
    pub director: DirectorSettings,
    /// When the run stops.
    #[serde(default)]
    pub budget: Budget,
    /// The sandbox external plugins run in.
    #[serde(default)]
    pub plugins: PluginSettings,
    /// How the judge is checked while the run goes (see `evolve_core::audit`).
    #[serde(default)]
    pub audit: AuditSettings,
}

/// The judge audit: probes asked alongside a round's comparisons, and what to do about a judge
/// found wanting. Each probe is one more judge call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Share of comparisons asked again with the images swapped (self-consistency).
    #[serde(default = "swap_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub swap_share: f64,
    /// Share of comparisons joined by a known-answer probe: the teacher's image against pure
    /// noise, in random order (position bias and error rate).
    #[serde(default = "known_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub known_share: f64,
    /// A judge whose position bias is surely above this (its whole 95% interval) fails.
    #[serde(default = "max_position_bias")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_position_bias: f64,
    /// A judge whose error rate is surely above this fails.
    #[serde(default = "max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// A judge whose self-consistency is surely below this fails.
    #[serde(default = "min_consistency")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_consistency: f64,
    /// What a failed audit does: `warn` (default: the log and the report say so) or `stop`
    /// (the run ends after the round, as at a budget; `--resume` continues it).
    #[serde(default)]
    pub on_fail: OnAuditFail,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            swap_share: swap_share(),
            known_share: known_share(),
            max_position_bias: max_position_bias(),
            max_error_rate: max_error_rate(),
            min_consistency: min_consistency(),
            on_fail: OnAuditFail::Warn,
        }
    }
}

/// What a failed judge audit does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnAuditFail {
    /// Say so in the log and the report, and go on.
    #[default]
    Warn,
    /// End the run after the round.
    Stop,
}

fn swap_share() -> f64 {
    0.1
}

fn known_share() -> f64 {
    0.05
}

fn max_position_bias() -> f64 {
    0.2
}

fn max_error_rate() -> f64 {
    0.3
}

fn min_consistency() -> f64 {
    0.7
}

/// What external plugins may do. Wasm components are held to all of it; a native plugin runs
/// in-process with the host's rights, so only its HTTP (which goes through the host) is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Hosts plugins may reach through the host's `http`: `host` (its scheme's default port),
    /// `host:port`, or `host:*` (any port); `*.example.com` covers subdomains. Redirects are
    /// handed to the plugin, never followed. Empty: no network at all.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Memory limit of each wasm plugin instance, in MiB.
    #[serde(default = "memory_mb")]
    #[schemars(range(min = 1, max = 65536))]
    pub memory_mb: u32,
    /// Time limit of one wasm plugin call, in milliseconds (time spent waiting on the host's
    /// `http` does not count).
    #[serde(default = "call_timeout_ms")]
    #[schemars(range(min = 1))]
    pub call_timeout_ms: u64,
    /// Folders a wasm plugin may read, visible inside it at the same path. None by default.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
}

fn memory_mb() -> u32 {
    256
}

fn call_timeout_ms() -> u64 {
    10_000
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            allow_hosts: vec![],
            memory_mb: memory_mb(),
            call_timeout_ms: call_timeout_ms(),
            read_dirs: vec![],
        }
    }
}

impl Experiment {
    /// Every plugin reference in the experiment, to resolve their paths.
    pub fn plugin_refs_mut(&mut self) -> impl Iterator<Item = &mut PluginRef> {
        std::iter::once(&mut self.base_model.plugin)
            .chain(self.teachers.iter_mut().map(|t| &mut t.plugin))
            .chain(std::iter::once(&mut self.judge.plugin))
            .chain(self.operators.iter_mut().map(|o| &mut o.plugin))
            .chain(self.eval.iter_mut().map(|e| &mut e.plugin))
    }
}

/// Identity and placement of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Name of the run; its directory is `runs/<name>` unless `--run-dir` says otherwise.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), length(max = 100))]
    pub name: String,
    /// Root of all randomness in the run: the same seed replays the same run.
    #[serde(default)]
    pub seed: u64,
    /// Compute device for the base model: `cpu` or `cuda:N`.
    #[serde(default = "cpu")]
    #[schemars(regex(pattern = r"^(cpu|cuda(:[0-9]+)?)$"))]
    pub device: String,
    /// Side of the square images the base model is trained on, in pixels.
    #[serde(default = "image_size")]
    #[schemars(range(min = 8, max = 4096))]
    pub image_size: u32,
}

/// A plugin and its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// A registered plugin of this section's kind by name (`evolve plugins` lists them), or an
    /// external one by path: `{ native = "libx.so" }` or `{ wasm = "x.wasm" }`.
    pub plugin: PluginRef,
    /// The plugin's own settings; `evolve schema PLUGIN` shows what it accepts.
    #[serde(default = "empty_table")]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: serde_json::Value,
}

impl PluginSection {
    /// `plugin` with an empty config.
    pub fn named(plugin: &str) -> Self {
        PluginSection { plugin: PluginRef::Name(plugin.to_string()), config: empty_table() }
    }
}

/// A teacher, its config, and a label that tells it apart from other teachers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeacherSection {
    /// Label of this teacher in the ledger and reports (default: the plugin name). Must be
    /// unique when two teachers use the same plugin.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: Option<String>,
    /// A registered teacher plugin by name, or an external one by path (`{ native = ... }`,
    /// `{ wasm = ... }`).
    pub plugin: PluginRef,
    /// The plugin's own settings.
    #[serde(default = "empty_table")]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: serde_json::Value,
}

impl TeacherSection {
    /// The label of this teacher: `name`, or the plugin's label.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.plugin.label())
    }
}

/// Where the initial prompts come from: a file, the judge, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptSettings {
    /// A text file with one prompt per line (blank lines and `#` comments skipped), relative
    /// to the experiment file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An existing dataset whose image-caption pairs start the run as already-paid samples
    /// (origin `imported`, no cost), judged, expanded and deleted like any other: an image folder
    /// with `metadata.jsonl` (what `evolve export --dataset` writes), a folder of images with a
    /// `{name}.txt` caption beside each, or WebDataset `.tar` shards (a folder of them, or one).
    /// Relative to the experiment file. Bad entries are reported with their path and skipped.
    #[serde(default)]
    pub from_dataset: Option<PathBuf>,
    /// How many further prompts the judge writes (by mutation) before training starts.
    #[serde(default = "seed_count")]
    #[schemars(range(max = 1_000_000))]
    pub generate: u32,
}

impl Default for PromptSettings {
    fn default() -> Self {
        PromptSettings { file: None, from_dataset: None, generate: seed_count() }
    }
}

/// How the trainer draws batches and saves its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// Images per optimiser step.
    #[serde(default = "batch_size")]
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: u32,
    /// Steps between checkpoints (a resumed run loses at most this many steps).
    #[serde(default = "checkpoint_every")]
    #[schemars(range(min = 1))]
    pub checkpoint_every: u64,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        TrainingSettings { batch_size: batch_size(), checkpoint_every: checkpoint_every() }
    }
}

/// How often and how widely the judge re-examines the training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorSettings {
    /// Trainer steps between evolution rounds.
    #[serde(default = "every_steps")]
    #[schemars(range(min = 1))]
    pub every_steps: u64,
    /// Fraction of the active prompts judged per round, least recently judged first
    /// (paper: 0.2).
    #[serde(default = "select_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub select_ratio: f64,
    /// Sampler steps of the base model's renders for the judge (default: the model's own).
    /// Fewer steps make rounds cheaper at some cost in image quality.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub sample_steps: Option<u32>,
    /// Rounds between evaluations while the run is going, for the report's curves and for
    /// `budget.target_eval` (default: every 5 rounds with a target, otherwise only at the end).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub eval_every_rounds: Option<u64>,
    /// Images rendered per evaluation prompt (default 1; GenEval renders 4). More images make
    /// a steadier score at proportionally more time per evaluation; the first image of each
    /// prompt is the one a single-image evaluation renders.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub eval_images_per_prompt: u32,
    /// Pause training while a round runs (default: train on through it). Without a pause, how
    /// many steps a round overlaps, and so what the set holds at each step, depends on how
    /// busy the machine is; with it, it does not (what `evolve bench data-efficiency` needs), at
    /// the cost of the overlap. With deterministic plugins a run in lockstep replays from its
    /// seed bit for bit: purchases and judgments are recorded in the order they were asked for,
    /// whichever finishes first.
    #[serde(default)]
    pub lockstep: bool,
    /// How rounds spend the teacher-call budget: `as_asked` (default: each round buys all its
    /// operators ask for while the budget lasts) or `paced` (each round buys at most an even
    /// share of the calls left over the rounds left; needs `budget.max_teacher_calls` and
    /// `budget.max_steps`). See `director::pacing`.
    #[serde(default)]
    pub spend: Spend,
    /// Which new prompts a paced round buys first when its share cannot buy all it was asked
    /// for: `any` (default: a random choice) or `near_misses` (those whose parent the teacher
    /// won by the smallest margin of the judge's verdict confidence: what the model nearly
    /// gets right). See `director::pacing`.
    #[serde(default)]
    pub buy_first: BuyFirst,
    /// Which teachers a new prompt is bought from: `all` (default: every teacher, then the
    /// judge's tournament picks the winner), `parent_winner` (the paper's: an expansion or
    /// mutation from the teacher whose image won its parent's tournament) or `bandit` (learns
    /// how often each teacher's image is as good as the tournament's best and buys from the
    /// cheapest teacher as good as the best, a tenth of the time from all). With one teacher,
    /// all three are the same. See `director::routing`.
    #[serde(default)]
    pub teacher_selection: TeacherSelection,
}

/// Which teachers a new prompt is bought from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeacherSelection {
    /// Every teacher; the judge's tournament picks the winner.
    #[default]
    All,
    /// The teacher whose image won the parent prompt's tournament (the initial set: all).
    ParentWinner,
    /// The cheapest teacher as good as the best (each teacher's quality drawn from its
    /// tournament record, Thompson sampling); all for the initial set and a tenth of the rest.
    Bandit,
}

/// Which new prompts a paced round buys first (`director.buy_first`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuyFirst {
    /// A random choice, none preferred.
    #[default]
    Any,
    /// Those whose parent the teacher beat by the smallest margin first (a parent the base
    /// model matched counts as no margin); random among equals.
    NearMisses,
}

/// How rounds spend the teacher-call budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Spend {
    /// Every round buys all its operators ask for while the budget lasts.
    #[default]
    AsAsked,
    /// Every round buys at most an even share of the calls left over the rounds left.
    Paced,
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            every_steps: every_steps(),
            select_ratio: select_ratio(),
            sample_steps: None,
            eval_every_rounds: None,
            eval_images_per_prompt: 1,
            lockstep: false,
            spend: Spend::AsAsked,
            buy_first: BuyFirst::Any,
            teacher_selection: TeacherSelection::All,
        }
    }
}

/// When the run stops: at the first limit reached. Every limit is optional; a run with none
/// trains until interrupted (and resumes with `evolve run --resume`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Teacher calls (paid images), over all teachers.
    #[serde(default)]
    pub max_teacher_calls: Option<u64>,
    /// Money spent on teachers, in US dollars.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Trainer steps.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Stop once the evaluation's overall score reaches this (0 to 1).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub target_eval: Option<f64>,
}

fn paper_operators() -> Vec<PluginSection> {
    ["discrimination", "expansion", "deletion", "mutation"].into_iter().map(PluginSection::named).collect()
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn cpu() -> String {
    "cpu".to_string()
}

fn image_size() -> u32 {
    32
}

fn seed_count() -> u32 {
    100
}

fn batch_size() -> u32 {
    32
}

fn checkpoint_every() -> u64 {
    500
}

fn every_steps() -> u64 {
    200
}

fn select_ratio() -> f64 {
    0.2
}

fn one() -> u32 {
    1
}
