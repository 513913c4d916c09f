//! External plugins: native libraries and wasm components that experiments load by path,
//! without recompiling evolve.
//!
//! [`load`] opens a plugin once per process (a native library can never be unloaded, and a
//! compiled component is worth keeping) and says what it is; [`ExternalPlugin`] then builds
//! instances of it like a built-in's constructor would. Wasm instances run under the
//! experiment's [`PluginSettings`]; both kinds reach the network only through the host.

pub mod capabilities;
pub mod native;
pub mod wasm;

use crate::experiment::{PluginRef, PluginSettings};
use evolve_sdk::{Judge, Operator, PluginContext, PluginError, PluginInfo, Teacher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A loaded external plugin.
pub struct ExternalPlugin {
    /// Its identity.
    pub info: PluginInfo,
    /// The JSON Schema of its config, as it ships it.
    pub config_schema: serde_json::Value,
    /// Where it was loaded from.
    pub path: PathBuf,
    code: Code,
}

enum Code {
    Native(native::NativeLibrary),
    Wasm(wasm::WasmComponent),
}

/// Why an external plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A built-in's name was given where a plugin file was needed.
    #[error("`{0}` is a built-in, not a plugin file")]
    BuiltIn(PluginRef),
    /// The file is not there.
    #[error("{0}: no such file")]
    Missing(PluginRef),
    /// A plugin folder could not be listed.
    #[error("cannot list {}: {source}", dir.display())]
    List {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A native library was refused.
    #[error(transparent)]
    Native(#[from] native::NativeLoadError),
    /// A wasm component was refused.
    #[error(transparent)]
    Wasm(#[from] wasm::WasmLoadError),
}

/// Loads the plugin `plugin` refers to (an absolute path), or returns the copy loaded before.
/// Built-in names are not external: asking for one is an error.
pub fn load(plugin: &PluginRef) -> Result<Arc<ExternalPlugin>, LoadError> {
    static LOADED: Mutex<Option<HashMap<PluginRef, Arc<ExternalPlugin>>>> = Mutex::new(None);
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(plugin) = loaded.get_or_insert_default().get(plugin) {
        return Ok(Arc::clone(plugin));
    }
    let path = plugin.path().ok_or_else(|| LoadError::BuiltIn(plugin.clone()))?;
    if !path.is_file() {
        return Err(LoadError::Missing(plugin.clone()));
    }
    let (code, info, config_schema) = match plugin {
        PluginRef::Native { .. } => native::load(path).map(|(lib, info, schema)| (Code::Native(lib), info, schema))?,
        PluginRef::Wasm { .. } => wasm::load(path).map(|(c, info, schema)| (Code::Wasm(c), info, schema))?,
        PluginRef::Name(_) => return Err(LoadError::BuiltIn(plugin.clone())),
    };
    let external = Arc::new(ExternalPlugin { info, config_schema, path: path.to_path_buf(), code });
    loaded.get_or_insert_default().insert(plugin.clone(), Arc::clone(&external));
    Ok(external)
}

/// A plugin file found in a folder, and whether it loaded.
pub type Scanned = (PluginRef, Result<Arc<ExternalPlugin>, LoadError>);

/// Every plugin file in `dir` (`.wasm` components and native libraries), loaded or not.
pub fn scan(dir: &Path) -> Result<Vec<Scanned>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::List { dir: dir.to_path_buf(), source })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let native_ext = std::env::consts::DLL_EXTENSION;
    Ok(paths
        .into_iter()
        .filter_map(|path| {
            let path = std::path::absolute(&path).unwrap_or(path);
            let plugin = match path.extension().and_then(|e| e.to_str()) {
                Some("wasm") => PluginRef::Wasm { wasm: path },
                Some(ext) if ext == native_ext => PluginRef::Native { native: path },
                _ => return None,
            };
            let loaded = load(&plugin);
            Some((plugin, loaded))
        })
        .collect())
}

/// Runs a blocking plugin call off the async runtime's workers (on a blocking thread), or
/// in place when there is no runtime.
pub(crate) async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, PluginError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(f).await.map_err(|e| PluginError::Failed(format!("plugin call: {e}"))),
        Err(_) => Ok(f()),
    }
}

impl ExternalPlugin {
    /// Builds an operator instance.
    pub fn operator(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Operator>, PluginError> {
        match &self.code {
            Code::Native(lib) => lib.operator(config, ctx),
            Code::Wasm(component) => component.operator(config, ctx, settings),
        }
    }

    /// Builds a teacher instance.
    pub fn teacher(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Teacher>, PluginError> {
        match &self.code {
            Code::Native(lib) => lib.teacher(config, ctx),
            Code::Wasm(component) => component.teacher(config, ctx, settings),
        }
    }

    /// Builds a judge instance.
    pub fn judge(
        &self,
        config: &serde_json::Value,
        ctx: &PluginContext,
        settings: &PluginSettings,
    ) -> Result<Box<dyn Judge>, PluginError> {
        match &self.code {
            Code::Native(lib) => lib.judge(config, ctx),
            Code::Wasm(component) => component.judge(config, ctx, settings),
        }
    }
}
