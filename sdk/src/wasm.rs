//! Wasm plugins: guest bindings of the WIT world in `sdk/wit/plugin.wit` and the glue
//! [`export_wasm_plugin!`](crate::export_wasm_plugin) expands to.
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
//! The component runs in the host's sandbox: no files, no sockets, bounded memory and time per
//! call; [`crate::host::http`] reaches only the hosts the experiment allows.

use crate::exported::{Built, Exported};
use crate::host::{HttpRequest, HttpResponse, LogLevel};
use crate::{Action, Choice, EvaluatedSample, Image, Limits, Origin, Outcome, PluginContext, PluginError, Verdict};
use std::marker::PhantomData;

/// The generated guest bindings.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_evolve_plugin_world",
        default_bindings_module: "evolve_sdk::wasm::bindings",
    });
}

use bindings::evolve::plugin::{host, types};
use bindings::exports::evolve::plugin::{judge, metadata, operator, teacher};

/// The exports of a component whose plugin is `P`.
#[doc(hidden)]
pub struct Component<P>(PhantomData<P>);

fn to_wit_error(error: PluginError) -> types::PluginError {
    match error {
        PluginError::InvalidConfig(m) => types::PluginError::InvalidConfig(m),
        PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
        PluginError::Transient { message, .. } => types::PluginError::Transient(message),
        // The frozen 0.1 world has no case for it; the host then cannot count a possibly billed
        // attempt, which is why wasm teachers make one request per call.
        PluginError::Uncertain(m) => types::PluginError::Transient(m),
        PluginError::Billed(m) => types::PluginError::Failed(m),
        PluginError::Unsupported(m) => types::PluginError::Unsupported(m),
        PluginError::Failed(m) | PluginError::Quarantined(m) => types::PluginError::Failed(m),
    }
}

fn context(ctx: types::Context) -> PluginContext {
    PluginContext::new(ctx.instance, ctx.seed).with_run(ctx.image_size, "cpu")
}

fn unsupported<T>(kind: &str) -> Result<T, types::PluginError> {
    Err(types::PluginError::Unsupported(format!("this component is not a {kind}")))
}

fn wit_limits(l: Limits) -> types::Limits {
    types::Limits { concurrency: l.concurrency, requests_per_minute: l.requests_per_minute }
}

fn wit_image(image: &Image) -> types::Image {
    types::Image { width: image.width(), height: image.height(), rgb: image.pixels().to_vec() }
}

impl<P: Exported> metadata::Guest for Component<P> {
    fn info() -> types::PluginInfo {
        let kind = match P::KIND {
            crate::PluginKind::Teacher => types::PluginKind::Teacher,
            crate::PluginKind::Judge => types::PluginKind::Judge,
            _ => types::PluginKind::Operator,
        };
        types::PluginInfo {
            name: P::NAME.into(),
            kind,
            version: P::VERSION.into(),
            description: P::DESCRIPTION.into(),
            config_schema: P::config_schema().to_string(),
        }
    }
}

/// An operator instance inside the component.
#[doc(hidden)]
pub struct OperatorInstance<P>(Box<dyn crate::Operator>, PhantomData<P>);

impl<P: Exported> operator::Guest for Component<P> {
    type Instance = OperatorInstance<P>;
}

impl<P: Exported> operator::GuestInstance for OperatorInstance<P> {
    fn create(config: String, ctx: types::Context) -> Result<operator::Instance, types::PluginError> {
        match P::build_from_json(&config, &context(ctx)).map_err(to_wit_error)? {
            Built::Operator(op) => Ok(operator::Instance::new(OperatorInstance::<P>(op, PhantomData))),
            _ => unsupported("operator"),
        }
    }

    fn decide(&self, sample: operator::EvaluatedSample) -> Result<Vec<operator::Action>, types::PluginError> {
        let actions = self.0.decide(&from_wit_sample(sample)).map_err(to_wit_error)?;
        Ok(actions.iter().map(to_wit_action).collect())
    }
}

fn from_wit_outcome(o: operator::Outcome) -> Outcome {
    match o {
        operator::Outcome::TeacherBetter => Outcome::TeacherBetter,
        operator::Outcome::BaseAsGood => Outcome::BaseAsGood,
    }
}

fn from_wit_action(a: operator::Action) -> Action {
    match a {
        operator::Action::Keep => Action::Keep,
        operator::Action::Deactivate => Action::Deactivate,
        operator::Action::Expand(n) => Action::Expand { n: n as usize },
        operator::Action::Mutate => Action::Mutate,
        operator::Action::Rejudge => Action::Rejudge,
        operator::Action::Propose(prompt) => Action::Propose { prompt },
    }
}

fn to_wit_action(a: &Action) -> operator::Action {
    match a {
        Action::Keep => operator::Action::Keep,
        Action::Deactivate => operator::Action::Deactivate,
        Action::Expand { n } => operator::Action::Expand(*n as u32),
        Action::Mutate => operator::Action::Mutate,
        Action::Rejudge => operator::Action::Rejudge,
        Action::Propose { prompt } => operator::Action::Propose(prompt.clone()),
    }
}

fn from_wit_sample(s: operator::EvaluatedSample) -> EvaluatedSample {
    EvaluatedSample {
        sample_id: s.sample_id,
        prompt: s.prompt,
        origin: match s.origin {
            operator::Origin::Seed => Origin::Seed,
            operator::Origin::Expansion => Origin::Expansion,
            operator::Origin::Mutation => Origin::Mutation,
        },
        round: s.round,
        outcome: from_wit_outcome(s.outcome),
        verdict: Verdict {
            choice: match s.verdict.choice {
                operator::Choice::Best(i) => Choice::Best(i as usize),
                operator::Choice::Tie => Choice::Tie,
            },
            confidence: s.verdict.confidence,
            raw: s.verdict.raw,
        },
        rejudged: s.rejudged,
        history: s.history.into_iter().map(from_wit_outcome).collect(),
        proposed: s.proposed.into_iter().map(from_wit_action).collect(),
        seed: s.seed,
    }
}

/// A teacher instance inside the component.
#[doc(hidden)]
pub struct TeacherInstance<P>(Box<dyn crate::Teacher>, PhantomData<P>);

impl<P: Exported> teacher::Guest for Component<P> {
    type Instance = TeacherInstance<P>;
}

fn from_wit_request(r: teacher::GenerateRequest) -> crate::GenerateRequest {
    crate::GenerateRequest { prompt: r.prompt, width: r.width, height: r.height, seed: r.seed }
}

impl<P: Exported> teacher::GuestInstance for TeacherInstance<P> {
    fn create(config: String, ctx: types::Context) -> Result<teacher::Instance, types::PluginError> {
        match P::build_from_json(&config, &context(ctx)).map_err(to_wit_error)? {
            Built::Teacher(t) => Ok(teacher::Instance::new(TeacherInstance::<P>(t, PhantomData))),
            _ => unsupported("teacher"),
        }
    }

    fn limits(&self) -> types::Limits {
        wit_limits(self.0.limits())
    }

    fn price(&self, request: teacher::GenerateRequest) -> u64 {
        self.0.price(&from_wit_request(request)).micro_usd
    }

    fn generate(&self, request: teacher::GenerateRequest) -> Result<teacher::GeneratedImage, types::PluginError> {
        let generated = crate::block_on(self.0.generate(&from_wit_request(request))).map_err(to_wit_error)?;
        Ok(teacher::GeneratedImage {
            image: wit_image(&generated.image),
            revised_prompt: generated.revised_prompt,
            cost_micro_usd: generated.cost.micro_usd,
        })
    }
}

/// A judge instance inside the component.
#[doc(hidden)]
pub struct JudgeInstance<P>(Box<dyn crate::Judge>, PhantomData<P>);

impl<P: Exported> judge::Guest for Component<P> {
    type Instance = JudgeInstance<P>;
}

impl<P: Exported> judge::GuestInstance for JudgeInstance<P> {
    fn create(config: String, ctx: types::Context) -> Result<judge::Instance, types::PluginError> {
        match P::build_from_json(&config, &context(ctx)).map_err(to_wit_error)? {
            Built::Judge(j) => Ok(judge::Instance::new(JudgeInstance::<P>(j, PhantomData))),
            _ => unsupported("judge"),
        }
    }

    fn limits(&self) -> types::Limits {
        wit_limits(self.0.limits())
    }

    fn compare(
        &self,
        prompt: String,
        images: Vec<types::Image>,
        seed: u64,
    ) -> Result<judge::Verdict, types::PluginError> {
        let images = images
            .into_iter()
            .map(|i| Image::from_rgb(i.width, i.height, i.rgb))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| types::PluginError::InvalidInput(e.to_string()))?;
        let request = crate::CompareRequest { prompt, images, seed };
        let verdict = crate::block_on(self.0.compare(&request)).map_err(to_wit_error)?;
        Ok(judge::Verdict {
            choice: match verdict.choice {
                Choice::Best(i) => judge::Choice::Best(i as u32),
                Choice::Tie => judge::Choice::Tie,
            },
            confidence: verdict.confidence,
            raw: verdict.raw,
        })
    }

    fn expand(&self, prompt: String, n: u32, seed: u64) -> Result<Vec<String>, types::PluginError> {
        // The 0.1 world carries no conversation.
        let request = crate::ExpandRequest { prompt, n: n as usize, seed, after: None };
        crate::block_on(self.0.expand(&request)).map_err(to_wit_error)
    }

    fn mutate(&self, recent: Vec<String>, seed: u64) -> Result<String, types::PluginError> {
        crate::block_on(self.0.mutate(&crate::MutateRequest { recent, seed, after: None })).map_err(to_wit_error)
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

/// Exports a plugin as a wasm component (see the [module docs](self)).
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

        $crate::wasm::bindings::__export_evolve_plugin_world!(__EvolveComponent with_types_in $crate::wasm::bindings);
    };
}
