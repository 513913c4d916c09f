//! The plugins this binary can build, looked up by kind and name.
//!
//! Built-ins register themselves with `inventory` from their own crates; the registry only has
//! to make sure those crates are linked (see [`Registry::builtin`]). The host never matches on a
//! plugin's name: everything it knows about a plugin comes from its registration.

use evolve_sdk::registry::Build;
use evolve_sdk::{
    BaseModel, BuiltinPlugin, Constructor, Evaluator, Judge, Operator, PluginContext, PluginError, PluginInfo,
    PluginKind, Teacher,
};
use serde::Serialize;
use serde_json::Value;

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled into this binary.
    Builtin,
}

/// One plugin the registry can build.
pub struct Entry {
    /// Its identity.
    pub info: PluginInfo,
    /// Where it comes from.
    pub origin: Origin,
    /// The JSON Schema of its config section.
    pub config_schema: serde_json::Value,
    constructor: Constructor,
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

    /// How to build it.
    pub fn constructor(&self) -> Constructor {
        self.constructor
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
pub struct Registry {
    entries: Vec<Entry>,
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
        Registry::from_builtins(evolve_sdk::builtin_plugins())
    }

    fn from_builtins<'a>(plugins: impl Iterator<Item = &'a BuiltinPlugin>) -> Registry {
        let mut entries: Vec<Entry> = plugins
            .map(|p| Entry {
                info: p.info(),
                origin: Origin::Builtin,
                config_schema: (p.config_schema)(),
                constructor: p.constructor,
            })
            .collect();
        entries.sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));
        Registry { entries }
    }

    /// Every plugin, ordered by kind then name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Names registered for `kind`.
    pub fn names(&self, kind: PluginKind) -> Vec<String> {
        self.entries.iter().filter(|e| e.kind() == kind).map(|e| e.name().to_string()).collect()
    }

    /// The plugin of `kind` called `name`.
    pub fn get(&self, kind: PluginKind, name: &str) -> Result<&Entry, UnknownPlugin> {
        self.entries.iter().find(|e| e.kind() == kind && e.name() == name).ok_or_else(|| {
            let available = self.names(kind);
            UnknownPlugin {
                kind,
                name: name.to_string(),
                suggestion: crate::experiment::did_you_mean(name, available.iter().map(String::as_str)),
                available,
            }
        })
    }

    /// Every plugin called `name`, whatever its kind (a world like `shapes` is both a teacher and
    /// a judge).
    pub fn find(&self, name: &str) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.name() == name).collect()
    }

    /// Builds the plugin of `kind` called `name` from its (schema-validated) config; `pick`
    /// selects the constructor variant of that kind.
    fn build<T: ?Sized>(
        &self,
        kind: PluginKind,
        name: &str,
        config: serde_json::Value,
        ctx: &PluginContext,
        pick: fn(Constructor) -> Option<Build<T>>,
    ) -> Result<Box<T>, BuildError> {
        let entry = self.get(kind, name)?;
        let build = pick(entry.constructor).ok_or_else(|| BuildError::KindMismatch { name: name.to_string(), kind })?;
        Ok(build(config, ctx)?)
    }

    /// Builds a teacher.
    pub fn teacher(&self, name: &str, config: Value, ctx: &PluginContext) -> Result<Box<dyn Teacher>, BuildError> {
        self.build(PluginKind::Teacher, name, config, ctx, |c| match c {
            Constructor::Teacher(b) => Some(b),
            _ => None,
        })
    }

    /// Builds a judge.
    pub fn judge(&self, name: &str, config: Value, ctx: &PluginContext) -> Result<Box<dyn Judge>, BuildError> {
        self.build(PluginKind::Judge, name, config, ctx, |c| match c {
            Constructor::Judge(b) => Some(b),
            _ => None,
        })
    }

    /// Builds an operator.
    pub fn operator(&self, name: &str, config: Value, ctx: &PluginContext) -> Result<Box<dyn Operator>, BuildError> {
        self.build(PluginKind::Operator, name, config, ctx, |c| match c {
            Constructor::Operator(b) => Some(b),
            _ => None,
        })
    }

    /// Builds a base model.
    pub fn base_model(&self, name: &str, config: Value, ctx: &PluginContext) -> Result<Box<dyn BaseModel>, BuildError> {
        self.build(PluginKind::BaseModel, name, config, ctx, |c| match c {
            Constructor::BaseModel(b) => Some(b),
            _ => None,
        })
    }

    /// Builds an evaluator.
    pub fn evaluator(&self, name: &str, config: Value, ctx: &PluginContext) -> Result<Box<dyn Evaluator>, BuildError> {
        self.build(PluginKind::Evaluator, name, config, ctx, |c| match c {
            Constructor::Evaluator(b) => Some(b),
            _ => None,
        })
    }
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
    /// A registration whose constructor does not match its kind (a registry bug).
    #[error("plugin `{name}` is registered as a {kind} but cannot build one")]
    KindMismatch {
        /// The plugin.
        name: String,
        /// The kind asked for.
        kind: PluginKind,
    },
}
