//! Loads native plugin libraries and wraps their objects in the SDK's traits.
//!
//! `abi_stable` checks the root module's layout and the SDK version the library was built
//! against; this module turns its errors into messages that name the file and both versions.
//! Libraries are never unloaded (a plugin's statics and threads may outlive any handle).

use super::{capabilities, off_runtime};
use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::{RResult, RStr, RString};
use evolve_sdk::host::HostCalls;
use evolve_sdk::native::ffi::{
    FfiContext, FfiError, FfiGenerateRequest, FfiHttpRequest, FfiHttpResponse, FfiImageRef, SampleParts,
};
use evolve_sdk::native::{FfiHost, FfiPlugin, JudgeBox, OperatorBox, PluginModuleRef, TeacherBox};
use evolve_sdk::{
    Action, CompareRequest, Cost, EvaluatedSample, ExpandRequest, GenerateRequest, GeneratedImage, Judge, Limits,
    MutateRequest, Operator, PluginContext, PluginError, PluginInfo, Teacher, Verdict,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded native plugin library.
pub struct NativeLibrary {
    module: PluginModuleRef,
}

/// Why a native library was refused, each case naming the file.
#[derive(Debug, thiserror::Error)]
pub enum NativeLoadError {
    /// The dynamic loader could not open it.
    #[error("cannot open {} as a shared library: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's words.
        reason: String,
    },
    /// A shared library, but without evolve's root module.
    #[error(
        "{} is not an evolve native plugin: it exports no evolve root module \
         (build it with `evolve_sdk::export_native_plugin!` as a cdylib)",
        path.display()
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Built against another evolve-sdk version.
    #[error(
        "{} was built against evolve-sdk {theirs}, but this evolve loads plugins built against \
         evolve-sdk {ours}: rebuild the plugin with a matching evolve-sdk",
        path.display()
    )]
    SdkVersion {
        /// The file.
        path: PathBuf,
        /// The version it was built against.
        theirs: String,
        /// The version this host loads.
        ours: String,
    },
    /// Its root module's layout differs from this SDK's.
    #[error(
        "{} has an incompatible plugin ABI (expected evolve-sdk {}'s root module layout):\n  {details}",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    Abi {
        /// The file.
        path: PathBuf,
        /// The first lines of abi_stable's report.
        details: String,
    },
    /// Built with an incompatible abi_stable.
    #[error("{} was built with an incompatible abi_stable ({header}); rebuild it against evolve-sdk", path.display())]
    AbiHeader {
        /// The file.
        path: PathBuf,
        /// The header it carries.
        header: String,
    },
    /// Anything else abi_stable refused.
    #[error("cannot load {}: {reason}", path.display())]
    Other {
        /// The file.
        path: PathBuf,
        /// abi_stable's words.
        reason: String,
    },
    /// It declares a kind only built-ins can be.
    #[error(
        "{} declares a plugin kind that only built-in plugins can be (a base model or an evaluator)",
        path.display()
    )]
    BuiltInKind {
        /// The file.
        path: PathBuf,
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

/// Loads the library at `path`, checks it, and connects it to the host.
pub fn load(path: &Path) -> Result<(NativeLibrary, PluginInfo, serde_json::Value), NativeLoadError> {
    let header = lib_header_from_path(path).map_err(|e| refused(path, e))?;
    let module = header.init_root_module::<PluginModuleRef>().map_err(|e| refused(path, e))?;
    (module.connect_host())(FfiHost { http: host_http, log: host_log });
    let info = (module.info())();
    let kind = info.kind.plugin_kind().ok_or_else(|| NativeLoadError::BuiltInKind { path: path.to_path_buf() })?;
    let schema = serde_json::from_str(info.config_schema.as_str())
        .map_err(|source| NativeLoadError::Schema { path: path.to_path_buf(), source })?;
    let info = PluginInfo {
        name: info.name.into_string(),
        kind,
        version: info.version.into_string(),
        description: info.description.into_string(),
    };
    Ok((NativeLibrary { module }, info, schema))
}

/// What abi_stable's refusal of `path` means.
fn refused(path: &Path, error: LibraryError) -> NativeLoadError {
    let path = path.to_path_buf();
    match error {
        LibraryError::OpenError { err, .. } => NativeLoadError::Open { path, reason: err.to_string() },
        LibraryError::GetSymbolError { .. } => NativeLoadError::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            NativeLoadError::SdkVersion { path, theirs: actual_version.to_string(), ours: expected_version.to_string() }
        }
        LibraryError::AbiInstability(details) => {
            let details = details.to_string().lines().take(6).collect::<Vec<_>>().join("\n  ");
            NativeLoadError::Abi { path, details }
        }
        LibraryError::InvalidAbiHeader(header) => NativeLoadError::AbiHeader { path, header: format!("{header:?}") },
        other => NativeLoadError::Other { path, reason: other.to_string() },
    }
}

extern "C" fn host_http(request: &FfiHttpRequest<'_>) -> RResult<FfiHttpResponse, RString> {
    // The host's own code must not unwind into the plugin either.
    let result =
        std::panic::catch_unwind(|| capabilities::NativeHost.http(&request.to_request()).map(FfiHttpResponse::from));
    match result {
        Ok(Ok(response)) => RResult::ROk(response),
        Ok(Err(message)) => RResult::RErr(message.into()),
        Err(_) => RResult::RErr("the host failed while making the request".into()),
    }
}

extern "C" fn host_log(level: u8, message: RStr<'_>) {
    capabilities::log("native", evolve_sdk::host::LogLevel::from_u8(level), message.as_str());
}

impl NativeLibrary {
    fn create(&self, config: &serde_json::Value, ctx: &PluginContext) -> Result<FfiPlugin, PluginError> {
        let json = config.to_string();
        result((self.module.create())(json.as_str().into(), FfiContext::from(ctx)))
    }

    /// Builds an operator.
    pub fn operator(&self, config: &serde_json::Value, ctx: &PluginContext) -> Result<Box<dyn Operator>, PluginError> {
        match self.create(config, ctx)? {
            FfiPlugin::Operator(inner) => Ok(Box::new(NativeOperator(inner))),
            _ => Err(PluginError::InvalidConfig("the library built something other than an operator".into())),
        }
    }

    /// Builds a teacher.
    pub fn teacher(&self, config: &serde_json::Value, ctx: &PluginContext) -> Result<Box<dyn Teacher>, PluginError> {
        match self.create(config, ctx)? {
            FfiPlugin::Teacher(inner) => Ok(Box::new(NativeTeacher(Arc::new(inner)))),
            _ => Err(PluginError::InvalidConfig("the library built something other than a teacher".into())),
        }
    }

    /// Builds a judge.
    pub fn judge(&self, config: &serde_json::Value, ctx: &PluginContext) -> Result<Box<dyn Judge>, PluginError> {
        match self.create(config, ctx)? {
            FfiPlugin::Judge(inner) => Ok(Box::new(NativeJudge(Arc::new(inner)))),
            _ => Err(PluginError::InvalidConfig("the library built something other than a judge".into())),
        }
    }
}

/// A plugin's answer as the SDK's result.
fn result<T>(r: RResult<T, FfiError>) -> Result<T, PluginError> {
    r.into_result().map_err(PluginError::from)
}

struct NativeOperator(OperatorBox);

impl Operator for NativeOperator {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        let parts = SampleParts::new(sample);
        Ok(result(self.0.decide(&parts.borrow(sample)))?.iter().map(Action::from).collect())
    }
}

struct NativeTeacher(Arc<TeacherBox>);

#[evolve_sdk::async_trait]
impl Teacher for NativeTeacher {
    fn limits(&self) -> Limits {
        self.0.limits().into()
    }

    fn price(&self, request: &GenerateRequest) -> Cost {
        // Only for display: the host buys with `quote`, which refuses what cannot be priced.
        self.quote(request).unwrap_or(Cost::ZERO)
    }

    fn quote(&self, request: &GenerateRequest) -> Result<Cost, PluginError> {
        Ok(Cost { micro_usd: result(self.0.price(&FfiGenerateRequest::new(request)))? })
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let (inner, request) = (Arc::clone(&self.0), request.clone());
        let reply = off_runtime(move || inner.generate(&FfiGenerateRequest::new(&request))).await?;
        result(reply)?.into_generated()
    }
}

struct NativeJudge(Arc<JudgeBox>);

#[evolve_sdk::async_trait]
impl Judge for NativeJudge {
    fn limits(&self) -> Limits {
        self.0.limits().into()
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let (inner, request, count) = (Arc::clone(&self.0), request.clone(), request.images.len());
        off_runtime(move || {
            let images: Vec<FfiImageRef<'_>> = request.images.iter().map(FfiImageRef::new).collect();
            result(inner.compare(request.prompt.as_str().into(), images.as_slice().into(), request.seed))
        })
        .await?
        .and_then(|verdict| Verdict::from(verdict).checked(count))
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        let (inner, request) = (Arc::clone(&self.0), request.clone());
        let reply =
            off_runtime(move || inner.expand(request.prompt.as_str().into(), request.n as u64, request.seed)).await?;
        Ok(result(reply)?.into_iter().map(RString::into_string).collect())
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        let (inner, request) = (Arc::clone(&self.0), request.clone());
        let recent: Vec<RString> = request.recent.iter().map(|p| RString::from(p.as_str())).collect();
        let reply = off_runtime(move || inner.mutate(recent.as_slice().into(), request.seed)).await?;
        result(reply).map(RString::into_string)
    }
}
