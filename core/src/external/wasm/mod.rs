//! Loads wasm plugin components and wraps their exports in the SDK's traits.
//!
//! Host bindings are generated from the same WIT file as the SDK's guest bindings
//! (`sdk/wit/plugin.wit`). Every instance runs in a [`sandbox::Sandboxed`] store; calls that
//! may take long (teachers, judges) run on a blocking thread, and one instance serves one call
//! at a time, so a wasm teacher or judge declares a concurrency of one.

mod engine;
mod sandbox;

pub use engine::{cache_dir, wit_version};

use super::off_runtime;
use crate::experiment::PluginSettings;
use bindings::evolve::plugin::types;
use bindings::exports::evolve::plugin::{judge, operator, teacher};
use evolve_sdk::{
    Action, Choice, CompareRequest, Cost, EvaluatedSample, ExpandRequest, GenerateRequest, GeneratedImage, Image,
    Judge, Limits, MutateRequest, Operator, Origin, Outcome, PluginContext, PluginError, PluginInfo, PluginKind,
    Teacher, Verdict,
};
use sandbox::Sandboxed;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Component;

/// Host bindings of the WIT world.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({ path: "../sdk/wit", world: "plugin" });
}

/// A compiled, checked wasm plugin component.
pub struct WasmComponent {
    component: Component,
    label: String,
}

/// Compiles (or reads from the cache) and checks the component at `path`, and asks it what it is.
pub fn load(path: &Path) -> Result<(WasmComponent, PluginInfo, serde_json::Value), String> {
    let engine = engine::engine()?;
    let component = engine::compile(engine, path)?;
    engine::check_wit_version(engine, &component, path)?;
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let loaded = WasmComponent { component, label };
    let probe =
        loaded.instantiate(&PluginSettings::default(), "metadata").map_err(|e| format!("{}: {e}", path.display()))?;
    let info = probe
        .call(|live| live.plugin.evolve_plugin_metadata().call_info(&mut live.store).map(Ok))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = serde_json::from_str(&info.config_schema)
        .map_err(|e| format!("{} ships a config schema that is not JSON: {e}", path.display()))?;
    let kind = match info.kind {
        types::PluginKind::Teacher => PluginKind::Teacher,
        types::PluginKind::Judge => PluginKind::Judge,
        types::PluginKind::Operator => PluginKind::Operator,
    };
    let info = PluginInfo { name: info.name, kind, version: info.version, description: info.description };
    Ok((loaded, info, schema))
}

fn context(ctx: &PluginContext) -> types::Context {
    types::Context { instance: ctx.instance.clone(), seed: ctx.seed, image_size: ctx.image_size }
}

impl WasmComponent {
    fn instantiate(&self, settings: &PluginSettings, instance: &str) -> Result<Sandboxed, PluginError> {
        Sandboxed::new(&self.component, settings, &format!("{}/{instance}", self.label))
    }

    /// Instantiates the component and builds its plugin object with `create` (the kind's
    /// `instance.create`).
    fn build(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
        create: impl FnOnce(&mut sandbox::Live, &str, &types::Context) -> wasmtime::Result<Created>,
    ) -> Result<Sandboxed, PluginError> {
        let sandbox = self.instantiate(settings, &ctx.instance)?;
        let (json, wit_ctx) = (config.to_string(), context(ctx));
        sandbox.call(|live| {
            let created = create(live, &json, &wit_ctx)?;
            Ok(created.map(|resource| live.resource = Some(resource)))
        })?;
        Ok(sandbox)
    }

    /// Builds an operator.
    pub fn operator(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Operator>, PluginError> {
        let sandbox = self.build(config, ctx, settings, |live, json, c| {
            live.plugin.evolve_plugin_operator().instance().call_create(&mut live.store, json, c)
        })?;
        Ok(Box::new(WasmOperator(sandbox)))
    }

    /// Builds a teacher.
    pub fn teacher(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Teacher>, PluginError> {
        let sandbox = self.build(config, ctx, settings, |live, json, c| {
            live.plugin.evolve_plugin_teacher().instance().call_create(&mut live.store, json, c)
        })?;
        Ok(Box::new(WasmTeacher(Arc::new(sandbox))))
    }

    /// Builds a judge.
    pub fn judge(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Judge>, PluginError> {
        let sandbox = self.build(config, ctx, settings, |live, json, c| {
            live.plugin.evolve_plugin_judge().instance().call_create(&mut live.store, json, c)
        })?;
        Ok(Box::new(WasmJudge(Arc::new(sandbox))))
    }
}

/// What a kind's `instance.create` returns.
type Created = Result<wasmtime::component::ResourceAny, types::PluginError>;

/// The plugin object of a live instance (set right after `create`).
fn resource(live: &sandbox::Live) -> wasmtime::Result<wasmtime::component::ResourceAny> {
    live.resource.ok_or_else(|| wasmtime::Error::msg("the plugin object was not built"))
}

struct WasmOperator(Sandboxed);

impl Operator for WasmOperator {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        let wit_sample = to_wit_sample(sample);
        let actions = self.0.call(|live| {
            let this = resource(live)?;
            live.plugin.evolve_plugin_operator().instance().call_decide(&mut live.store, this, &wit_sample)
        })?;
        Ok(actions.into_iter().map(from_wit_action).collect())
    }
}

struct WasmTeacher(Arc<Sandboxed>);

fn to_wit_request(r: &GenerateRequest) -> teacher::GenerateRequest {
    teacher::GenerateRequest { prompt: r.prompt.clone(), width: r.width, height: r.height, seed: r.seed }
}

fn from_wit_image(image: types::Image) -> Result<Image, PluginError> {
    Image::from_rgb(image.width, image.height, image.rgb)
        .map_err(|e| PluginError::Failed(format!("the plugin returned a bad image: {e}")))
}

fn from_wit_limits(l: types::Limits) -> Limits {
    // One instance serves one call at a time.
    Limits { concurrency: 1, requests_per_minute: l.requests_per_minute }
}

#[evolve_sdk::async_trait]
impl Teacher for WasmTeacher {
    fn limits(&self) -> Limits {
        let limits = self.0.call(|live| {
            let this = resource(live)?;
            live.plugin.evolve_plugin_teacher().instance().call_limits(&mut live.store, this).map(Ok)
        });
        limits.map(from_wit_limits).unwrap_or(Limits { concurrency: 1, requests_per_minute: None })
    }

    fn price(&self, request: &GenerateRequest) -> Cost {
        // Only for display: the host buys with `quote`, which refuses what cannot be priced.
        self.quote(request).unwrap_or(Cost::ZERO)
    }

    fn quote(&self, request: &GenerateRequest) -> Result<Cost, PluginError> {
        let wit = to_wit_request(request);
        let price = self.0.call(|live| {
            let this = resource(live)?;
            live.plugin.evolve_plugin_teacher().instance().call_price(&mut live.store, this, &wit).map(Ok)
        });
        Ok(Cost { micro_usd: price? })
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let (sandbox, wit) = (Arc::clone(&self.0), to_wit_request(request));
        let generated = off_runtime(move || {
            sandbox.call(|live| {
                let this = resource(live)?;
                live.plugin.evolve_plugin_teacher().instance().call_generate(&mut live.store, this, &wit)
            })
        })
        .await??;
        Ok(GeneratedImage {
            image: from_wit_image(generated.image)?,
            revised_prompt: generated.revised_prompt,
            cost: Cost { micro_usd: generated.cost_micro_usd },
        })
    }
}

struct WasmJudge(Arc<Sandboxed>);

#[evolve_sdk::async_trait]
impl Judge for WasmJudge {
    fn limits(&self) -> Limits {
        let limits = self.0.call(|live| {
            let this = resource(live)?;
            live.plugin.evolve_plugin_judge().instance().call_limits(&mut live.store, this).map(Ok)
        });
        limits.map(from_wit_limits).unwrap_or(Limits { concurrency: 1, requests_per_minute: None })
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let images: Vec<types::Image> = request
            .images
            .iter()
            .map(|i| types::Image { width: i.width(), height: i.height(), rgb: i.pixels().to_vec() })
            .collect();
        let (prompt, seed) = (request.prompt.clone(), request.seed);
        let verdict = off_runtime(move || {
            sandbox.call(|live| {
                let this = resource(live)?;
                live.plugin.evolve_plugin_judge().instance().call_compare(&mut live.store, this, &prompt, &images, seed)
            })
        })
        .await??;
        (Verdict {
            choice: match verdict.choice {
                judge::Choice::Best(i) => Choice::Best(i as usize),
                judge::Choice::Tie => Choice::Tie,
            },
            confidence: verdict.confidence,
            raw: verdict.raw,
        })
        .checked(request.images.len())
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let (prompt, n, seed) = (request.prompt.clone(), request.n as u32, request.seed);
        off_runtime(move || {
            sandbox.call(|live| {
                let this = resource(live)?;
                live.plugin.evolve_plugin_judge().instance().call_expand(&mut live.store, this, &prompt, n, seed)
            })
        })
        .await?
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let (recent, seed) = (request.recent.clone(), request.seed);
        off_runtime(move || {
            sandbox.call(|live| {
                let this = resource(live)?;
                live.plugin.evolve_plugin_judge().instance().call_mutate(&mut live.store, this, &recent, seed)
            })
        })
        .await?
    }
}

fn to_wit_outcome(o: Outcome) -> operator::Outcome {
    match o {
        Outcome::TeacherBetter => operator::Outcome::TeacherBetter,
        Outcome::BaseAsGood => operator::Outcome::BaseAsGood,
    }
}

fn to_wit_action(a: &Action) -> operator::Action {
    match a {
        Action::Keep => operator::Action::Keep,
        Action::Deactivate => operator::Action::Deactivate,
        Action::Expand { n } => operator::Action::Expand(*n as u32),
        Action::Mutate => operator::Action::Mutate,
        Action::Rejudge => operator::Action::Rejudge,
        Action::Propose { prompt } => operator::Action::Propose(prompt.clone()),
    }
}

fn from_wit_action(a: operator::Action) -> Action {
    match a {
        operator::Action::Keep => Action::Keep,
        operator::Action::Deactivate => Action::Deactivate,
        operator::Action::Expand(n) => Action::Expand { n: n as usize },
        operator::Action::Mutate => Action::Mutate,
        operator::Action::Rejudge => Action::Rejudge,
        operator::Action::Propose(prompt) => Action::Propose { prompt },
    }
}

fn to_wit_sample(s: &EvaluatedSample) -> operator::EvaluatedSample {
    operator::EvaluatedSample {
        sample_id: s.sample_id,
        prompt: s.prompt.clone(),
        origin: match s.origin {
            Origin::Seed => operator::Origin::Seed,
            Origin::Expansion => operator::Origin::Expansion,
            Origin::Mutation => operator::Origin::Mutation,
            // The 0.1 world, frozen, has no `imported`: an imported sample is a seed there.
            Origin::Imported => operator::Origin::Seed,
        },
        round: s.round,
        outcome: to_wit_outcome(s.outcome),
        verdict: operator::Verdict {
            choice: match s.verdict.choice {
                Choice::Best(i) => operator::Choice::Best(i as u32),
                Choice::Tie => operator::Choice::Tie,
            },
            confidence: s.verdict.confidence,
            raw: s.verdict.raw.clone(),
        },
        rejudged: s.rejudged,
        history: s.history.iter().copied().map(to_wit_outcome).collect(),
        proposed: s.proposed.iter().map(to_wit_action).collect(),
        seed: s.seed,
    }
}
