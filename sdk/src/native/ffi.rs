//! The types that cross the native plugin boundary, with `abi_stable` layouts that the loader
//! checks, and their conversions to and from the SDK's own types.
//!
//! Inputs are borrowed (`RStr`, `RSlice`) so that a call copies nothing the plugin does not
//! keep; outputs are owned (`RString`, `RVec`) and allocated by whoever creates them, which
//! `abi_stable`'s containers make safe across allocators.

use crate::host::{HttpRequest, HttpResponse};
use crate::{
    Action, Choice, Cost, EvaluatedSample, GenerateRequest, GeneratedImage, Image, Limits, Origin, Outcome,
    PluginContext, PluginError, PluginKind, Verdict,
};
use abi_stable::StableAbi;
use abi_stable::std_types::{ROption, RSlice, RStr, RString, RVec, Tuple2};
use std::time::Duration;

/// Which [`PluginError`] case a failure is.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfiErrorKind {
    /// [`PluginError::InvalidConfig`].
    InvalidConfig,
    /// [`PluginError::InvalidInput`].
    InvalidInput,
    /// [`PluginError::Transient`].
    Transient,
    /// [`PluginError::Failed`].
    Failed,
    /// [`PluginError::Unsupported`].
    Unsupported,
    /// A panic caught at the boundary (a failure that says so).
    Panicked,
    /// [`PluginError::Uncertain`].
    Uncertain,
    /// [`PluginError::Billed`].
    Billed,
}

/// Why a call failed, as [`PluginError`] says it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    /// The case.
    pub kind: FfiErrorKind,
    /// The message.
    pub message: RString,
    /// For transient failures: the provider's requested wait.
    pub retry_after_ms: ROption<u64>,
}

impl FfiError {
    /// A panic caught at the boundary.
    pub fn panicked(message: String) -> Self {
        FfiError { kind: FfiErrorKind::Panicked, message: message.into(), retry_after_ms: ROption::RNone }
    }
}

impl From<PluginError> for FfiError {
    fn from(error: PluginError) -> Self {
        use FfiErrorKind as K;
        let (kind, message, retry) = match error {
            PluginError::InvalidConfig(m) => (K::InvalidConfig, m, None),
            PluginError::InvalidInput(m) => (K::InvalidInput, m, None),
            PluginError::Transient { message, retry_after } => (K::Transient, message, retry_after),
            PluginError::Failed(m) => (K::Failed, m, None),
            PluginError::Unsupported(m) => (K::Unsupported, m, None),
            PluginError::Uncertain(m) => (K::Uncertain, m, None),
            PluginError::Billed(m) => (K::Billed, m, None),
            // Only the host quarantines; a plugin passing the variant on is just failing.
            PluginError::Quarantined(m) => (K::Failed, m, None),
        };
        let retry_after_ms = retry.map(|d| d.as_millis() as u64).into();
        FfiError { kind, message: message.into(), retry_after_ms }
    }
}

impl From<FfiError> for PluginError {
    fn from(error: FfiError) -> Self {
        let message = error.message.into_string();
        match error.kind {
            FfiErrorKind::InvalidConfig => PluginError::InvalidConfig(message),
            FfiErrorKind::InvalidInput => PluginError::InvalidInput(message),
            FfiErrorKind::Transient => PluginError::Transient {
                message,
                retry_after: error.retry_after_ms.into_option().map(Duration::from_millis),
            },
            FfiErrorKind::Unsupported => PluginError::Unsupported(message),
            FfiErrorKind::Panicked => PluginError::Failed(format!("the plugin panicked: {message}")),
            FfiErrorKind::Uncertain => PluginError::Uncertain(message),
            FfiErrorKind::Billed => PluginError::Billed(message),
            FfiErrorKind::Failed => PluginError::Failed(message),
        }
    }
}

/// The kind of plugin a library holds.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfiKind {
    /// A teacher.
    Teacher,
    /// A judge.
    Judge,
    /// An operator.
    Operator,
    /// A kind that cannot be external (a base model or an evaluator): the host refuses it.
    BuiltInOnly,
}

impl From<PluginKind> for FfiKind {
    fn from(kind: PluginKind) -> Self {
        match kind {
            PluginKind::Teacher => FfiKind::Teacher,
            PluginKind::Judge => FfiKind::Judge,
            PluginKind::Operator => FfiKind::Operator,
            PluginKind::BaseModel | PluginKind::Evaluator => FfiKind::BuiltInOnly,
        }
    }
}

impl FfiKind {
    /// The [`PluginKind`], if it is one an external plugin can be.
    pub fn plugin_kind(self) -> Option<PluginKind> {
        match self {
            FfiKind::Teacher => Some(PluginKind::Teacher),
            FfiKind::Judge => Some(PluginKind::Judge),
            FfiKind::Operator => Some(PluginKind::Operator),
            FfiKind::BuiltInOnly => None,
        }
    }
}

/// A plugin's identity and config schema (JSON text).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiInfo {
    /// The plugin's name.
    pub name: RString,
    /// Its kind.
    pub kind: FfiKind,
    /// The plugin's own version.
    pub version: RString,
    /// One line on what it does.
    pub description: RString,
    /// JSON Schema of its config, as JSON text.
    pub config_schema: RString,
}

/// What the host tells a plugin when it builds an instance.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiContext {
    /// The instance label.
    pub instance: RString,
    /// The instance's seed.
    pub seed: u64,
    /// The run's image side.
    pub image_size: u32,
}

impl From<&PluginContext> for FfiContext {
    fn from(ctx: &PluginContext) -> Self {
        FfiContext { instance: ctx.instance.as_str().into(), seed: ctx.seed, image_size: ctx.image_size }
    }
}

impl From<FfiContext> for PluginContext {
    fn from(ctx: FfiContext) -> Self {
        PluginContext::new(ctx.instance.into_string(), ctx.seed).with_run(ctx.image_size, "cpu")
    }
}

/// An operator's action.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum FfiAction {
    /// [`Action::Keep`].
    Keep,
    /// [`Action::Deactivate`].
    Deactivate,
    /// [`Action::Expand`].
    Expand(u64),
    /// [`Action::Mutate`].
    Mutate,
    /// [`Action::Rejudge`].
    Rejudge,
    /// [`Action::Propose`].
    Propose(RString),
}

impl From<&Action> for FfiAction {
    fn from(action: &Action) -> Self {
        match action {
            Action::Keep => FfiAction::Keep,
            Action::Deactivate => FfiAction::Deactivate,
            Action::Expand { n } => FfiAction::Expand(*n as u64),
            Action::Mutate => FfiAction::Mutate,
            Action::Rejudge => FfiAction::Rejudge,
            Action::Propose { prompt } => FfiAction::Propose(prompt.as_str().into()),
        }
    }
}

impl From<&FfiAction> for Action {
    fn from(action: &FfiAction) -> Self {
        match action {
            FfiAction::Keep => Action::Keep,
            FfiAction::Deactivate => Action::Deactivate,
            FfiAction::Expand(n) => Action::Expand { n: *n as usize },
            FfiAction::Mutate => Action::Mutate,
            FfiAction::Rejudge => Action::Rejudge,
            FfiAction::Propose(prompt) => Action::Propose { prompt: prompt.to_string() },
        }
    }
}

/// A judged sample, borrowed from the host for the length of one call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiSample<'a> {
    /// Ledger id.
    pub sample_id: i64,
    /// The prompt.
    pub prompt: RStr<'a>,
    /// Where it came from.
    pub origin: FfiOrigin,
    /// The round.
    pub round: u64,
    /// The judge's outcome.
    pub outcome: FfiOutcome,
    /// The preferred image's index, or none for a tie.
    pub choice: ROption<u64>,
    /// The judge's confidence.
    pub confidence: f32,
    /// The judge's raw reply.
    pub raw: RStr<'a>,
    /// Whether the verdict was confirmed in swapped order.
    pub rejudged: bool,
    /// Earlier outcomes.
    pub history: RSlice<'a, FfiOutcome>,
    /// What earlier operators proposed.
    pub proposed: RSlice<'a, FfiAction>,
    /// Seed for this decision.
    pub seed: u64,
}

/// Where a sample came from ([`Origin`]).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfiOrigin {
    /// [`Origin::Seed`].
    Seed,
    /// [`Origin::Expansion`].
    Expansion,
    /// [`Origin::Mutation`].
    Mutation,
    /// [`Origin::Imported`].
    Imported,
}

impl From<Origin> for FfiOrigin {
    fn from(origin: Origin) -> Self {
        match origin {
            Origin::Seed => FfiOrigin::Seed,
            Origin::Expansion => FfiOrigin::Expansion,
            Origin::Mutation => FfiOrigin::Mutation,
            Origin::Imported => FfiOrigin::Imported,
        }
    }
}

impl From<FfiOrigin> for Origin {
    fn from(origin: FfiOrigin) -> Self {
        match origin {
            FfiOrigin::Seed => Origin::Seed,
            FfiOrigin::Expansion => Origin::Expansion,
            FfiOrigin::Mutation => Origin::Mutation,
            FfiOrigin::Imported => Origin::Imported,
        }
    }
}

/// A judged outcome ([`Outcome`]).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfiOutcome {
    /// [`Outcome::TeacherBetter`].
    TeacherBetter,
    /// [`Outcome::BaseAsGood`].
    BaseAsGood,
}

impl From<Outcome> for FfiOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::TeacherBetter => FfiOutcome::TeacherBetter,
            Outcome::BaseAsGood => FfiOutcome::BaseAsGood,
        }
    }
}

impl From<FfiOutcome> for Outcome {
    fn from(outcome: FfiOutcome) -> Self {
        match outcome {
            FfiOutcome::TeacherBetter => Outcome::TeacherBetter,
            FfiOutcome::BaseAsGood => Outcome::BaseAsGood,
        }
    }
}

/// The owned parts of an [`FfiSample`] that the SDK's sample does not hold in FFI form.
pub struct SampleParts {
    history: Vec<FfiOutcome>,
    proposed: Vec<FfiAction>,
}

impl SampleParts {
    /// Prepares `sample` for [`borrow`](SampleParts::borrow).
    pub fn new(sample: &EvaluatedSample) -> Self {
        SampleParts {
            history: sample.history.iter().map(|o| FfiOutcome::from(*o)).collect(),
            proposed: sample.proposed.iter().map(FfiAction::from).collect(),
        }
    }

    /// `sample` as the plugin sees it.
    pub fn borrow<'a>(&'a self, sample: &'a EvaluatedSample) -> FfiSample<'a> {
        FfiSample {
            sample_id: sample.sample_id,
            prompt: sample.prompt.as_str().into(),
            origin: sample.origin.into(),
            round: sample.round,
            outcome: sample.outcome.into(),
            choice: match sample.verdict.choice {
                Choice::Best(i) => ROption::RSome(i as u64),
                Choice::Tie => ROption::RNone,
            },
            confidence: sample.verdict.confidence,
            raw: sample.verdict.raw.as_str().into(),
            rejudged: sample.rejudged,
            history: self.history.as_slice().into(),
            proposed: self.proposed.as_slice().into(),
            seed: sample.seed,
        }
    }
}

impl FfiSample<'_> {
    /// The sample as the SDK's trait takes it.
    pub fn to_sample(&self) -> EvaluatedSample {
        EvaluatedSample {
            sample_id: self.sample_id,
            prompt: self.prompt.to_string(),
            origin: self.origin.into(),
            round: self.round,
            outcome: self.outcome.into(),
            verdict: Verdict {
                choice: self.choice.into_option().map_or(Choice::Tie, |i| Choice::Best(i as usize)),
                confidence: self.confidence,
                raw: self.raw.to_string(),
            },
            rejudged: self.rejudged,
            history: self.history.iter().map(|o| Outcome::from(*o)).collect(),
            proposed: self.proposed.iter().map(Action::from).collect(),
            seed: self.seed,
        }
    }
}

/// An image the plugin returns.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB bytes, row-major.
    pub rgb: RVec<u8>,
}

impl FfiImage {
    /// Copies `image`.
    pub fn new(image: &Image) -> Self {
        FfiImage { width: image.width(), height: image.height(), rgb: image.pixels().into() }
    }

    /// The image, checked.
    pub fn into_image(self) -> Result<Image, PluginError> {
        Image::from_rgb(self.width, self.height, self.rgb.into_vec())
            .map_err(|e| PluginError::Failed(format!("the plugin returned a bad image: {e}")))
    }
}

/// A teacher request, borrowed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiGenerateRequest<'a> {
    /// The prompt.
    pub prompt: RStr<'a>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Provider seed.
    pub seed: u64,
}

impl<'a> FfiGenerateRequest<'a> {
    /// Borrows `request`.
    pub fn new(request: &'a GenerateRequest) -> Self {
        FfiGenerateRequest {
            prompt: request.prompt.as_str().into(),
            width: request.width,
            height: request.height,
            seed: request.seed,
        }
    }

    /// The request as the SDK's trait takes it.
    pub fn to_request(&self) -> GenerateRequest {
        GenerateRequest { prompt: self.prompt.to_string(), width: self.width, height: self.height, seed: self.seed }
    }
}

/// A teacher's image.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiGenerated {
    /// The image.
    pub image: FfiImage,
    /// The prompt actually rendered, when the provider rewrote it.
    pub revised_prompt: ROption<RString>,
    /// The call's cost in micro-dollars.
    pub cost_micro_usd: u64,
}

impl From<GeneratedImage> for FfiGenerated {
    fn from(g: GeneratedImage) -> Self {
        FfiGenerated {
            image: FfiImage::new(&g.image),
            revised_prompt: g.revised_prompt.map(RString::from).into(),
            cost_micro_usd: g.cost.micro_usd,
        }
    }
}

impl FfiGenerated {
    /// The SDK's form.
    pub fn into_generated(self) -> Result<GeneratedImage, PluginError> {
        Ok(GeneratedImage {
            image: self.image.into_image()?,
            revised_prompt: self.revised_prompt.into_option().map(RString::into_string),
            cost: Cost { micro_usd: self.cost_micro_usd },
        })
    }
}

/// A plugin's call limits.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiLimits {
    /// Calls in flight at once.
    pub concurrency: u32,
    /// Calls per minute, if limited.
    pub requests_per_minute: ROption<u32>,
}

impl From<Limits> for FfiLimits {
    fn from(l: Limits) -> Self {
        FfiLimits { concurrency: l.concurrency, requests_per_minute: l.requests_per_minute.into() }
    }
}

impl From<FfiLimits> for Limits {
    fn from(l: FfiLimits) -> Self {
        Limits { concurrency: l.concurrency.max(1), requests_per_minute: l.requests_per_minute.into_option() }
    }
}

/// An image lent to a judge.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiImageRef<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB bytes.
    pub rgb: RSlice<'a, u8>,
}

impl<'a> FfiImageRef<'a> {
    /// Borrows `image`.
    pub fn new(image: &'a Image) -> Self {
        FfiImageRef { width: image.width(), height: image.height(), rgb: image.pixels().into() }
    }

    /// An owned copy.
    pub fn to_image(&self) -> Result<Image, PluginError> {
        Image::from_rgb(self.width, self.height, self.rgb.to_vec())
            .map_err(|e| PluginError::InvalidInput(e.to_string()))
    }
}

/// A judge's verdict.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiVerdict {
    /// The preferred image, or none for a tie.
    pub choice: ROption<u64>,
    /// Confidence in `[0, 1]`.
    pub confidence: f32,
    /// Raw reply.
    pub raw: RString,
}

impl From<Verdict> for FfiVerdict {
    fn from(v: Verdict) -> Self {
        let choice = match v.choice {
            Choice::Best(i) => ROption::RSome(i as u64),
            Choice::Tie => ROption::RNone,
        };
        FfiVerdict { choice, confidence: v.confidence, raw: v.raw.into() }
    }
}

impl From<FfiVerdict> for Verdict {
    fn from(v: FfiVerdict) -> Self {
        Verdict {
            choice: v.choice.into_option().map_or(Choice::Tie, |i| Choice::Best(i as usize)),
            confidence: v.confidence,
            raw: v.raw.into_string(),
        }
    }
}

/// An HTTP request from a plugin to the host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpRequest<'a> {
    /// Method.
    pub method: RStr<'a>,
    /// URL.
    pub url: RStr<'a>,
    /// Headers.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Body.
    pub body: RSlice<'a, u8>,
}

impl<'a> FfiHttpRequest<'a> {
    /// Borrows `request`.
    pub fn new(request: &'a HttpRequest) -> Self {
        FfiHttpRequest {
            method: request.method.as_str().into(),
            url: request.url.as_str().into(),
            headers: request.headers.iter().map(|(k, v)| Tuple2(k.as_str().into(), v.as_str().into())).collect(),
            body: request.body.as_slice().into(),
        }
    }

    /// An owned copy.
    pub fn to_request(&self) -> HttpRequest {
        HttpRequest {
            method: self.method.to_string(),
            url: self.url.to_string(),
            headers: self.headers.iter().map(|Tuple2(k, v)| (k.to_string(), v.to_string())).collect(),
            body: self.body.to_vec(),
        }
    }
}

/// The host's reply to an [`FfiHttpRequest`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Body.
    pub body: RVec<u8>,
}

impl From<HttpResponse> for FfiHttpResponse {
    fn from(r: HttpResponse) -> Self {
        FfiHttpResponse {
            status: r.status,
            headers: r.headers.into_iter().map(|(k, v)| Tuple2(k.into(), v.into())).collect(),
            body: r.body.into(),
        }
    }
}

impl From<FfiHttpResponse> for HttpResponse {
    fn from(r: FfiHttpResponse) -> Self {
        HttpResponse {
            status: r.status,
            headers: r.headers.into_iter().map(|Tuple2(k, v)| (k.into_string(), v.into_string())).collect(),
            body: r.body.into_vec(),
        }
    }
}

/// Every type that crosses the native boundary, there and back. The SDK values are written as
/// full struct literals with no field at its default, so that a field added to an SDK type
/// must be given a value here, and fails a test if the conversion drops it.
#[cfg(test)]
mod round_trip {
    use super::*;

    fn sample(origin: Origin, outcome: Outcome, choice: Choice) -> EvaluatedSample {
        EvaluatedSample {
            sample_id: -42,
            prompt: "a small red circle above a blue square".into(),
            origin,
            round: 7,
            outcome,
            verdict: Verdict { choice, confidence: 0.625, raw: "{\"best\": 2}".into() },
            rejudged: true,
            history: vec![Outcome::TeacherBetter, Outcome::BaseAsGood, Outcome::TeacherBetter],
            proposed: every_action(),
            seed: 0xDEAD_BEEF_0000_0001,
        }
    }

    fn every_action() -> Vec<Action> {
        vec![
            Action::Keep,
            Action::Deactivate,
            Action::Expand { n: 3 },
            Action::Mutate,
            Action::Rejudge,
            Action::Propose { prompt: "two green triangles".into() },
        ]
    }

    #[test]
    fn a_sample_crosses_whole_with_every_origin_outcome_and_choice() {
        for origin in [Origin::Seed, Origin::Expansion, Origin::Mutation, Origin::Imported] {
            for outcome in [Outcome::TeacherBetter, Outcome::BaseAsGood] {
                for choice in [Choice::Best(1), Choice::Tie] {
                    let sent = sample(origin, outcome, choice);
                    let parts = SampleParts::new(&sent);
                    assert_eq!(parts.borrow(&sent).to_sample(), sent);
                }
            }
        }
    }

    #[test]
    fn the_kinds_an_external_plugin_can_be_cross_and_the_others_are_refused() {
        for kind in [PluginKind::Teacher, PluginKind::Judge, PluginKind::Operator] {
            assert_eq!(FfiKind::from(kind).plugin_kind(), Some(kind));
        }
        for kind in [PluginKind::BaseModel, PluginKind::Evaluator] {
            assert_eq!(FfiKind::from(kind).plugin_kind(), None);
        }
    }

    #[test]
    fn every_action_crosses_both_ways() {
        for action in every_action() {
            assert_eq!(Action::from(&FfiAction::from(&action)), action);
        }
    }

    #[test]
    fn every_error_but_the_hosts_own_crosses_whole() {
        let errors = [
            PluginError::InvalidConfig("config".into()),
            PluginError::InvalidInput("input".into()),
            PluginError::Transient { message: "429".into(), retry_after: Some(Duration::from_millis(1500)) },
            PluginError::Transient { message: "503".into(), retry_after: None },
            PluginError::Failed("failed".into()),
            PluginError::Unsupported("unsupported".into()),
            PluginError::Uncertain("uncertain".into()),
            PluginError::Billed("billed".into()),
        ];
        for error in errors {
            assert_eq!(PluginError::from(FfiError::from(error.clone())), error);
        }
        // Only the host quarantines: from a plugin it is a failure; a panic says so.
        let passed_on = PluginError::from(FfiError::from(PluginError::Quarantined("q".into())));
        assert_eq!(passed_on, PluginError::Failed("q".into()));
        let panic = PluginError::from(FfiError::panicked("boom".into()));
        assert_eq!(panic, PluginError::Failed("the plugin panicked: boom".into()));
    }

    #[test]
    fn a_context_carries_what_external_plugins_get() {
        let sent = PluginContext {
            instance: "teacher-a".into(),
            seed: 99,
            image_size: 256,
            device: "cuda:1".into(),
            cache_dir: Some("/run/cache".into()),
            data_parallel: Some(crate::DataParallel { rank: 1, world: 4, rendezvous: "127.0.0.1:9".into() }),
        };
        let got = PluginContext::from(FfiContext::from(&sent));
        // The device, the cache folder and the data-parallel group are for built-in base
        // models only.
        let expected = PluginContext { device: "cpu".into(), cache_dir: None, data_parallel: None, ..sent };
        assert_eq!(got, expected);
    }

    #[test]
    fn requests_images_limits_verdicts_and_http_cross_whole() {
        let request = GenerateRequest { prompt: "four yellow diamonds".into(), width: 64, height: 48, seed: 5 };
        assert_eq!(FfiGenerateRequest::new(&request).to_request(), request);

        let mut image = Image::filled(3, 2, [1, 2, 3]);
        image.put(2, 1, [250, 128, 7]);
        assert_eq!(FfiImageRef::new(&image).to_image().unwrap(), image);
        let generated = GeneratedImage {
            image: image.clone(),
            revised_prompt: Some("revised".into()),
            cost: Cost { micro_usd: 40_001 },
        };
        assert_eq!(FfiGenerated::from(generated.clone()).into_generated().unwrap(), generated);

        let limits = Limits { concurrency: 8, requests_per_minute: Some(120) };
        assert_eq!(Limits::from(FfiLimits::from(limits)), limits);

        for choice in [Choice::Best(0), Choice::Best(3), Choice::Tie] {
            let verdict = Verdict { choice, confidence: 0.75, raw: "raw".into() };
            assert_eq!(Verdict::from(FfiVerdict::from(verdict.clone())), verdict);
        }

        let http = HttpRequest {
            method: "POST".into(),
            url: "https://api.example/v1".into(),
            headers: vec![("authorization".into(), "Bearer k".into()), ("x".into(), "y".into())],
            body: vec![0, 1, 255],
        };
        assert_eq!(FfiHttpRequest::new(&http).to_request(), http);
        let reply = HttpResponse { status: 429, headers: vec![("retry-after".into(), "2".into())], body: vec![9, 8] };
        assert_eq!(HttpResponse::from(FfiHttpResponse::from(reply.clone())), reply);
    }
}
