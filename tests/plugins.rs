//! External plugins for real: the example native teacher and wasm operator built from this
//! repository, loaded by path, inside an `evolve run` on the embedded world; and hostile
//! plugins (infinite loop, memory bomb, disallowed host, panic, wrong ABI, corrupt wasm, wrong
//! WIT version) that must each end in a clear error while the host carries on.

mod support;

use evolve_core::bench::plugin_overhead::{Probes, measure, typical_sample};
use evolve_core::experiment::{PluginRef, PluginSettings};
use evolve_core::purchase::{Bought, TeacherSlot, Till};
use evolve_core::registry::Registry;
use evolve_sdk::{Action, Operator, PluginContext, PluginError};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::plugin_files::{PluginFiles, build_plugins};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The plugins, built once per test binary (cargo, release, into target/plugins).
fn files() -> &'static PluginFiles {
    static FILES: OnceLock<PluginFiles> = OnceLock::new();
    FILES.get_or_init(|| build_plugins(&root()).expect("the example and probe plugins build"))
}

/// Every test uses the same sandbox: the native allow-list is process-wide.
fn settings() -> PluginSettings {
    PluginSettings { allow_hosts: vec!["127.0.0.1:*".into()], memory_mb: 64, call_timeout_ms: 300, read_dirs: vec![] }
}

fn registry() -> Registry {
    Registry::builtin().with_settings(&settings())
}

fn native(path: &Path) -> PluginRef {
    PluginRef::Native { native: path.to_path_buf() }
}

fn wasm(path: &Path) -> PluginRef {
    PluginRef::Wasm { wasm: path.to_path_buf() }
}

fn probe(plugin: PluginRef, config: serde_json::Value) -> Box<dyn Operator> {
    registry().operator(&plugin, config, &PluginContext::new("probe", 1)).expect("the probe builds")
}

fn load_error(plugin: PluginRef) -> String {
    match registry().operator(&plugin, serde_json::json!({}), &PluginContext::new("x", 0)) {
        Ok(_) => panic!("{plugin} loaded"),
        Err(e) => e.to_string(),
    }
}

fn quarantined(result: Result<Vec<Action>, PluginError>) -> String {
    match result {
        Err(PluginError::Quarantined(reason)) => reason,
        other => panic!("expected quarantine, got {other:?}"),
    }
}

/// A loopback HTTP server at `ip` answering every request with `reply` (a whole HTTP/1.1
/// response); returns its port.
fn canned_server(ip: &str, reply: String) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

/// A loopback HTTP server answering every request with 200 and `hello`; returns its port.
fn hello_server() -> u16 {
    canned_server("127.0.0.1", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".into())
}

// ---------------------------------------------------------------- well-behaved plugins

#[test]
fn native_and_wasm_operators_decide_like_the_builtin() {
    let files = files();
    let sample = typical_sample();
    let builtin = registry()
        .operator(&"expansion".into(), serde_json::json!({ "expand_num": 3 }), &PluginContext::new("b", 0))
        .unwrap();
    let expected = builtin.decide(&sample).unwrap();
    assert_eq!(expected, vec![Action::Expand { n: 3 }]);
    assert_eq!(probe(native(&files.probe_native), serde_json::json!({})).decide(&sample).unwrap(), expected);
    assert_eq!(probe(wasm(&files.probe_wasm), serde_json::json!({})).decide(&sample).unwrap(), expected);
    // The benchmark's harness runs (its timings are for `evolve bench plugin-overhead`).
    let probes =
        Probes { native: Some(files.probe_native.clone()), wasm: Some(files.probe_wasm.clone()), python: None };
    let overhead = measure(&registry(), &probes, 2, 50).unwrap();
    assert!(overhead.native_ns.is_some_and(|ns| ns > 0.0) && overhead.wasm_ns.is_some_and(|ns| ns > 0.0));
    // A plugin that is not an operator is refused rather than timed.
    let wrong = Probes { native: Some(files.native_teacher.clone()), ..Probes::default() };
    assert!(measure(&registry(), &wrong, 1, 1).is_err());
}

#[test]
fn the_example_plugins_run_inside_an_evolve_run() {
    let files = files();
    let mut server = evolve().args(["serve", "--addr", "127.0.0.1:0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _server = Killed(server);
    let url = line.trim().rsplit(' ').next().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    let text = format!(
        r#"
[run]
name = "plugins-e2e"
seed = 3
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 3 }}
[[teachers]]
plugin = {{ native = "{teacher}" }}
config = {{ base_url = "{url}", price_usd = 0.01 }}
[judge]
plugin = "shapes"
config = {{ flip_rate = 0.5 }}
[[operators]]
plugin = "expansion"
config = {{ expand_num = 1 }}
[[operators]]
plugin = {{ wasm = "{constraint}" }}
config = {{ constraints = ["to the left of a blue square", "above a green circle"], rate = 1.0, applies_to = ["a ", "an "], unless_contains = [" and ", " of ", " above ", " below "] }}
[[operators]]
plugin = {{ wasm = "{probe}" }}
config = {{ behaviour = "loop" }}
[prompts]
generate = 16
[training]
batch_size = 8
checkpoint_every = 100
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_teacher_calls = 80
max_steps = 40
[plugins]
allow_hosts = ["127.0.0.1:*"]
call_timeout_ms = 300
"#,
        teacher = files.native_teacher.display(),
        constraint = files.wasm_operator.display(),
        probe = files.probe_wasm.display(),
    );
    std::fs::write(&exp, text).unwrap();
    let run = dir.path().join("run");
    let output = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let db = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    // Every image was bought by the native teacher over the host's HTTP from `evolve serve`.
    let calls = count("SELECT count(*) FROM api_calls WHERE plugin = 'evolve_example_native_teacher'");
    assert!(calls >= 16, "{calls} calls");
    assert_eq!(count("SELECT count(*) FROM api_calls WHERE plugin <> 'evolve_example_native_teacher'"), 0);
    // The wasm operator evolved mastered prompts by adding a constraint, and they were bought.
    let evolved = count(
        "SELECT count(*) FROM samples s JOIN prompts p ON p.id = s.prompt_id WHERE s.origin = 'mutation'
         AND (p.text LIKE '% to the left of a blue square' OR p.text LIKE '% above a green circle')",
    );
    assert!(evolved > 0, "no constraint-added prompt entered the set");
    // The looping probe was quarantined and recorded; the run went on without it.
    let reason: String =
        db.query_row("SELECT reason FROM plugin_faults WHERE instance LIKE 'operator.2.%'", [], |r| r.get(0)).unwrap();
    assert!(reason.contains("time limit of 300 ms"), "{reason}");
    assert!(count("SELECT count(*) FROM rounds") >= 3);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("quarantined"), "{stdout}");
}

/// The flat wasm teacher with `config`, as a purchase slot, and a till on a fresh run.
fn flat_teacher_shop(config: serde_json::Value) -> (TeacherSlot, Till, tempfile::TempDir) {
    let teacher = registry().teacher(&wasm(&files().flat_teacher_wasm), config, &PluginContext::new("t", 0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = evolve_core::store::RunDir::create(&dir.path().join("run"), "[run]\nname = \"p\"\n").unwrap();
    let budget = evolve_core::budget::Budget::new(None, None, 0, evolve_sdk::Cost::ZERO);
    let till = Till { run: Arc::new(Mutex::new(run)), budget: Arc::new(Mutex::new(budget)) };
    (TeacherSlot::new("t".into(), Arc::from(teacher)), till, dir)
}

#[test]
fn a_teacher_whose_pricing_fails_is_never_bought_from_as_if_free() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (slot, till, _dir) = flat_teacher_shop(serde_json::json!({ "micro_usd": 40, "unpriceable": "priceless" }));
    let request = evolve_sdk::GenerateRequest { prompt: "a priceless circle".into(), width: 8, height: 8, seed: 1 };
    assert!(slot.teacher.quote(&request).is_err(), "a trap while pricing is an error, not a price of $0");
    let bought = rt.block_on(till.buy(&slot, &request)).unwrap();
    assert!(matches!(bought, Bought::Failed(_)), "an unpriced request must not be bought");
    let run = till.run.lock().unwrap();
    assert_eq!(run.ledger.call_totals().unwrap(), (0, evolve_sdk::Cost::ZERO));
}

#[test]
fn a_teacher_billing_above_its_quote_is_recorded_at_what_it_billed_and_bought_from_no_more() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (slot, till, dir) = flat_teacher_shop(serde_json::json!({ "micro_usd": 40, "overcharge": 25 }));
    let request = evolve_sdk::GenerateRequest { prompt: "a red circle".into(), width: 8, height: 8, seed: 1 };
    assert!(matches!(rt.block_on(till.buy(&slot, &request)).unwrap(), Bought::Image(..)));
    assert_eq!(till.budget.lock().unwrap().cost().micro_usd, 65, "the budget counts what was billed");
    let conn = rusqlite::Connection::open(dir.path().join("run/ledger.sqlite")).unwrap();
    let (cost, reason): (i64, String) = conn
        .query_row(
            "SELECT c.cost_micro_usd, a.reason FROM api_calls c JOIN attempts a ON a.request_hash = c.request_hash",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(cost, 65);
    assert!(reason.contains("over its quote"), "{reason}");
    // Nothing more is bought from it: its quotes cannot be trusted to hold the budget.
    let next = evolve_sdk::GenerateRequest { prompt: "a blue square".into(), ..request };
    match rt.block_on(till.buy(&slot, &next)).unwrap() {
        Bought::Failed(PluginError::Quarantined(why)) => assert!(why.contains("over its quote"), "{why}"),
        _ => panic!("an overcharging teacher was bought from again"),
    }
    let faults: i64 = conn.query_row("SELECT count(*) FROM plugin_faults", [], |r| r.get(0)).unwrap();
    assert_eq!(faults, 1);
}

#[test]
fn a_wasm_teacher_and_a_native_judge_answer_through_their_interfaces() {
    let files = files();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ctx = PluginContext::new("t", 0);
    let teacher = registry().teacher(&wasm(&files.flat_teacher_wasm), serde_json::json!({ "micro_usd": 40 }), &ctx);
    let teacher = teacher.unwrap();
    let request = evolve_sdk::GenerateRequest { prompt: "a red circle".into(), width: 24, height: 16, seed: 1 };
    assert_eq!(teacher.price(&request).micro_usd, 40);
    assert_eq!(teacher.limits().concurrency, 1, "one wasm instance serves one call at a time");
    let generated = rt.block_on(teacher.generate(&request)).unwrap();
    assert_eq!((generated.image.width(), generated.image.height()), (24, 16));
    assert_eq!(generated.revised_prompt.as_deref(), Some("a red circle (flat)"));
    assert_eq!(generated.cost.micro_usd, 40);
    let empty = evolve_sdk::GenerateRequest { prompt: String::new(), ..request };
    assert!(matches!(rt.block_on(teacher.generate(&empty)), Err(PluginError::InvalidInput(_))));

    let judge = registry().judge(&native(&files.tally_judge_native), serde_json::json!({}), &ctx).unwrap();
    let images = vec![evolve_sdk::Image::filled(4, 4, [10, 0, 0]), evolve_sdk::Image::filled(4, 4, [200, 0, 0])];
    let compare = evolve_sdk::CompareRequest { prompt: "red".into(), images, seed: 0 };
    let verdict = rt.block_on(judge.compare(&compare)).unwrap();
    assert_eq!(verdict.choice, evolve_sdk::Choice::Best(1));
    let expand = evolve_sdk::ExpandRequest { prompt: "a cat".into(), n: 2, seed: 0, after: None };
    assert_eq!(rt.block_on(judge.expand(&expand)).unwrap(), vec!["a cat #0", "a cat #1"]);
    let mutate = evolve_sdk::MutateRequest { recent: vec!["x".into(), "y".into()], seed: 0, after: None };
    assert_eq!(rt.block_on(judge.mutate(&mutate)).unwrap(), "something new after 2 prompts");
}

// ---------------------------------------------------------------- hostile plugins

#[test]
fn a_judges_nan_confidence_or_phantom_choice_is_its_error_not_a_corrupt_ledger() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let images = vec![evolve_sdk::Image::filled(4, 4, [10, 0, 0]), evolve_sdk::Image::filled(4, 4, [200, 0, 0])];
    let compare = evolve_sdk::CompareRequest { prompt: "red".into(), images, seed: 0 };
    for (hostile, needle) in [("nan_confidence", "confidence is NaN"), ("choice_out_of_range", "chose image 2 of 2")] {
        let config = serde_json::json!({ "hostile": hostile });
        let judge =
            registry().judge(&native(&files().tally_judge_native), config, &PluginContext::new("j", 0)).unwrap();
        match rt.block_on(judge.compare(&compare)) {
            Err(PluginError::Failed(message)) => assert!(message.contains(needle), "{hostile}: {message}"),
            other => panic!("{hostile}: expected the judge's error, got {other:?}"),
        }
    }
}

#[test]
fn an_infinite_loop_times_out_and_is_quarantined() {
    let faults = faults_logged_by("probe/looping");
    let op = registry()
        .operator(
            &wasm(&files().probe_wasm),
            serde_json::json!({ "behaviour": "loop" }),
            &PluginContext::new("looping", 1),
        )
        .expect("the probe builds");
    let reason = quarantined(op.decide(&typical_sample()));
    assert!(reason.contains("exceeded its time limit of 300 ms"), "{reason}");
    // Named as it names itself (`probe`), not by its file (`evolve_probe_wasm.wasm`).
    assert!(reason.contains("wasm plugin `probe/looping`"), "{reason}");
    // Quarantined for good: the next call fails with the same reason without entering the
    // component (entering it would fault, and log a fault, again).
    assert_eq!(quarantined(op.decide(&typical_sample())), reason);
    assert_eq!(faults.load(Ordering::SeqCst), 1, "the looping guest was entered once");
    // The host is fine: a well-behaved instance of the same component still works.
    let fine = probe(wasm(&files().probe_wasm), serde_json::json!({}));
    assert_eq!(fine.decide(&typical_sample()).unwrap(), vec![Action::Expand { n: 3 }]);
}

/// A count of the error events the host logs about the plugin instance `label` (a quarantine
/// logs one per fault), from every thread of this test binary.
fn faults_logged_by(label: &'static str) -> Arc<AtomicUsize> {
    static COUNTER: OnceLock<ErrorCounter> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| ErrorCounter(Arc::new(Mutex::new(Vec::new()))));
    // Global, so that no thread's logging can leave the callsite uninterested; an error is
    // an earlier call having installed it already.
    let _ = tracing::subscriber::set_global_default(counter.clone());
    let count = Arc::new(AtomicUsize::new(0));
    counter.0.lock().unwrap().push((label, Arc::clone(&count)));
    count
}

/// The labels watched, each with its count.
type Watched = Vec<(&'static str, Arc<AtomicUsize>)>;

/// Counts error events by their `plugin` field, for the labels asked about.
#[derive(Clone)]
struct ErrorCounter(Arc<Mutex<Watched>>);

impl tracing::Subscriber for ErrorCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::ERROR
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Plugin(String);
        impl tracing::field::Visit for Plugin {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "plugin" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut plugin = Plugin(String::new());
        event.record(&mut plugin);
        for (label, count) in self.0.lock().unwrap().iter() {
            if plugin.0 == *label {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_guest_asleep_in_a_wasi_call_is_stopped_at_its_time_limit() {
    let op = probe(wasm(&files().probe_wasm), serde_json::json!({ "behaviour": "sleep" }));
    let started = Instant::now();
    let reason = quarantined(op.decide(&typical_sample()));
    assert!(reason.contains("exceeded its time limit of 300 ms"), "{reason}");
    // It asked for 20 s: a wait that was not cut would last them all (the bound leaves a busy
    // machine 50 times the limit, so it is no speed claim).
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let op = probe(wasm(&files().probe_wasm), serde_json::json!({ "behaviour": "memory_bomb" }));
    let reason = quarantined(op.decide(&typical_sample()));
    assert!(reason.contains("exceeded its memory limit of 64 MiB"), "{reason}");
}

#[test]
fn a_wasm_panic_is_a_trap_and_quarantines() {
    let op = probe(wasm(&files().probe_wasm), serde_json::json!({ "behaviour": "panic" }));
    let reason = quarantined(op.decide(&typical_sample()));
    assert!(reason.contains("trapped"), "{reason}");
}

#[test]
fn a_native_panic_is_caught_at_the_boundary() {
    let op = probe(native(&files().probe_native), serde_json::json!({ "behaviour": "panic" }));
    for _ in 0..2 {
        match op.decide(&typical_sample()) {
            Err(PluginError::Failed(message)) => {
                assert!(message.contains("panicked") && message.contains("on purpose"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn network_goes_only_to_allowed_hosts() {
    let port = hello_server();
    for plugin in [wasm(&files().probe_wasm), native(&files().probe_native)] {
        let fetch = |url: String| {
            let op = probe(plugin.clone(), serde_json::json!({ "behaviour": "fetch", "url": url }));
            op.decide(&typical_sample())
        };
        match fetch("http://example.invalid/steal".into()) {
            Err(PluginError::Failed(m)) => {
                assert!(
                    m.contains(
                        "refused: host `example.invalid` port 80 is not in the experiment's [plugins] allow_hosts"
                    ),
                    "{m}"
                )
            }
            other => panic!("{plugin}: {other:?}"),
        }
        // The probe reports a successful fetch as an error carrying the status.
        match fetch(format!("http://127.0.0.1:{port}/")) {
            Err(PluginError::Failed(m)) => assert_eq!(m, "fetched: HTTP 200", "{plugin}"),
            other => panic!("{plugin}: {other:?}"),
        }
    }
}

#[test]
fn a_redirect_never_takes_a_plugin_past_its_allow_list() {
    // 127.0.0.2 is loopback too, but not in the allow-list (127.0.0.1:*).
    let stolen = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nstolen";
    let outside_port = canned_server("127.0.0.2", stolen.into());
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{outside_port}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let port = canned_server("127.0.0.1", redirect);
    for plugin in [wasm(&files().probe_wasm), native(&files().probe_native)] {
        let url = format!("http://127.0.0.1:{port}/");
        let op = probe(plugin.clone(), serde_json::json!({ "behaviour": "fetch", "url": url }));
        match op.decide(&typical_sample()) {
            Err(PluginError::Failed(m)) => assert_eq!(m, "fetched: HTTP 302", "{plugin}: the redirect was followed"),
            other => panic!("{plugin}: {other:?}"),
        }
    }
}

#[test]
fn a_wasm_plugin_reads_only_granted_folders() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, "12345").unwrap();
    let config = serde_json::json!({ "behaviour": "read", "path": file.display().to_string() });
    let read = |settings: PluginSettings| {
        let registry = Registry::builtin().with_settings(&settings);
        let op = registry.operator(&wasm(&files().probe_wasm), config.clone(), &PluginContext::new("r", 0)).unwrap();
        op.decide(&typical_sample()).unwrap_err().to_string()
    };
    let denied = read(settings());
    assert!(denied.contains("cannot read"), "{denied}");
    let granted = read(PluginSettings { read_dirs: vec![dir.path().to_path_buf()], ..settings() });
    assert_eq!(granted, "read 5 bytes");
}

#[test]
fn a_library_with_another_abi_is_refused_by_name() {
    let files = files();
    let error = load_error(native(&files.wrong_abi_native));
    assert!(error.contains("incompatible plugin ABI"), "{error}");
    assert!(error.contains(&files.wrong_abi_native.display().to_string()), "{error}");
    let error = load_error(native(&files.not_a_plugin));
    assert!(error.contains("is not an evolve native plugin"), "{error}");
}

#[test]
fn corrupt_and_foreign_wasm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&files().probe_wasm).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_error(wasm(&truncated)).contains("is not a valid wasm component"));
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "definitely not wasm").unwrap();
    assert!(load_error(wasm(&text)).contains("is not a wasm file"));
    let missing = dir.path().join("missing.wasm");
    assert!(load_error(wasm(&missing)).contains("no such file"));
}

#[test]
fn a_component_built_for_another_wit_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&files().probe_wasm).unwrap();
    // Same length, so the component stays well-formed: only the version it names changes.
    let (from, to) = (b"evolve:plugin/".as_slice(), b"@0.2.0".as_slice());
    let mut patched = 0;
    for i in 0..bytes.len().saturating_sub(from.len() + 16) {
        if !bytes[i..].starts_with(from) {
            continue;
        }
        if let Some(at) = bytes[i..i + from.len() + 16].windows(to.len()).position(|w| w == to) {
            bytes[i + at..i + at + to.len()].copy_from_slice(b"@0.9.0");
            patched += 1;
        }
    }
    assert!(patched > 0);
    let path = dir.path().join("future.wasm");
    std::fs::write(&path, bytes).unwrap();
    let error = load_error(wasm(&path));
    assert!(error.contains("evolve:plugin@0.9.0") && error.contains("evolve:plugin@0.2.0"), "{error}");
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&files().probe_wasm).unwrap();
    // An interface no host provides, in place of one every Rust component imports.
    let (from, to) = (b"wasi:cli/environment@".as_slice(), b"wasi:cli/environmenz@".as_slice());
    let mut patched = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if bytes[i..].starts_with(from) {
            bytes[i..i + to.len()].copy_from_slice(to);
            patched += 1;
        }
    }
    assert!(patched > 0);
    let path = dir.path().join("foreign-import.wasm");
    std::fs::write(&path, bytes).unwrap();
    let error = load_error(wasm(&path));
    assert!(error.contains("imports `wasi:cli/environmenz@") && error.contains("does not give plugins"), "{error}");
    assert!(!error.contains("trapped"), "a link error is not a trap: {error}");
}

#[test]
fn a_plugin_of_the_wrong_kind_is_refused() {
    let error = registry()
        .teacher(&wasm(&files().wasm_operator), serde_json::json!({}), &PluginContext::new("t", 0))
        .err()
        .expect("an operator is not a teacher")
        .to_string();
    assert!(error.contains("is not a teacher plugin"), "{error}");
}

// ---------------------------------------------------------------- the command line

fn evolve() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evolve"));
    command.current_dir(root());
    command
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn plugins_lists_a_folder_and_caches_compiled_components() {
    let files = files();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for file in [&files.native_teacher, &files.wasm_operator, &files.wrong_abi_native] {
        std::fs::copy(file, plugins.join(file.file_name().unwrap())).unwrap();
    }
    let cache = dir.path().join("cache");
    let output =
        evolve().args(["plugins", "--json", "--dir"]).arg(&plugins).env("EVOLVE_CACHE_DIR", &cache).output().unwrap();
    assert!(!output.status.success(), "a broken file makes the listing fail");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let find = |name: &str| list.iter().find(|e| e["name"] == name).cloned().unwrap_or_default();
    assert_eq!(find("images-api")["origin"], "native");
    assert_eq!(find("images-api")["kind"], "teacher");
    assert_eq!(find("add-constraint")["origin"], "wasm");
    assert!(list.iter().any(|e| e["error"].as_str().is_some_and(|m| m.contains("incompatible plugin ABI"))));
    let cached = std::fs::read_dir(cache.join("wasm")).unwrap().count();
    assert_eq!(cached, 1, "one compiled component in the cache");
    // The schema a plugin ships, as `evolve schema` prints it for a file.
    let output = evolve().arg("schema").arg(&files.wasm_operator).env("EVOLVE_CACHE_DIR", &cache).output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(schema["properties"]["constraints"].is_object(), "{schema}");
}

#[test]
fn the_plugin_example_experiment_is_valid_once_the_plugins_are_built() {
    files();
    let output = evolve().args(["check", "examples/plugins/evolve.toml"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn check_validates_an_external_plugins_config_against_its_schema() {
    let files = files();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    let plugin = dir.path().join("ops").join("constraint.wasm");
    std::fs::create_dir(plugin.parent().unwrap()).unwrap();
    std::fs::copy(&files.wasm_operator, &plugin).unwrap();
    let body = |config: &str| {
        format!(
            "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n[judge]\n\
             plugin = \"shapes\"\n[[operators]]\nplugin = {{ wasm = \"ops/constraint.wasm\" }}\nconfig = {config}\n"
        )
    };
    std::fs::write(&exp, body("{ constraints = [\"above a cat\"], rate = 2.0 }")).unwrap();
    let output = evolve().arg("check").arg(&exp).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("operators[0].config.rate") && stderr.contains("exp.toml:11:50"), "{stderr}");
    std::fs::write(&exp, body("{ constraints = [\"above a cat\"] }")).unwrap();
    let output = evolve().arg("check").arg(&exp).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::write(&exp, body("{}").replace("ops/constraint.wasm", "ops/missing.wasm")).unwrap();
    let output = evolve().arg("check").arg(&exp).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot load the plugin") && stderr.contains("no such file"), "{stderr}");
}
