//! Loads wasm plugin components and wraps their exports in the SDK's traits.
//!
//! Host bindings are generated from the same WIT package as the SDK's guest bindings
//! (`sdk/wit/`), one world per plugin kind; the host tells a component's kind from the
//! interface it exports. Every plugin instance is an instance of the component in its own
//! [`sandbox::Sandboxed`] store, started with `init`; calls that may take long (teachers,
//! judges) run on a blocking thread, and one instance serves one call at a time, so a wasm
//! teacher or judge declares a concurrency of one.

mod engine;
mod judge;
mod operator;
mod sandbox;
mod teacher;

pub use engine::{cache_dir, wit_version};

use crate::experiment::PluginSettings;
use bindings::teacher_plugin::evolve::plugin::types;
use evolve_sdk::{
    Choice, Image, Judge, Limits, Operator, PluginContext, PluginError, PluginInfo, PluginKind, Teacher, Verdict,
};
use sandbox::{Exports, Sandboxed};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Component;

/// Host bindings of the WIT worlds, one module per world; `types` and `host` are generated
/// once (in `teacher_plugin`) and shared.
pub(crate) mod bindings {
    /// The teacher world, and the shared interfaces.
    pub mod teacher_plugin {
        wasmtime::component::bindgen!({ path: "../sdk/wit", world: "teacher-plugin" });
    }

    /// The judge world.
    pub mod judge_plugin {
        wasmtime::component::bindgen!({
            path: "../sdk/wit",
            world: "judge-plugin",
            with: {
                "evolve:plugin/types": crate::external::wasm::bindings::teacher_plugin::evolve::plugin::types,
                "evolve:plugin/host": crate::external::wasm::bindings::teacher_plugin::evolve::plugin::host,
            },
        });
    }

    /// The operator world.
    pub mod operator_plugin {
        wasmtime::component::bindgen!({
            path: "../sdk/wit",
            world: "operator-plugin",
            with: {
                "evolve:plugin/types": crate::external::wasm::bindings::teacher_plugin::evolve::plugin::types,
                "evolve:plugin/host": crate::external::wasm::bindings::teacher_plugin::evolve::plugin::host,
            },
        });
    }
}

/// A compiled, checked wasm plugin component.
pub struct WasmComponent {
    component: Component,
    kind: PluginKind,
    label: String,
}

/// Compiles (or reads from the cache) and checks the component at `path`, and asks it what it is.
pub fn load(path: &Path) -> Result<(WasmComponent, PluginInfo, serde_json::Value), String> {
    let engine = engine::engine()?;
    let component = engine::compile(engine, path)?;
    engine::check_wit_version(engine, &component, path)?;
    let kind = engine::exported_kind(engine, &component, path)?;
    sandbox::check_imports(&component).map_err(|e| format!("{}: {e}", path.display()))?;
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let loaded = WasmComponent { component, kind, label };
    let probe =
        loaded.instantiate(&PluginSettings::default(), "metadata").map_err(|e| format!("{}: {e}", path.display()))?;
    let info = probe
        .call(|live| match &live.exports {
            Exports::Teacher(p) => p.evolve_plugin_teacher().call_info(&mut live.store).map(Ok),
            Exports::Judge(p) => p.evolve_plugin_judge().call_info(&mut live.store).map(Ok),
            Exports::Operator(p) => p.evolve_plugin_operator().call_info(&mut live.store).map(Ok),
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = serde_json::from_str(&info.config_schema)
        .map_err(|e| format!("{} ships a config schema that is not JSON: {e}", path.display()))?;
    let info = PluginInfo { name: info.name, kind, version: info.version, description: info.description };
    // From here on, messages name the plugin as it names itself, not by its file.
    let loaded = WasmComponent { label: info.name.clone(), ..loaded };
    Ok((loaded, info, schema))
}

fn context(ctx: &PluginContext) -> types::Context {
    types::Context { instance: ctx.instance.clone(), seed: ctx.seed, image_size: ctx.image_size }
}

impl WasmComponent {
    fn instantiate(&self, settings: &PluginSettings, instance: &str) -> Result<Sandboxed, PluginError> {
        Sandboxed::new(&self.component, self.kind, settings, &format!("{}/{instance}", self.label))
    }

    /// Instantiates the component and starts its plugin with `config` (the world's `init`).
    fn start(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Sandboxed, PluginError> {
        let sandbox = self.instantiate(settings, &ctx.instance)?;
        let (json, ctx) = (config.to_string(), context(ctx));
        sandbox.call(|live| match &live.exports {
            Exports::Teacher(p) => p.evolve_plugin_teacher().call_init(&mut live.store, &json, &ctx),
            Exports::Judge(p) => p.evolve_plugin_judge().call_init(&mut live.store, &json, &ctx),
            Exports::Operator(p) => p.evolve_plugin_operator().call_init(&mut live.store, &json, &ctx),
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
        Ok(Box::new(operator::WasmOperator(self.start(config, ctx, settings)?)))
    }

    /// Builds a teacher.
    pub fn teacher(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Teacher>, PluginError> {
        Ok(Box::new(teacher::WasmTeacher(Arc::new(self.start(config, ctx, settings)?))))
    }

    /// Builds a judge.
    pub fn judge(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Judge>, PluginError> {
        Ok(Box::new(judge::WasmJudge(Arc::new(self.start(config, ctx, settings)?))))
    }
}

fn from_wit_image(image: types::Image) -> Result<Image, PluginError> {
    Image::from_rgb(image.width, image.height, image.rgb)
        .map_err(|e| PluginError::Failed(format!("the plugin returned a bad image: {e}")))
}

fn to_wit_image(image: &Image) -> types::Image {
    types::Image { width: image.width(), height: image.height(), rgb: image.pixels().to_vec() }
}

fn from_wit_limits(l: types::Limits) -> Limits {
    // One instance serves one call at a time.
    Limits { concurrency: 1, requests_per_minute: l.requests_per_minute }
}

fn from_wit_verdict(verdict: types::Verdict) -> Verdict {
    Verdict {
        choice: match verdict.choice {
            types::Choice::Best(i) => Choice::Best(i as usize),
            types::Choice::Tie => Choice::Tie,
        },
        confidence: verdict.confidence,
        raw: verdict.raw,
    }
}

fn to_wit_verdict(verdict: &Verdict) -> types::Verdict {
    types::Verdict {
        choice: match verdict.choice {
            Choice::Best(i) => types::Choice::Best(i as u32),
            Choice::Tie => types::Choice::Tie,
        },
        confidence: verdict.confidence,
        raw: verdict.raw.clone(),
    }
}
