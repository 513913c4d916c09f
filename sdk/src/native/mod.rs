//! Native plugins: a `cdylib` that exports an `abi_stable` root module, loaded by the host at
//! run time without recompiling it.
//!
//! A plugin crate implements the usual SDK trait and exports it with
//! [`export_native_plugin!`](crate::export_native_plugin), whose syntax is that of
//! [`register_plugin!`](crate::register_plugin):
//!
//! ```ignore
//! // Cargo.toml: [lib] crate-type = ["cdylib"]; evolve-sdk with feature "native".
//! evolve_sdk::export_native_plugin! {
//!     kind: Operator,
//!     name: "banlist",
//!     description: "Deactivates samples whose prompt contains a banned word.",
//!     config: BanlistConfig,
//!     build: |config: BanlistConfig, _ctx: &PluginContext| Ok(Banlist { words: config.words }),
//! }
//! ```
//!
//! The host checks the root module's layout and the SDK version the plugin was built against
//! at load time, lends the plugin HTTP and logging through [`crate::host`], and gets every panic
//! back as an error. A native plugin runs in the host's process with the host's rights: load
//! only plugins you trust, or build them as wasm components instead.

mod export;
pub mod ffi;
pub mod module;

pub use export::lib_header;
pub use module::{FfiHost, FfiPlugin, JudgeBox, OperatorBox, PluginModule, PluginModuleRef, TeacherBox};

#[doc(hidden)]
pub use abi_stable;

/// The symbol `abi_stable` looks a root module up by (its `ROOT_MODULE_LOADER_NAME`); spelled
/// out because the export macro needs it as an identifier (a test checks it against
/// `abi_stable`'s).
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports a native plugin from a `cdylib` crate (see the [module docs](self)).
#[macro_export]
macro_rules! export_native_plugin {
    (
        kind: $kind:ident,
        name: $name:expr,
        description: $description:expr,
        config: $config:ty,
        build: $build:expr $(,)?
    ) => {
        $crate::__declare_exported_plugin! {
            kind: $kind, name: $name, description: $description, config: $config, build: $build,
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::native::abi_stable::library::LibHeader =
            $crate::native::lib_header::<__EvolvePlugin>();
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
