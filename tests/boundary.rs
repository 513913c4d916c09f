//! Every type that crosses the wasm boundary, there and back, through real components: the
//! mirror fixtures (`tests/plugins/mirror-wasm`) say back as text every value the host sent
//! (after the host's conversion to WIT and the guest's conversion back to the SDK's types) and
//! answer with values that use every field (converted by the guest, then by the host). A field
//! that either side drops fails here. The native boundary's conversions live in one file with
//! both directions and are tested there (`sdk/src/native/ffi.rs`).

mod support;

use evolve_core::experiment::PluginRef;
use evolve_core::registry::Registry;
use evolve_mirror_wasm::{error_for, fingerprint, painted};
use evolve_sdk::{
    Action, Choice, CompareRequest, Comparison, Cost, EvaluatedSample, ExpandRequest, GenerateRequest, GeneratedImage,
    Image, Limits, MutateRequest, Origin, Outcome, PluginContext, PluginError, Verdict,
};
use std::path::Path;
use std::sync::OnceLock;
use support::plugin_files::{PluginFiles, build_plugins};

fn files() -> &'static PluginFiles {
    static FILES: OnceLock<PluginFiles> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    FILES.get_or_init(|| build_plugins(root).expect("the fixture plugins build"))
}

fn wasm(path: &Path) -> PluginRef {
    PluginRef::Wasm { wasm: path.to_path_buf() }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// A context whose every field differs from the default.
fn context() -> PluginContext {
    PluginContext {
        instance: "mirror-instance".into(),
        seed: 0xC0FFEE,
        image_size: 48,
        device: "cuda:1".into(),
        cache_dir: Some("/run/cache".into()),
        data_parallel: Some(evolve_sdk::DataParallel { rank: 1, world: 2, rendezvous: "127.0.0.1:9".into() }),
    }
}

/// What a guest sees of [`context`]: the device and cache folder are for built-in models only.
fn context_in_guest() -> PluginContext {
    PluginContext { device: "cpu".into(), cache_dir: None, data_parallel: None, ..context() }
}

fn image(width: u32, height: u32, seed: u8) -> Image {
    let mut image = Image::filled(width, height, [seed, 255 - seed, 7]);
    image.put(width / 2, height / 2, [seed / 2, 3, 250]);
    image
}

#[test]
fn a_teachers_context_request_quote_limits_and_image_cross_whole() {
    let teacher =
        Registry::builtin().teacher(&wasm(&files().mirror_teacher), serde_json::json!({}), &context()).unwrap();
    // One instance serves one call at a time, whatever concurrency the guest declares (3).
    assert_eq!(teacher.limits(), Limits { concurrency: 1, requests_per_minute: Some(77) });
    let request = GenerateRequest { prompt: "two green triangles".into(), width: 40, height: 24, seed: 17 };
    assert_eq!(teacher.quote(&request), Ok(Cost { micro_usd: 1017 }));
    let generated = block_on(teacher.generate(&request)).unwrap();
    let expected = GeneratedImage {
        image: painted(&request),
        revised_prompt: Some(format!("{request:?} {:?}", context_in_guest())),
        cost: Cost { micro_usd: 4242 },
    };
    assert_eq!(generated, expected);
}

#[test]
fn every_error_case_crosses_whole() {
    let teacher =
        Registry::builtin().teacher(&wasm(&files().mirror_teacher), serde_json::json!({}), &context()).unwrap();
    let kinds = ["invalid_config", "invalid_input", "transient", "uncertain", "billed", "unsupported", "failed"];
    for kind in kinds {
        let request = GenerateRequest { prompt: format!("error:{kind}"), width: 8, height: 8, seed: 1 };
        let sent = error_for(&request.prompt).unwrap();
        // WIT's `transient` carries no wait: the host's back-off decides it.
        let expected = match sent {
            PluginError::Transient { message, .. } => PluginError::Transient { message, retry_after: None },
            other => other,
        };
        assert_eq!(block_on(teacher.generate(&request)).unwrap_err(), expected, "{kind}");
    }
}

#[test]
fn a_judges_requests_conversation_and_verdicts_cross_whole() {
    let judge = Registry::builtin().judge(&wasm(&files().mirror_judge), serde_json::json!({}), &context()).unwrap();
    assert_eq!(judge.limits(), Limits { concurrency: 1, requests_per_minute: None });
    let images = vec![image(12, 10, 40), image(12, 10, 90), image(6, 4, 200)];
    let prints: Vec<String> = images.iter().map(fingerprint).collect();

    for (prompt, choice) in [("a red circle", Choice::Best(2)), ("tie", Choice::Tie)] {
        let request = CompareRequest { prompt: prompt.into(), images: images.clone(), seed: 5 };
        let verdict = block_on(judge.compare(&request)).unwrap();
        assert_eq!(verdict, Verdict { choice, confidence: 0.375, raw: format!("{request:?} {prints:?}") });
    }

    let after = Comparison { prompt: "a red circle".into(), images: images.clone(), reply: "(B) is better".into() };
    for after in [Some(after), None] {
        let conversation =
            format!("{after:?} {:?}", after.as_ref().map(|c| c.images.iter().map(fingerprint).collect::<Vec<_>>()));
        let expand = ExpandRequest { prompt: "three blue squares".into(), n: 3, seed: 8, after: after.clone() };
        assert_eq!(block_on(judge.expand(&expand)).unwrap(), vec![format!("{expand:?}"), conversation.clone()]);
        let mutate = MutateRequest { recent: vec!["a".into(), "b c".into()], seed: 9, after };
        assert_eq!(block_on(judge.mutate(&mutate)).unwrap(), format!("{mutate:?} {conversation}"));
    }
}

#[test]
fn an_operators_sample_context_and_every_action_cross_whole() {
    let operator =
        Registry::builtin().operator(&wasm(&files().mirror_operator), serde_json::json!({}), &context()).unwrap();
    let mut checked = 0;
    for origin in [Origin::Seed, Origin::Expansion, Origin::Mutation, Origin::Imported] {
        for (outcome, choice) in [(Outcome::TeacherBetter, Choice::Best(1)), (Outcome::BaseAsGood, Choice::Tie)] {
            let sample = EvaluatedSample {
                sample_id: -42,
                prompt: "a small red circle above a blue square".into(),
                origin,
                round: 7,
                outcome,
                verdict: Verdict { choice, confidence: 0.625, raw: "{\"best\": 2}".into() },
                rejudged: true,
                history: vec![Outcome::TeacherBetter, Outcome::BaseAsGood],
                proposed: vec![Action::Expand { n: 3 }, Action::Propose { prompt: "p".into() }, Action::Rejudge],
                seed: 0xDEAD_BEEF_0000_0001,
            };
            let expected = vec![
                Action::Propose { prompt: format!("{sample:?}") },
                Action::Propose { prompt: format!("{:?}", context_in_guest()) },
                Action::Keep,
                Action::Deactivate,
                Action::Expand { n: 7 },
                Action::Mutate,
                Action::Rejudge,
            ];
            assert_eq!(operator.decide(&sample).unwrap(), expected, "{origin:?} {outcome:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}
