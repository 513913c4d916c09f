//! Loads wasm plugin components and wraps their exports in the SDK's traits.
//!
//! Host bindings are generated from the same WIT package as the SDK's guest bindings
//! (`sdk/wit/`), one world per plugin kind; the host tells a component's kind from the
//! interface it exports. Every plugin instance is an instance of the component in its own
//! [`sandbox::Sandboxed`] store, started with `init`; calls that may take long (teachers,
//! judges) run on a blocking thread, and one instance serves one call at a time, so a wasm
//! teacher or judge declares a concurrency of one.

mod convert;
mod engine;
mod error;
mod judge;
mod operator;
mod sandbox;
mod teacher;

pub use engine::{cache_dir, wit_version};
pub use error::WasmLoadError;

use crate::experiment::PluginSettings;
use evolve_sdk::{Judge, Operator, PluginContext, PluginError, PluginInfo, PluginKind, Teacher};
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
pub fn load(path: &Path) -> Result<(WasmComponent, PluginInfo, serde_json::Value), WasmLoadError> {
    let engine = engine::engine()?;
    let component = engine::compile(engine, path)?;
    engine::check_wit_version(engine, &component, path)?;
    let kind = engine::exported_kind(engine, &component, path)?;
    sandbox::check_imports(&component, path)?;
    let probe_failed = |source| WasmLoadError::Probe { path: path.to_path_buf(), source };
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let loaded = WasmComponent { component, kind, label };
    let probe = loaded.instantiate(&PluginSettings::default(), "metadata").map_err(probe_failed)?;
    let info = probe
        .call(|live| match &live.exports {
            Exports::Teacher(p) => p.evolve_plugin_teacher().call_info(&mut live.store).map(Ok),
            Exports::Judge(p) => p.evolve_plugin_judge().call_info(&mut live.store).map(Ok),
            Exports::Operator(p) => p.evolve_plugin_operator().call_info(&mut live.store).map(Ok),
        })
        .map_err(probe_failed)?;
    let schema = serde_json::from_str(&info.config_schema)
        .map_err(|source| WasmLoadError::Schema { path: path.to_path_buf(), source })?;
    let info = PluginInfo { name: info.name, kind, version: info.version, description: info.description };
    // From here on, messages name the plugin as it names itself, not by its file.
    let loaded = WasmComponent { label: info.name.clone(), ..loaded };
    Ok((loaded, info, schema))
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
        let (json, ctx) = (config.to_string(), convert::context(ctx));
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
