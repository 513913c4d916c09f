//! Why a wasm component was refused, each case naming the file and what would be valid.

use super::engine::WIT_PACKAGE;
use evolve_sdk::PluginError;
use std::path::PathBuf;

/// Why the component at `path` cannot be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum WasmLoadError {
    /// The shared engine could not start (the same for every component).
    #[error("cannot start the wasm engine: {reason}")]
    Engine {
        /// wasmtime's or the OS's words.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not wasm at all.
    #[error("{} is not a wasm file (it does not start with the wasm magic bytes)", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// Wasm, but not a component wasmtime accepts.
    #[error("{} is not a valid wasm component: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first line of wasmtime's report.
        reason: String,
    },
    /// Built against another version of the WIT package.
    #[error(
        "{} was built against the WIT world {WIT_PACKAGE}@{theirs}, but this evolve speaks \
         {WIT_PACKAGE}@{ours}: rebuild the plugin with a matching evolve-sdk (or sdk/wit)",
        path.display()
    )]
    WitVersion {
        /// The file.
        path: PathBuf,
        /// The version it names.
        theirs: String,
        /// The version this host speaks.
        ours: String,
    },
    /// A component, but not of evolve's worlds.
    #[error(
        "{} is a wasm component but not an evolve plugin: it imports and exports nothing of {WIT_PACKAGE} \
         (build it with `evolve_sdk::export_wasm_plugin!` for wasm32-wasip2, or against a world of \
         sdk/wit with componentize-py or componentize-js)",
        path.display()
    )]
    NotEvolve {
        /// The file.
        path: PathBuf,
    },
    /// It exports no plugin interface, or more than one.
    #[error(
        "{} exports {exported} of {WIT_PACKAGE}; a plugin exports exactly one of teacher, judge or operator \
         (build it for the world of its kind: teacher-plugin, judge-plugin or operator-plugin)",
        path.display()
    )]
    Kind {
        /// The file.
        path: PathBuf,
        /// What it exports of the package, in words.
        exported: String,
    },
    /// It imports something the host does not give plugins.
    #[error(
        "{}: it imports `{name}`, which evolve does not give plugins ({why}); a plugin may import WASI 0.2 \
         (no sockets, no wasi:http) and evolve:plugin/host, whose `http` function is its way to the \
         network (build componentize-js plugins with `--disable http fetch-event`)",
        path.display()
    )]
    Import {
        /// The file.
        path: PathBuf,
        /// The import's name.
        name: String,
        /// wasmtime's reason.
        why: String,
    },
    /// Linking failed for another reason.
    #[error("{}: cannot link: {reason}", path.display())]
    Link {
        /// The file.
        path: PathBuf,
        /// wasmtime's words.
        reason: String,
    },
    /// The component trapped or failed while saying what it is.
    #[error("{}: {source}", path.display())]
    Probe {
        /// The file.
        path: PathBuf,
        /// What the call returned.
        source: PluginError,
    },
    /// Its config schema is not JSON.
    #[error("{} ships a config schema that is not JSON: {source}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}
