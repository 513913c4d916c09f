//! Wasm plugins: guest bindings of the WIT worlds in `sdk/wit/` (one per plugin kind) and the
//! glue [`export_wasm_plugin!`](crate::export_wasm_plugin) expands to.
//!
//! A plugin crate for `wasm32-wasip2` implements the usual SDK trait and exports it with the
//! same syntax as [`register_plugin!`](crate::register_plugin):
//!
//! ```ignore
//! // Cargo.toml: [lib] crate-type = ["cdylib"]; build with --target wasm32-wasip2.
//! evolve_sdk::export_wasm_plugin! {
//!     kind: Operator,
//!     name: "banlist",
//!     description: "Deactivates samples whose prompt contains a banned word.",
//!     config: BanlistConfig,
//!     build: |config: BanlistConfig, _ctx: &PluginContext| Ok(Banlist { words: config.words }),
//! }
//! ```
//!
//! The `kind` picks the world (`teacher-plugin`, `judge-plugin`, `operator-plugin`). The host
//! instantiates the component once per plugin instance and calls `init` once, so the built
//! plugin lives in a global of the component.
//!
//! The component runs in the host's sandbox: no files, no sockets, bounded memory and time per
//! call; [`crate::host::http`] reaches only the hosts the experiment allows.

mod convert;
mod judge;
mod operator;
mod teacher;

use crate::PluginError;
use crate::exported::{Built, Exported};
use crate::host::{HttpRequest, HttpResponse, LogLevel};
use std::marker::PhantomData;
use std::sync::OnceLock;

/// The generated guest bindings, one module per world. `types` and `host` are generated once
/// (in `teacher_plugin`) and shared, so one conversion serves every world.
#[doc(hidden)]
pub mod bindings {
    /// The teacher world, and the shared interfaces.
    pub mod teacher_plugin {
        wit_bindgen::generate!({
            path: "wit",
            world: "teacher-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_teacher_plugin",
            default_bindings_module: "evolve_sdk::wasm::bindings::teacher_plugin",
        });
    }

    /// The judge world.
    pub mod judge_plugin {
        wit_bindgen::generate!({
            path: "wit",
            world: "judge-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_judge_plugin",
            default_bindings_module: "evolve_sdk::wasm::bindings::judge_plugin",
            with: {
                "evolve:plugin/types@0.2.0": crate::wasm::bindings::teacher_plugin::evolve::plugin::types,
                "evolve:plugin/host@0.2.0": crate::wasm::bindings::teacher_plugin::evolve::plugin::host,
            },
        });
    }

    /// The operator world.
    pub mod operator_plugin {
        wit_bindgen::generate!({
            path: "wit",
            world: "operator-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_operator_plugin",
            default_bindings_module: "evolve_sdk::wasm::bindings::operator_plugin",
            with: {
                "evolve:plugin/types@0.2.0": crate::wasm::bindings::teacher_plugin::evolve::plugin::types,
                "evolve:plugin/host@0.2.0": crate::wasm::bindings::teacher_plugin::evolve::plugin::host,
            },
        });
    }
}

use bindings::teacher_plugin::evolve::plugin::{host, types};

/// The exports of a component whose plugin is `P`.
#[doc(hidden)]
pub struct Component<P>(PhantomData<P>);

/// The plugin `init` built: one per component instance.
static INSTALLED: OnceLock<Built> = OnceLock::new();

/// Builds the plugin from its config and keeps it for the instance's later calls.
fn init<P: Exported>(config: &str, ctx: types::Context) -> Result<(), types::PluginError> {
    let built = P::build_from_json(config, &convert::context(ctx)).map_err(convert::to_wit_error)?;
    INSTALLED.set(built).map_err(|_| types::PluginError::Failed("init was called twice".into()))
}

/// The plugin `init` built, or the error of a call before it.
fn installed() -> Result<&'static Built, types::PluginError> {
    INSTALLED.get().ok_or_else(|| types::PluginError::Failed("called before init".into()))
}

fn info<P: Exported>() -> types::PluginInfo {
    types::PluginInfo {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        description: P::DESCRIPTION.into(),
        config_schema: P::config_schema().to_string(),
    }
}

/// [`crate::host::http`] inside a component: the WIT import.
pub(crate) fn host_http(request: &HttpRequest) -> Result<HttpResponse, PluginError> {
    let request = host::HttpRequest {
        method: request.method.clone(),
        url: request.url.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    };
    match host::http(&request) {
        Ok(r) => Ok(HttpResponse { status: r.status, headers: r.headers, body: r.body }),
        Err(message) => Err(crate::host::host_error(message)),
    }
}

/// [`crate::host::log`] inside a component: the WIT import.
pub(crate) fn host_log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Error => host::LogLevel::Error,
        LogLevel::Warn => host::LogLevel::Warn,
        LogLevel::Info => host::LogLevel::Info,
        LogLevel::Debug => host::LogLevel::Debug,
    };
    host::log(level, message);
}

/// Exports a plugin as a wasm component of its kind's world (see the [module docs](self)).
#[macro_export]
macro_rules! export_wasm_plugin {
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
        type __EvolveComponent = $crate::wasm::Component<__EvolvePlugin>;

        $crate::__export_wasm_world!($kind);
    };
}

/// The export of the world of a plugin kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_wasm_world {
    (Teacher) => {
        $crate::wasm::bindings::teacher_plugin::__export_teacher_plugin!(
            __EvolveComponent with_types_in $crate::wasm::bindings::teacher_plugin
        );
    };
    (Judge) => {
        $crate::wasm::bindings::judge_plugin::__export_judge_plugin!(
            __EvolveComponent with_types_in $crate::wasm::bindings::judge_plugin
        );
    };
    (Operator) => {
        $crate::wasm::bindings::operator_plugin::__export_operator_plugin!(
            __EvolveComponent with_types_in $crate::wasm::bindings::operator_plugin
        );
    };
}
