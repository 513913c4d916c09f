//! One wasm plugin instance in its sandbox: a store with a memory limit, a per-call time limit
//! (epoch interruption, not counting time spent in host calls), WASI with nothing granted
//! unless the experiment grants it, and quarantine after the first fault.

use super::bindings::{self, evolve::plugin::host, evolve::plugin::types};
use super::engine::{TICK, engine, first_line};
use crate::experiment::PluginSettings;
use crate::external::capabilities;
use evolve_sdk::PluginError;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// What the store holds for the host.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    label: String,
    allow_hosts: Vec<String>,
    memory_limit: usize,
    memory_exceeded: bool,
    timeout: Duration,
    timed_out: bool,
    call_started: Instant,
    host_time: Duration,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        self.memory_exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn http(&mut self, request: host::HttpRequest) -> Result<host::HttpResponse, String> {
        let started = Instant::now();
        let request = evolve_sdk::host::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        let reply = capabilities::http(&request, &self.allow_hosts);
        self.host_time += started.elapsed();
        if let Err(message) = &reply {
            tracing::warn!(plugin = %self.label, url = %request.url, "{message}");
        }
        reply.map(|r| host::HttpResponse { status: r.status, headers: r.headers, body: r.body })
    }

    fn log(&mut self, level: host::LogLevel, message: String) {
        let level = match level {
            host::LogLevel::Error => evolve_sdk::host::LogLevel::Error,
            host::LogLevel::Warn => evolve_sdk::host::LogLevel::Warn,
            host::LogLevel::Info => evolve_sdk::host::LogLevel::Info,
            host::LogLevel::Debug => evolve_sdk::host::LogLevel::Debug,
        };
        capabilities::log(&self.label, level, &message);
    }
}

/// A live instance: the store, the component's exports, and the plugin object inside it.
pub struct Live {
    /// The store.
    pub store: Store<HostState>,
    /// The component's exports.
    pub plugin: bindings::Plugin,
    /// The plugin object (`instance` resource) once built.
    pub resource: Option<ResourceAny>,
}

/// An instance and its quarantine state.
pub struct Sandboxed {
    label: String,
    live: Mutex<Live>,
    fault: OnceLock<String>,
}

impl Sandboxed {
    /// Instantiates `component` under `settings` for the instance `label`.
    pub fn new(component: &Component, settings: &PluginSettings, label: &str) -> Result<Sandboxed, PluginError> {
        let engine = engine().map_err(PluginError::Failed)?;
        let mut wasi = WasiCtx::builder();
        for dir in &settings.read_dirs {
            let guest = dir.to_string_lossy().into_owned();
            wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly).map_err(|e| {
                PluginError::InvalidConfig(format!("cannot grant read access to {}: {e}", dir.display()))
            })?;
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            label: label.to_string(),
            allow_hosts: settings.allow_hosts.clone(),
            memory_limit: (settings.memory_mb as usize) << 20,
            memory_exceeded: false,
            timeout: Duration::from_millis(settings.call_timeout_ms),
            timed_out: false,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.call_started.elapsed().saturating_sub(state.host_time) > state.timeout {
                state.timed_out = true;
                return Err(wasmtime::Error::msg("time limit exceeded"));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        begin_call(&mut store);
        let plugin = bindings::Plugin::instantiate(&mut store, component, linker()?)
            .map_err(|e| PluginError::Failed(format!("cannot instantiate the wasm plugin: {}", fault(&store, &e))))?;
        Ok(Sandboxed {
            label: label.to_string(),
            live: Mutex::new(Live { store, plugin, resource: None }),
            fault: OnceLock::new(),
        })
    }

    /// Runs one call into the component. A trap, time-out or memory excess quarantines the
    /// instance: this and every later call fail with [`PluginError::Quarantined`].
    pub fn call<R>(
        &self,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<Result<R, types::PluginError>>,
    ) -> Result<R, PluginError> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked under the lock: a call that waited on a faulting one must not enter the
        // (now poisoned) instance.
        if let Some(reason) = self.fault.get() {
            return Err(PluginError::Quarantined(reason.clone()));
        }
        begin_call(&mut live.store);
        match f(&mut live) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(plugin_error(error)),
            Err(trap) => {
                let reason = format!("wasm plugin `{}` {}", self.label, fault(&live.store, &trap));
                tracing::error!(plugin = %self.label, "{reason}; it is quarantined for the rest of the run");
                let _ = self.fault.set(reason.clone());
                Err(PluginError::Quarantined(reason))
            }
        }
    }
}

/// The host's imports (WASI and the `host` interface), wired once for every instance.
fn linker() -> Result<&'static Linker<HostState>, PluginError> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    let linker = LINKER.get_or_init(|| {
        let mut linker = Linker::new(engine()?);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| format!("cannot link wasm plugins: {}", first_line(&e)))?;
        Ok(linker)
    });
    linker.as_ref().map_err(|e| PluginError::Failed(e.clone()))
}

fn begin_call(store: &mut Store<HostState>) {
    let state = store.data_mut();
    state.call_started = Instant::now();
    state.host_time = Duration::ZERO;
    state.timed_out = false;
    state.memory_exceeded = false;
    store.set_epoch_deadline(1);
}

/// What a trap means, in words.
fn fault(store: &Store<HostState>, trap: &wasmtime::Error) -> String {
    let state = store.data();
    if state.timed_out {
        let ms = state.timeout.as_millis().max(TICK.as_millis());
        format!("exceeded its time limit of {ms} ms per call ([plugins] call_timeout_ms)")
    } else if state.memory_exceeded {
        format!("exceeded its memory limit of {} MiB ([plugins] memory_mb)", state.memory_limit >> 20)
    } else {
        format!("trapped: {}", first_line(trap))
    }
}

/// The SDK's error for the WIT one.
pub fn plugin_error(error: types::PluginError) -> PluginError {
    match error {
        types::PluginError::InvalidConfig(m) => PluginError::InvalidConfig(m),
        types::PluginError::InvalidInput(m) => PluginError::InvalidInput(m),
        types::PluginError::Transient(m) => PluginError::transient(m),
        types::PluginError::Failed(m) => PluginError::Failed(m),
        types::PluginError::Unsupported(m) => PluginError::Unsupported(m),
    }
}
