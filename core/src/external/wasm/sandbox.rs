//! One wasm plugin instance in its sandbox: a store with a memory limit, a per-call time limit
//! (epoch interruption, not counting time spent in the host's HTTP; WASI waits cut at the
//! limit), WASI with nothing granted unless the experiment grants it, and quarantine after the
//! first fault.

use super::bindings::teacher_plugin::evolve::plugin::{host, types};
use super::bindings::{judge_plugin::JudgePlugin, operator_plugin::OperatorPlugin, teacher_plugin::TeacherPlugin};
use super::convert::plugin_error;
use super::engine::{TICK, engine, first_line};
use super::error::WasmLoadError;
use crate::experiment::PluginSettings;
use crate::external::capabilities;
use evolve_sdk::{PluginError, PluginKind};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// What the store holds for the host.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    label: String,
    allow_hosts: Vec<String>,
    memory_limit: usize,
    /// Bytes of every linear memory of the instance together.
    memory_used: usize,
    /// Elements of every table of the instance together.
    table_elements: usize,
    memory_exceeded: bool,
    timeout: Duration,
    timed_out: bool,
    call_started: Instant,
    host_time: Duration,
    /// The monotonic clock the guest reads (WASI), so that a wait until an instant can be capped.
    clock: GuestClock,
}

impl HostState {
    /// What is left of this call's time limit.
    fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.call_started.elapsed().saturating_sub(self.host_time))
    }

    /// A WASI wait of `wanted`, cut to what is left of the call's time limit. Epoch interruption
    /// cannot stop a guest blocked in a host call, so a sleep longer than the limit ends at the
    /// limit, and the call is then failed as timed out.
    fn wait(&mut self, wanted: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let remaining = self.remaining();
        if wanted > remaining {
            self.timed_out = true;
        }
        let until = tokio::time::Instant::now() + wanted.min(remaining);
        let sleep = self.table.push(Wait(until))?;
        wasmtime_wasi::p2::subscribe(&mut self.table, sleep)
    }
}

/// The guest's monotonic clock: nanoseconds since the instance was made.
#[derive(Clone, Copy)]
struct GuestClock(Instant);

impl wasmtime_wasi::HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }
}

/// A guest's wait (a `pollable`), ready at an instant.
struct Wait(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for Wait {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Table elements one instance may hold, all its tables together.
const TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for HostState {
    // A component may hold several core instances, each with its memories and tables: the
    // limits are on their sum, not on each.
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_sub(current).saturating_add(desired);
        let allowed = total <= self.memory_limit;
        if allowed {
            self.memory_used = total;
        }
        self.memory_exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        let allowed = total <= TABLE_ELEMENTS;
        if allowed {
            self.table_elements = total;
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
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
        // The WIT function's error is the message (see `HostHttpError`).
        reply
            .map(|r| host::HttpResponse { status: r.status, headers: r.headers, body: r.body })
            .map_err(|e| e.to_string())
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

/// A live instance: the store and the component's exports.
pub struct Live {
    /// The store.
    pub store: Store<HostState>,
    /// The component's exports, as the world of its kind.
    pub exports: Exports,
}

/// A component's exports, by the world it was built for.
pub enum Exports {
    /// `teacher-plugin`.
    Teacher(TeacherPlugin),
    /// `judge-plugin`.
    Judge(JudgePlugin),
    /// `operator-plugin`.
    Operator(OperatorPlugin),
}

/// An instance and its quarantine state.
pub struct Sandboxed {
    label: String,
    live: Mutex<Live>,
    fault: OnceLock<String>,
}

impl Sandboxed {
    /// Instantiates `component`, a plugin of `kind`, under `settings` for the instance `label`.
    pub fn new(
        component: &Component,
        kind: PluginKind,
        settings: &PluginSettings,
        label: &str,
    ) -> Result<Sandboxed, PluginError> {
        let engine = engine().map_err(|e| PluginError::Failed(e.to_string()))?;
        let mut wasi = WasiCtx::builder();
        for dir in &settings.read_dirs {
            let guest = dir.to_string_lossy().into_owned();
            wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly).map_err(|e| {
                PluginError::InvalidConfig(format!("cannot grant read access to {}: {e}", dir.display()))
            })?;
        }
        let clock = GuestClock(Instant::now());
        wasi.monotonic_clock(clock);
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            label: label.to_string(),
            allow_hosts: settings.allow_hosts.clone(),
            memory_limit: (settings.memory_mb as usize) << 20,
            memory_used: 0,
            table_elements: 0,
            memory_exceeded: false,
            timeout: Duration::from_millis(settings.call_timeout_ms),
            timed_out: false,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            clock,
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
        let linker = linker()?;
        let exports = match kind {
            PluginKind::Teacher => TeacherPlugin::instantiate(&mut store, component, linker).map(Exports::Teacher),
            PluginKind::Judge => JudgePlugin::instantiate(&mut store, component, linker).map(Exports::Judge),
            PluginKind::Operator => OperatorPlugin::instantiate(&mut store, component, linker).map(Exports::Operator),
            other => return Err(PluginError::Unsupported(format!("a wasm plugin cannot be a {other:?}"))),
        }
        .map_err(|e| PluginError::Failed(format!("cannot instantiate the wasm plugin: {}", fault(&store, &e))))?;
        Ok(Sandboxed { label: label.to_string(), live: Mutex::new(Live { store, exports }), fault: OnceLock::new() })
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
        let outcome = match f(&mut live) {
            // A guest whose WASI wait was cut at the time limit returned early, but still overran.
            Ok(_) if live.store.data().timed_out => Err(wasmtime::Error::msg("time limit exceeded in a WASI wait")),
            other => other,
        };
        match outcome {
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
        let mut linker = Linker::new(engine().map_err(|e| e.to_string())?);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            // Every world imports the same `host`: the teacher world's linking serves them all.
            .and_then(|()| TeacherPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| bounded_waits(&mut linker))
            .map_err(|e| format!("cannot link wasm plugins: {}", first_line(&e)))?;
        Ok(linker)
    });
    linker.as_ref().map_err(|e| PluginError::Failed(e.clone()))
}

/// Checks that the host provides everything `component` (loaded from `path`) imports, before
/// anything runs: a missing import is named as such (with what evolve does provide), not
/// reported as a trap.
pub fn check_imports(component: &Component, path: &Path) -> Result<(), WasmLoadError> {
    let path = path.to_path_buf();
    let linker = linker().map_err(|e| WasmLoadError::Link { path: path.clone(), reason: e.to_string() })?;
    let Err(error) = linker.instantiate_pre(component) else { return Ok(()) };
    let chain = format!("{error:#}");
    let Some(name) = chain.split('`').nth(1).filter(|_| chain.contains("not found in the linker")) else {
        return Err(WasmLoadError::Link { path, reason: first_line(&error) });
    };
    let why = chain.split_once("linker: ").map_or("not provided", |(_, cause)| cause);
    Err(WasmLoadError::Import { path, name: name.to_string(), why: why.to_string() })
}

/// Replaces WASI's clock subscriptions (what a guest's sleep or timed poll waits on) with waits
/// cut at the call's time limit ([`HostState::wait`]).
fn bounded_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap("subscribe-duration", |mut store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
        Ok((store.data_mut().wait(Duration::from_nanos(nanos))?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
        let state = store.data_mut();
        let wanted = Duration::from_nanos(when.saturating_sub(wasmtime_wasi::HostMonotonicClock::now(&state.clock)));
        Ok((state.wait(wanted)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(memory_mb: usize) -> HostState {
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            label: "t".into(),
            allow_hosts: vec![],
            memory_limit: memory_mb << 20,
            memory_used: 0,
            table_elements: 0,
            memory_exceeded: false,
            timeout: Duration::from_millis(300),
            timed_out: false,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            clock: GuestClock(Instant::now()),
        }
    }

    #[test]
    fn the_memory_limit_holds_for_all_memories_together() {
        let mut state = state(64);
        assert!(state.memory_growing(0, 40 << 20, None).unwrap(), "one memory of 40 MiB fits");
        assert!(!state.memory_growing(0, 40 << 20, None).unwrap(), "a second of 40 MiB makes 80 MiB");
        assert!(state.memory_exceeded);
        assert!(state.memory_growing(0, 24 << 20, None).unwrap(), "24 MiB more makes exactly 64 MiB");
        assert!(state.memory_growing(40 << 20, 30 << 20, None).is_ok_and(|grown| grown), "shrinking counts too");
        assert!(!state.table_growing(0, TABLE_ELEMENTS + 1, None).unwrap());
    }

    #[test]
    fn a_wasi_wait_past_the_time_limit_is_cut_and_marks_the_call_timed_out() {
        let mut state = state(64);
        let _short = state.wait(Duration::from_millis(10)).unwrap();
        assert!(!state.timed_out);
        let _long = state.wait(Duration::from_secs(20)).unwrap();
        assert!(state.timed_out);
    }
}
