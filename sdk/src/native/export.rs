//! The plugin side of the native boundary: the glue [`export_native_plugin!`](crate::export_native_plugin)
//! expands to, which turns the SDK's traits into the FFI traits the host calls.

use super::ffi::{
    FfiAction, FfiContext, FfiError, FfiGenerateRequest, FfiGenerated, FfiHttpRequest, FfiImageRef, FfiInfo, FfiLimits,
    FfiSample, FfiVerdict,
};
use super::module::{
    FfiHost, FfiJudge, FfiJudge_TO, FfiOperator, FfiOperator_TO, FfiPlugin, FfiTeacher, FfiTeacher_TO, PluginModule,
    PluginModuleRef,
};
use crate::exported::{Built, Exported};
use crate::host::{HostCalls, HttpRequest, HttpResponse, LogLevel};
use crate::{CompareRequest, ExpandRequest, Judge, MutateRequest, Operator, PluginError, Teacher, block_on};
use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The header the export macro places under `abi_stable`'s root-module symbol.
pub const fn lib_header<P: Exported>() -> LibHeader {
    // SAFETY: `load::<P>` returns the root module of type `PluginModuleRef` that the header is
    // declared for, and the layout is checked by the loader (`CheckTypeLayout::Yes`).
    unsafe { LibHeader::from_constructor::<PluginModuleRef>(load::<P>, CheckTypeLayout::Yes) }
}

extern "C" fn load<P: Exported>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<P>)
}

fn root_module<P: Exported>() -> PluginModuleRef {
    PluginModule { info: info::<P>, connect_host, create: create::<P> }.leak_into_prefix()
}

extern "C" fn info<P: Exported>() -> FfiInfo {
    let schema = catch_unwind(P::config_schema).unwrap_or_else(|_| serde_json::json!({}));
    FfiInfo {
        name: P::NAME.into(),
        kind: P::KIND.into(),
        version: P::VERSION.into(),
        description: P::DESCRIPTION.into(),
        config_schema: schema.to_string().into(),
    }
}

extern "C" fn connect_host(host: FfiHost) {
    if crate::host::install(Box::new(NativeHost(host))) {
        // The plugin's panics are caught and returned as errors; say what happened in the
        // host's log rather than on a stderr the user may not watch.
        std::panic::set_hook(Box::new(|info| crate::host::log(LogLevel::Error, &format!("plugin panicked: {info}"))));
    }
}

extern "C" fn create<P: Exported>(config: RStr<'_>, ctx: FfiContext) -> RResult<FfiPlugin, FfiError> {
    guard(|| {
        Ok(match P::build_from_json(config.as_str(), &ctx.into())? {
            Built::Operator(op) => FfiPlugin::Operator(FfiOperator_TO::from_value(OperatorShim(op), TD_Opaque)),
            Built::Teacher(t) => FfiPlugin::Teacher(FfiTeacher_TO::from_value(TeacherShim(t), TD_Opaque)),
            Built::Judge(j) => FfiPlugin::Judge(FfiJudge_TO::from_value(JudgeShim(j), TD_Opaque)),
        })
    })
}

/// Runs `f`, turning a panic into an error so that it never unwinds into the host.
fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(error.into()),
        Err(payload) => RResult::RErr(FfiError::panicked(panic_message(payload.as_ref()))),
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

struct NativeHost(FfiHost);

impl HostCalls for NativeHost {
    fn http(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        match (self.0.http)(&FfiHttpRequest::new(request)) {
            RResult::ROk(r) => Ok(r.into()),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        (self.0.log)(level.as_u8(), message.into());
    }
}

struct OperatorShim(Box<dyn Operator>);

impl FfiOperator for OperatorShim {
    fn decide(&self, sample: &FfiSample<'_>) -> RResult<RVec<FfiAction>, FfiError> {
        guard(|| Ok(self.0.decide(&sample.to_sample())?.iter().map(FfiAction::from).collect()))
    }
}

struct TeacherShim(Box<dyn Teacher>);

impl FfiTeacher for TeacherShim {
    fn limits(&self) -> FfiLimits {
        catch_unwind(AssertUnwindSafe(|| self.0.limits())).unwrap_or_default().into()
    }

    fn price(&self, request: &FfiGenerateRequest<'_>) -> RResult<u64, FfiError> {
        guard(|| Ok(self.0.price(&request.to_request()).micro_usd))
    }

    fn generate(&self, request: &FfiGenerateRequest<'_>) -> RResult<FfiGenerated, FfiError> {
        guard(|| Ok(block_on(self.0.generate(&request.to_request()))?.into()))
    }
}

struct JudgeShim(Box<dyn Judge>);

impl FfiJudge for JudgeShim {
    fn limits(&self) -> FfiLimits {
        catch_unwind(AssertUnwindSafe(|| self.0.limits())).unwrap_or_default().into()
    }

    fn compare(
        &self,
        prompt: RStr<'_>,
        images: RSlice<'_, FfiImageRef<'_>>,
        seed: u64,
    ) -> RResult<FfiVerdict, FfiError> {
        guard(|| {
            let images = images.iter().map(FfiImageRef::to_image).collect::<Result<Vec<_>, _>>()?;
            let request = CompareRequest { prompt: prompt.to_string(), images, seed };
            Ok(block_on(self.0.compare(&request))?.into())
        })
    }

    fn expand(&self, prompt: RStr<'_>, n: u64, seed: u64) -> RResult<RVec<RString>, FfiError> {
        guard(|| {
            let request = ExpandRequest { prompt: prompt.to_string(), n: n as usize, seed, after: None };
            Ok(block_on(self.0.expand(&request))?.into_iter().map(RString::from).collect())
        })
    }

    fn mutate(&self, recent: RSlice<'_, RString>, seed: u64) -> RResult<RString, FfiError> {
        guard(|| {
            let request = MutateRequest { recent: recent.iter().map(RString::to_string).collect(), seed, after: None };
            Ok(block_on(self.0.mutate(&request))?.into())
        })
    }
}
