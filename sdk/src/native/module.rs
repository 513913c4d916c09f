#![allow(non_local_definitions)] // `#[sabi_trait]` expands to impls of abi_stable traits inside consts.

//! The root module a native plugin exports and the plugin objects it hands out.
//!
//! The root module is an `abi_stable` prefix type: the loader checks its layout, and the SDK's
//! version (major.minor for 0.x) against the host's, before calling anything in it. Every
//! function in here catches panics on the plugin's side and returns them as errors, because
//! unwinding across `extern "C"` aborts the process.

use super::ffi::{
    FfiAction, FfiContext, FfiError, FfiGenerateRequest, FfiGenerated, FfiHttpRequest, FfiHttpResponse, FfiImageRef,
    FfiInfo, FfiLimits, FfiSample, FfiVerdict,
};
use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings};

/// The capabilities the host lends a native plugin (see [`crate::host`]).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiHost {
    /// Performs an HTTP request, or says why not.
    pub http: extern "C" fn(&FfiHttpRequest<'_>) -> RResult<FfiHttpResponse, RString>,
    /// Writes a log line (level as [`crate::host::LogLevel::as_u8`]).
    pub log: extern "C" fn(u8, RStr<'_>),
}

/// An operator inside a native plugin.
#[sabi_trait]
pub trait FfiOperator: Send + Sync {
    /// [`crate::Operator::decide`].
    fn decide(&self, sample: &FfiSample<'_>) -> RResult<RVec<FfiAction>, FfiError>;
}

/// A teacher inside a native plugin. Calls block; the host makes them off its async runtime.
#[sabi_trait]
pub trait FfiTeacher: Send + Sync {
    /// [`crate::Teacher::limits`].
    fn limits(&self) -> FfiLimits;
    /// [`crate::Teacher::price`] in micro-dollars.
    fn price(&self, request: &FfiGenerateRequest<'_>) -> RResult<u64, FfiError>;
    /// [`crate::Teacher::generate`].
    fn generate(&self, request: &FfiGenerateRequest<'_>) -> RResult<FfiGenerated, FfiError>;
}

/// A judge inside a native plugin. Calls block; the host makes them off its async runtime.
#[sabi_trait]
pub trait FfiJudge: Send + Sync {
    /// [`crate::Judge::limits`].
    fn limits(&self) -> FfiLimits;
    /// [`crate::Judge::compare`].
    fn compare(
        &self,
        prompt: RStr<'_>,
        images: RSlice<'_, FfiImageRef<'_>>,
        seed: u64,
    ) -> RResult<FfiVerdict, FfiError>;
    /// [`crate::Judge::expand`].
    fn expand(&self, prompt: RStr<'_>, n: u64, seed: u64) -> RResult<RVec<RString>, FfiError>;
    /// [`crate::Judge::mutate`].
    fn mutate(&self, recent: RSlice<'_, RString>, seed: u64) -> RResult<RString, FfiError>;
}

/// A boxed [`FfiOperator`].
pub type OperatorBox = FfiOperator_TO<'static, RBox<()>>;
/// A boxed [`FfiTeacher`].
pub type TeacherBox = FfiTeacher_TO<'static, RBox<()>>;
/// A boxed [`FfiJudge`].
pub type JudgeBox = FfiJudge_TO<'static, RBox<()>>;

/// A plugin instance, by kind.
#[repr(u8)]
#[derive(StableAbi)]
pub enum FfiPlugin {
    /// An operator.
    Operator(OperatorBox),
    /// A teacher.
    Teacher(TeacherBox),
    /// A judge.
    Judge(JudgeBox),
}

/// The root module of a native evolve plugin.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's identity and config schema.
    pub info: extern "C" fn() -> FfiInfo,
    /// Lends the host's capabilities; called once, before anything else is built.
    pub connect_host: extern "C" fn(FfiHost),
    /// Builds an instance from its config (JSON text) and context.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(RStr<'_>, FfiContext) -> RResult<FfiPlugin, FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "evolve_plugin";
    const NAME: &'static str = "evolve_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}
