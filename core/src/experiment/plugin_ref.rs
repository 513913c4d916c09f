//! How an experiment names a plugin: a built-in by name, or an external plugin by path.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A plugin an experiment section uses.
///
/// ```toml
/// plugin = "shapes"                                     # built in (`evolve plugins` lists them)
/// plugin = { native = "plugins/libmy_teacher.so" }      # a native plugin library
/// plugin = { wasm = "plugins/my_operator.wasm" }        # a wasm component
/// ```
///
/// Paths are relative to the experiment file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PluginRef {
    /// A plugin compiled into this build, by name.
    Name(String),
    /// A native plugin: a `cdylib` built with `evolve_sdk::export_native_plugin!`.
    Native {
        /// Path of the library (`.so`, `.dylib` or `.dll`).
        native: PathBuf,
    },
    /// A wasm component built with `evolve_sdk::export_wasm_plugin!` for `wasm32-wasip2`.
    Wasm {
        /// Path of the component (`.wasm`).
        wasm: PathBuf,
    },
}

impl PluginRef {
    /// The path of an external plugin, `None` for a built-in.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PluginRef::Name(_) => None,
            PluginRef::Native { native: p } | PluginRef::Wasm { wasm: p } => Some(p),
        }
    }

    /// The same reference with a relative path resolved against `base` (the experiment's folder).
    pub fn resolved(&self, base: &Path) -> PluginRef {
        let absolute = |p: &Path| std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
        match self {
            PluginRef::Name(_) => self.clone(),
            PluginRef::Native { native } => PluginRef::Native { native: absolute(native) },
            PluginRef::Wasm { wasm } => PluginRef::Wasm { wasm: absolute(wasm) },
        }
    }

    /// A short label: the name of a built-in, the file stem of an external plugin (without a
    /// `lib` prefix), used where a teacher or operator needs a name in the ledger.
    pub fn label(&self) -> String {
        match self {
            PluginRef::Name(name) => name.clone(),
            PluginRef::Native { native: p } | PluginRef::Wasm { wasm: p } => {
                let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                stem.strip_prefix("lib").map(str::to_string).unwrap_or(stem)
            }
        }
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Name(name) => f.write_str(name),
            PluginRef::Native { native } => write!(f, "native plugin {}", native.display()),
            PluginRef::Wasm { wasm } => write!(f, "wasm plugin {}", wasm.display()),
        }
    }
}

impl From<&str> for PluginRef {
    fn from(name: &str) -> Self {
        PluginRef::Name(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_three_forms() {
        #[derive(Deserialize)]
        struct S {
            plugin: PluginRef,
        }
        let name: S = toml::from_str("plugin = \"shapes\"").unwrap();
        assert_eq!(name.plugin, PluginRef::Name("shapes".into()));
        let native: S = toml::from_str("plugin = { native = \"lib/libteach.so\" }").unwrap();
        assert_eq!(native.plugin.label(), "teach");
        let wasm: S = toml::from_str("plugin = { wasm = \"op.wasm\" }").unwrap();
        assert_eq!(wasm.plugin.resolved(Path::new("/x")).path(), Some(Path::new("/x/op.wasm")));
    }
}
