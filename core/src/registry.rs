//! The plugins this binary can build, looked up by kind and name.
//!
//! Built-ins register themselves with `inventory` from their own crates; the registry only has
//! to make sure those crates are linked (see [`Registry::builtin`]). The host never matches on a
//! plugin's name: everything it knows about a plugin comes from its registration.

use crate::experiment::{PluginRef, PluginSettings};
use crate::external::{ExternalPlugin, LoadError};
use evolve_sdk::{
    BaseModel, BuiltinPlugin, Constructor, Evaluator, Judge, Operator, PluginContext, PluginError, PluginInfo,
    PluginKind, Teacher,
};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled into this binary.
    Builtin,
    /// A native plugin library.
    Native,
    /// A wasm component.
    Wasm,
}

impl Origin {
    /// `builtin`, `native` or `wasm`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::Native => "native",
            Origin::Wasm => "wasm",
        }
    }
}

/// How the registry builds a plugin.
#[derive(Clone)]
enum Source {
    Builtin(Constructor),
    External(Arc<ExternalPlugin>),
}

/// One plugin the registry can build.
#[derive(Clone)]
pub struct Entry {
    /// Its identity.
    pub info: PluginInfo,
    /// Where it comes from.
    pub origin: Origin,
    /// How an experiment refers to it.
    pub reference: PluginRef,
    /// The JSON Schema of its config section.
    pub config_schema: serde_json::Value,
    source: Source,
}

impl Entry {
    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.info.kind
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// An entry for a loaded external plugin.
    pub fn external(reference: PluginRef, plugin: Arc<ExternalPlugin>) -> Entry {
        let origin = if matches!(reference, PluginRef::Wasm { .. }) { Origin::Wasm } else { Origin::Native };
        Entry {
            info: plugin.info.clone(),
            origin,
            reference,
            config_schema: plugin.config_schema.clone(),
            source: Source::External(plugin),
        }
    }
}

/// A plugin name that is not registered for a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} plugin `{name}`{}", suggestion_suffix(.suggestion, .available))]
pub struct UnknownPlugin {
    /// The kind that was asked for.
    pub kind: PluginKind,
    /// The name that was asked for.
    pub name: String,
    /// The closest registered name, if any is close.
    pub suggestion: Option<String>,
    /// Every registered name of that kind.
    pub available: Vec<String>,
}

fn suggestion_suffix(suggestion: &Option<String>, available: &[String]) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if available.is_empty() => " (none of this kind is registered)".to_string(),
        None => format!(" (available: {})", available.join(", ")),
    }
}

/// The plugins available to an experiment.
#[derive(Clone)]
pub struct Registry {
    entries: Vec<Entry>,
    settings: PluginSettings,
}

impl Registry {
    /// Every built-in plugin linked into this binary.
    pub fn builtin() -> Registry {
        // `inventory` entries live in the plugin crates' object code; a crate the binary never
        // references is not linked, and its plugins would vanish without an error.
        evolve_operators::link();
        evolve_shapes::link();
        evolve_openai::link();
        evolve_replicate::link();
        evolve_fal::link();
        evolve_stability::link();
        evolve_bfl::link();
        evolve_dit::link();
        // Built-ins may use the SDK's host capabilities too, under the same allow-list.
        evolve_sdk::host::install(Box::new(crate::external::capabilities::NativeHost));
        Registry::from_builtins(evolve_sdk::builtin_plugins())
    }

    fn from_builtins<'a>(plugins: impl Iterator<Item = &'a BuiltinPlugin>) -> Registry {
        let mut entries: Vec<Entry> = plugins
            .map(|p| Entry {
                info: p.info(),
                origin: Origin::Builtin,
                reference: PluginRef::Name(p.name.to_string()),
                config_schema: (p.config_schema)(),
                source: Source::Builtin(p.constructor),
            })
            .collect();
        entries.sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));
        Registry { entries, settings: PluginSettings::default() }
    }

    /// The same registry with external plugins held to `settings` (an experiment's
    /// `[plugins]` table).
    pub fn with_settings(mut self, settings: &PluginSettings) -> Registry {
        crate::external::capabilities::set_native_allow_list(&settings.allow_hosts);
        self.settings = settings.clone();
        self
    }

    /// The same registry with the external plugins in `dir` listed too; files that fail to
    /// load come back with their errors.
    pub fn with_dir(mut self, dir: &std::path::Path) -> Result<(Registry, Vec<(PluginRef, LoadError)>), LoadError> {
        let mut failed = vec![];
        for (reference, loaded) in crate::external::scan(dir)? {
            match loaded {
                Ok(plugin) => self.entries.push(Entry::external(reference, plugin)),
                Err(e) => failed.push((reference, e)),
            }
        }
        Ok((self, failed))
    }

    /// Every plugin, ordered by kind then name (built-ins first).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Names registered for `kind`.
    pub fn names(&self, kind: PluginKind) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.kind() == kind && e.origin == Origin::Builtin)
            .map(|e| e.name().to_string())
            .collect()
    }

    /// The built-in plugin of `kind` called `name`.
    pub fn get(&self, kind: PluginKind, name: &str) -> Result<&Entry, UnknownPlugin> {
        self.entries.iter().find(|e| e.kind() == kind && e.origin == Origin::Builtin && e.name() == name).ok_or_else(
            || {
                let available = self.names(kind);
                UnknownPlugin {
                    kind,
                    name: name.to_string(),
                    suggestion: crate::experiment::did_you_mean(name, available.iter().map(String::as_str)),
                    available,
                }
            },
        )
    }

    /// Every built-in plugin called `name`, whatever its kind (a world like `shapes` is both a
    /// teacher and a judge).
    pub fn find(&self, name: &str) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.name() == name && e.origin == Origin::Builtin).collect()
    }

    /// How to build the plugin of `kind` that `plugin` refers to; external plugins are loaded
    /// on first use.
    fn source(&self, kind: PluginKind, plugin: &PluginRef) -> Result<Source, BuildError> {
        let source = match plugin {
            PluginRef::Name(name) => self.get(kind, name)?.source.clone(),
            external => {
                let loaded = crate::external::load(external)?;
                if loaded.info.kind != kind {
                    return Err(BuildError::KindMismatch { name: external.to_string(), kind });
                }
                Source::External(loaded)
            }
        };
        Ok(source)
    }

    /// Builds a teacher.
    pub fn teacher(
        &self,
        plugin: &PluginRef,
        config: Value,
        ctx: &PluginContext,
    ) -> Result<Box<dyn Teacher>, BuildError> {
        match self.source(PluginKind::Teacher, plugin)? {
            Source::Builtin(Constructor::Teacher(build)) => Ok(build(config, ctx)?),
            Source::External(e) => e.teacher(&config, ctx, &self.settings).map_err(|source| refused(&e, source)),
            Source::Builtin(_) => Err(mismatch(plugin, PluginKind::Teacher)),
        }
    }

    /// Builds a judge.
    pub fn judge(&self, plugin: &PluginRef, config: Value, ctx: &PluginContext) -> Result<Box<dyn Judge>, BuildError> {
        match self.source(PluginKind::Judge, plugin)? {
            Source::Builtin(Constructor::Judge(build)) => Ok(build(config, ctx)?),
            Source::External(e) => e.judge(&config, ctx, &self.settings).map_err(|source| refused(&e, source)),
            Source::Builtin(_) => Err(mismatch(plugin, PluginKind::Judge)),
        }
    }

    /// Builds an operator.
    pub fn operator(
        &self,
        plugin: &PluginRef,
        config: Value,
        ctx: &PluginContext,
    ) -> Result<Box<dyn Operator>, BuildError> {
        match self.source(PluginKind::Operator, plugin)? {
            Source::Builtin(Constructor::Operator(build)) => Ok(build(config, ctx)?),
            Source::External(e) => e.operator(&config, ctx, &self.settings).map_err(|source| refused(&e, source)),
            Source::Builtin(_) => Err(mismatch(plugin, PluginKind::Operator)),
        }
    }

    /// Builds a base model (built-ins only).
    pub fn base_model(
        &self,
        plugin: &PluginRef,
        config: Value,
        ctx: &PluginContext,
    ) -> Result<Box<dyn BaseModel>, BuildError> {
        match self.source(PluginKind::BaseModel, plugin)? {
            Source::Builtin(Constructor::BaseModel(build)) => Ok(build(config, ctx)?),
            _ => Err(mismatch(plugin, PluginKind::BaseModel)),
        }
    }

    /// Builds an evaluator (built-ins only).
    pub fn evaluator(
        &self,
        plugin: &PluginRef,
        config: Value,
        ctx: &PluginContext,
    ) -> Result<Box<dyn Evaluator>, BuildError> {
        match self.source(PluginKind::Evaluator, plugin)? {
            Source::Builtin(Constructor::Evaluator(build)) => Ok(build(config, ctx)?),
            _ => Err(mismatch(plugin, PluginKind::Evaluator)),
        }
    }
}

fn refused(plugin: &crate::external::ExternalPlugin, source: PluginError) -> BuildError {
    BuildError::External { name: plugin.info.name.clone(), source }
}

fn mismatch(plugin: &PluginRef, kind: PluginKind) -> BuildError {
    BuildError::KindMismatch { name: plugin.to_string(), kind }
}

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No such plugin.
    #[error(transparent)]
    Unknown(#[from] UnknownPlugin),
    /// The plugin refused its config.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// An external plugin refused its config; named as it names itself.
    #[error("plugin `{name}`: {source}")]
    External {
        /// The plugin's declared name.
        name: String,
        /// Why.
        source: PluginError,
    },
    /// An external plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A plugin that is not of the kind its section needs.
    #[error("`{name}` is not a {kind} plugin")]
    KindMismatch {
        /// The plugin.
        name: String,
        /// The kind asked for.
        kind: PluginKind,
    },
}
