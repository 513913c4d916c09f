//! What an export macro declares about a plugin, whichever way it is shipped (native dylib or
//! wasm component): identity, config schema, and how to build an instance.

use crate::{Judge, Operator, PluginContext, PluginError, PluginKind, Teacher};

/// One plugin instance, built by the export macro's `build` closure.
pub enum Built {
    /// An operator.
    Operator(Box<dyn Operator>),
    /// A teacher.
    Teacher(Box<dyn Teacher>),
    /// A judge.
    Judge(Box<dyn Judge>),
}

/// What [`export_native_plugin!`](crate::export_native_plugin) and `export_wasm_plugin!`
/// declare about a plugin.
pub trait Exported: 'static {
    /// The plugin's name.
    const NAME: &'static str;
    /// The plugin crate's version.
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;
    /// Its kind.
    const KIND: PluginKind;
    /// The JSON Schema of its config.
    fn config_schema() -> serde_json::Value;
    /// Builds an instance from its config.
    fn build(config: serde_json::Value, ctx: &PluginContext) -> Result<Built, PluginError>;

    /// Builds an instance from its config as JSON text.
    fn build_from_json(config: &str, ctx: &PluginContext) -> Result<Built, PluginError> {
        let value =
            serde_json::from_str(config).map_err(|e| PluginError::InvalidConfig(format!("config is not JSON: {e}")))?;
        Self::build(value, ctx)
    }
}

/// Declares a `__EvolvePlugin` type implementing [`Exported`]; the export macros' common part.
#[doc(hidden)]
#[macro_export]
macro_rules! __declare_exported_plugin {
    (
        kind: $kind:ident,
        name: $name:expr,
        description: $description:expr,
        config: $config:ty,
        build: $build:expr $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __EvolvePlugin;

        impl $crate::exported::Exported for __EvolvePlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const DESCRIPTION: &'static str = $description;
            const KIND: $crate::PluginKind = $crate::PluginKind::$kind;

            fn config_schema() -> $crate::serde_json::Value {
                $crate::config_schema::<$config>()
            }

            fn build(
                value: $crate::serde_json::Value,
                ctx: &$crate::PluginContext,
            ) -> ::std::result::Result<$crate::exported::Built, $crate::PluginError> {
                let config: $config = $crate::decode_config(value)?;
                // Typed, so that a closure returning a bare `Ok(..)` infers its error type.
                let plugin: ::std::result::Result<_, $crate::PluginError> = ($build)(config, ctx);
                Ok($crate::exported::Built::$kind(::std::boxed::Box::new(plugin?)))
            }
        }
    };
}
