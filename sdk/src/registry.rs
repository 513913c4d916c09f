//! Built-in plugin registration: plugin crates submit a [`BuiltinPlugin`] with
//! [`register_plugin!`](crate::register_plugin); the host collects them at start-up.

use crate::{BaseModel, Evaluator, Judge, Operator, PluginContext, PluginError, PluginInfo, PluginKind, Teacher};

/// Builds a plugin instance from its (already schema-validated) JSON config.
pub type Build<T> = fn(serde_json::Value, &PluginContext) -> Result<Box<T>, PluginError>;

/// How to construct a plugin; the variant is its kind.
#[derive(Clone, Copy)]
pub enum Constructor {
    /// A [`Teacher`].
    Teacher(Build<dyn Teacher>),
    /// A [`Judge`].
    Judge(Build<dyn Judge>),
    /// An [`Operator`].
    Operator(Build<dyn Operator>),
    /// A [`BaseModel`].
    BaseModel(Build<dyn BaseModel>),
    /// An [`Evaluator`].
    Evaluator(Build<dyn Evaluator>),
}

impl Constructor {
    /// The kind of plugin this builds.
    pub fn kind(&self) -> PluginKind {
        match self {
            Constructor::Teacher(_) => PluginKind::Teacher,
            Constructor::Judge(_) => PluginKind::Judge,
            Constructor::Operator(_) => PluginKind::Operator,
            Constructor::BaseModel(_) => PluginKind::BaseModel,
            Constructor::Evaluator(_) => PluginKind::Evaluator,
        }
    }
}

/// A plugin compiled into the host. Every field is `'static` so that a plugin crate can submit
/// one from a `static` with `inventory`.
pub struct BuiltinPlugin {
    /// The name experiment files use.
    pub name: &'static str,
    /// The plugin crate's version.
    pub version: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// The JSON Schema of its config section.
    pub config_schema: fn() -> serde_json::Value,
    /// How to build it.
    pub constructor: Constructor,
}

impl BuiltinPlugin {
    /// The plugin's identity.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.to_string(),
            kind: self.constructor.kind(),
            version: self.version.to_string(),
            description: self.description.to_string(),
        }
    }
}

inventory::collect!(BuiltinPlugin);

/// Every built-in plugin linked into this binary.
pub fn builtin_plugins() -> impl Iterator<Item = &'static BuiltinPlugin> {
    inventory::iter::<BuiltinPlugin>.into_iter()
}

/// Registers a built-in plugin.
///
/// `config` is a type implementing `serde::Deserialize` and `schemars::JsonSchema`; `build` is a
/// non-capturing closure `|config, &PluginContext| -> Result<impl Trait, PluginError>`. The crate
/// version is taken from the calling crate's `Cargo.toml`. See the crate docs for an example.
#[macro_export]
macro_rules! register_plugin {
    (
        kind: $kind:ident,
        name: $name:expr,
        description: $description:expr,
        config: $config:ty,
        build: $build:expr $(,)?
    ) => {
        $crate::inventory::submit! {
            $crate::BuiltinPlugin {
                name: $name,
                version: env!("CARGO_PKG_VERSION"),
                description: $description,
                config_schema: $crate::config_schema::<$config>,
                constructor: $crate::Constructor::$kind(|value, ctx| {
                    let config: $config = $crate::decode_config(value)?;
                    // Typed, so that a closure returning a bare `Ok(..)` infers its error type.
                    let plugin: ::std::result::Result<_, $crate::PluginError> = ($build)(config, ctx);
                    Ok(::std::boxed::Box::new(plugin?))
                }),
            }
        }
    };
}
