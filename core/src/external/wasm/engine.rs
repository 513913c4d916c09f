//! The one wasmtime engine every wasm plugin shares, its epoch clock, and the on-disk cache of
//! compiled components.

use super::error::WasmLoadError;
use evolve_sdk::PluginKind;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances; the finest time limit a call can have.
pub const TICK: Duration = Duration::from_millis(5);

/// Components at least this large are announced when compiled: an interpreter inside (Python
/// 18 MB, JavaScript 12 MB) takes seconds to tens of seconds; a Rust one (under 5 MB) under one.
const ANNOUNCED_COMPILE_BYTES: usize = 8 << 20;

/// The WIT package this host speaks (see `sdk/wit/`).
pub const WIT_PACKAGE: &str = "evolve:plugin";

/// The shared engine. The first use starts the thread that advances its epoch.
pub fn engine() -> Result<&'static Engine, WasmLoadError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true).epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            let ticking = engine.clone();
            std::thread::Builder::new()
                .name("evolve-wasm-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        ticking.increment_epoch();
                    }
                })
                .map_err(|e| format!("its epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|reason| WasmLoadError::Engine { reason: reason.clone() })
}

/// Where compiled components are kept: `$EVOLVE_CACHE_DIR`, else the user's cache folder.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EVOLVE_CACHE_DIR") {
        return PathBuf::from(dir).join("wasm");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("evolve").join("wasm")
}

/// Compiles the component at `path`, or reads it from the cache when this engine compiled the
/// same bytes before. The cache key covers the bytes and the engine's compatibility hash
/// (wasmtime version, target, settings), so a stale entry is never used.
pub fn compile(engine: &Engine, path: &Path) -> Result<Component, WasmLoadError> {
    let file = path.display();
    let bytes = std::fs::read(path).map_err(|source| WasmLoadError::Read { path: path.to_path_buf(), source })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(WasmLoadError::NotWasm { path: path.to_path_buf() });
    }
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut key = blake3::Hasher::new();
    key.update(&bytes);
    key.update(&compat.finish().to_le_bytes());
    let cached = cache_dir().join(format!("{}.cwasm", key.finalize().to_hex()));
    if cached.is_file() {
        // SAFETY: the cache holds only what `serialize` below wrote for this engine's
        // compatibility hash, in a folder of the user's own.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &cached) } {
            return Ok(component);
        }
    }
    // A large component (a Python or JavaScript interpreter inside) takes tens of seconds to
    // compile: say so, rather than seem to hang.
    let announce = bytes.len() >= ANNOUNCED_COMPILE_BYTES;
    if announce {
        eprintln!(
            "compiling {file} ({:.1} MB) for this machine, once: later loads read it from {}",
            bytes.len() as f64 / 1e6,
            cache_dir().display()
        );
    }
    let started = std::time::Instant::now();
    let component = Component::from_binary(engine, &bytes)
        .map_err(|e| WasmLoadError::Invalid { path: path.to_path_buf(), reason: first_line(&e) })?;
    if announce {
        eprintln!("compiled {file} in {:.1} s", started.elapsed().as_secs_f64());
    }
    if let Ok(serialized) = component.serialize() {
        // A cache that cannot be written only costs the next run a compile.
        let _ = write_atomically(&cached, &serialized);
    }
    Ok(component)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Checks that `component` was built against this host's WIT package version: every
/// `evolve:plugin/...` name it imports or exports must carry our version.
pub fn check_wit_version(engine: &Engine, component: &Component, path: &Path) -> Result<(), WasmLoadError> {
    let ours = wit_version();
    let ty = component.component_type();
    let names: Vec<String> =
        ty.imports(engine).map(|(n, _)| n.to_string()).chain(ty.exports(engine).map(|(n, _)| n.to_string())).collect();
    let mut speaks_evolve = false;
    for name in &names {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else { continue };
        speaks_evolve = true;
        let theirs = rest.split_once('@').map_or("(unversioned)", |(_, v)| v);
        if theirs != ours {
            return Err(WasmLoadError::WitVersion {
                path: path.to_path_buf(),
                theirs: theirs.to_string(),
                ours: ours.to_string(),
            });
        }
    }
    if !speaks_evolve {
        return Err(WasmLoadError::NotEvolve { path: path.to_path_buf() });
    }
    Ok(())
}

/// The plugin kind whose world `component` was built for, told by the interface it exports.
pub fn exported_kind(engine: &Engine, component: &Component, path: &Path) -> Result<PluginKind, WasmLoadError> {
    let prefix = format!("{WIT_PACKAGE}/");
    let exported: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter_map(|(name, _)| name.strip_prefix(&prefix).map(|rest| rest.split('@').next().unwrap_or("").to_string()))
        .collect();
    let kinds: Vec<PluginKind> = exported
        .iter()
        .filter_map(|name| match name.as_str() {
            "teacher" => Some(PluginKind::Teacher),
            "judge" => Some(PluginKind::Judge),
            "operator" => Some(PluginKind::Operator),
            _ => None,
        })
        .collect();
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        _ => Err(WasmLoadError::Kind {
            path: path.to_path_buf(),
            exported: if exported.is_empty() { "nothing".to_string() } else { exported.join(", ") },
        }),
    }
}

/// The version in the WIT package's `package` line (`sdk/wit/worlds.wit`).
pub fn wit_version() -> &'static str {
    const WIT: &str = include_str!("../../../../sdk/wit/worlds.wit");
    WIT.lines()
        .find_map(|l| l.trim().strip_prefix("package evolve:plugin@"))
        .map(|v| v.trim_end_matches(';'))
        .unwrap_or("0.0.0")
}

/// The first line of an error chain, without wasmtime's backtrace.
pub fn first_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_wit_version() {
        assert_eq!(super::wit_version(), "0.2.0");
    }
}
