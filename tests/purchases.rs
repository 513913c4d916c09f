//! What a provider bills is what the ledger records, within the budget: providers on loopback
//! that bill every request they accept, reconciled against the run's ledger after refusals,
//! time-outs after acceptance, and `kill -9` between a queued job's acceptance and its commit.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use evolve_core::budget::Budget;
use evolve_core::purchase::{Bought, TeacherSlot, Till};
use evolve_core::registry::Registry;
use evolve_core::store::RunDir;
use evolve_sdk::http::{base64_encode, encode_png};
use evolve_sdk::{Cost, GenerateRequest, Image};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const KEY_ENV: &str = "EVOLVE_TEST_BILLING_KEY";

/// A provider's bill: requests it accepted (and charged), and requests it refused.
#[derive(Default)]
struct Bill {
    base: OnceLock<String>,
    requests: AtomicU32,
    billed: AtomicU32,
    /// Queued jobs finish only once this is set.
    release: AtomicBool,
}

fn png() -> Vec<u8> {
    encode_png(&Image::filled(32, 32, [200, 30, 30])).unwrap()
}

/// A provider whose replies name its own address.
trait Served: Send + Sync + 'static {
    fn base(&self) -> &OnceLock<String>;
}

impl Served for Bill {
    fn base(&self) -> &OnceLock<String> {
        &self.base
    }
}

impl Served for Faulty {
    fn base(&self) -> &OnceLock<String> {
        &self.base
    }
}

/// Serves `app` with `provider`'s state on a free loopback port; its base URL.
fn serve<P: Served>(rt: &tokio::runtime::Runtime, app: Router<Arc<P>>, provider: &Arc<P>) -> String {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    provider.base().set(base.clone()).unwrap();
    let app = app.with_state(Arc::clone(provider));
    rt.spawn(async move { axum::serve(listener, app).await });
    base
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn ledger_totals(run: &Path) -> (i64, i64, i64) {
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let delivered: i64 = conn.query_row("SELECT count(*) FROM api_calls", [], |r| r.get(0)).unwrap();
    let charged: i64 =
        conn.query_row("SELECT count(*) FROM attempts WHERE state != 'delivered'", [], |r| r.get(0)).unwrap();
    let micro: i64 = conn
        .query_row(
            "SELECT (SELECT coalesce(sum(cost_micro_usd), 0) FROM api_calls)
                  + (SELECT coalesce(sum(quoted_micro_usd), 0) FROM attempts WHERE state != 'delivered')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (delivered, charged, micro)
}

/// An OpenAI-style images endpoint: the first request is refused (503, not billed), the second
/// is billed and answered too late for the client, the rest are billed and answered.
async fn refuse_then_stall_then_answer(State(bill): State<Arc<Bill>>) -> axum::response::Response {
    match bill.requests.fetch_add(1, SeqCst) {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        1 => {
            bill.billed.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            axum::Json(json!({ "data": [{ "b64_json": base64_encode(&png()) }] })).into_response()
        }
        _ => {
            bill.billed.fetch_add(1, SeqCst);
            axum::Json(json!({ "data": [{ "b64_json": base64_encode(&png()) }] })).into_response()
        }
    }
}

fn openai_slot(base: &str) -> TeacherSlot {
    let config = json!({ "base_url": format!("{base}/v1"), "model": "test", "price_usd": 0.01, "timeout_s": 1 });
    let teacher =
        Registry::builtin().teacher(&"openai".into(), config, &evolve_sdk::PluginContext::new("t", 0)).unwrap();
    TeacherSlot::new("t".into(), Arc::from(teacher))
}

fn till(run: &Path, max_cost: Option<Cost>) -> Till {
    let run = RunDir::create(run, "[run]\nname = \"purchases\"\n").unwrap();
    Till { run: Arc::new(Mutex::new(run)), budget: Arc::new(Mutex::new(Budget::new(None, max_cost, 0, Cost::ZERO))) }
}

fn request() -> GenerateRequest {
    GenerateRequest { prompt: "a red circle".into(), width: 32, height: 32, seed: 1 }
}

/// Buys one request from the refuse-then-stall-then-answer provider into a fresh run within
/// `max_cost`: what was bought, the provider's bill, the till, and the run's folder.
fn buy_from_a_stalling_provider(max_cost: Option<Cost>) -> (Bought, Arc<Bill>, Till, tempfile::TempDir) {
    let rt = runtime();
    let bill = Arc::new(Bill::default());
    let base = serve(&rt, Router::new().route("/v1/images/generations", post(refuse_then_stall_then_answer)), &bill);
    let dir = tempfile::tempdir().unwrap();
    let till = till(&dir.path().join("run"), max_cost);
    let bought = rt.block_on(till.buy(&openai_slot(&base), &request())).unwrap();
    (bought, bill, till, dir)
}

#[test]
fn a_refused_attempt_costs_nothing_and_one_timed_out_after_acceptance_is_counted() {
    let (bought, bill, till, dir) = buy_from_a_stalling_provider(None);
    assert!(matches!(bought, Bought::Image(..)), "the third attempt delivers");
    // Billed: the stalled request and the answered one. Recorded: the same two, one with its
    // image and one charged at its quote, with the budget agreeing.
    assert_eq!(bill.billed.load(SeqCst), 2);
    let (delivered, charged, micro) = ledger_totals(&dir.path().join("run"));
    assert_eq!((delivered, charged, micro), (1, 1, 20_000));
    let budget = till.budget.lock().unwrap();
    assert_eq!((budget.calls(), budget.cost()), (2, Cost::from_usd(0.02)));
}

#[test]
fn a_budget_counts_attempts_that_may_have_been_billed() {
    // Room for one call: the stalled one takes it, so no third request is sent.
    let (bought, bill, _, dir) = buy_from_a_stalling_provider(Some(Cost::from_usd(0.015)));
    assert!(matches!(bought, Bought::OverBudget));
    assert_eq!((bill.requests.load(SeqCst), bill.billed.load(SeqCst)), (2, 1));
    assert_eq!(ledger_totals(&dir.path().join("run")), (0, 1, 10_000));
}

// ------------------------------------------------------- kill -9 between acceptance and commit

/// A BFL-style queue: every submission is billed and queued; its result is ready once released.
fn bfl_queue() -> Router<Arc<Bill>> {
    let submit = |State(bill): State<Arc<Bill>>| async move {
        let id = bill.requests.fetch_add(1, SeqCst);
        bill.billed.fetch_add(1, SeqCst);
        let base = bill.base.get().unwrap();
        axum::Json(json!({ "id": id, "polling_url": format!("{base}/v1/get_result?id={id}") })).into_response()
    };
    let poll = |State(bill): State<Arc<Bill>>| async move {
        if !bill.release.load(SeqCst) {
            return axum::Json(json!({ "status": "Pending" })).into_response();
        }
        let sample = format!("{}/files/sample.png", bill.base.get().unwrap());
        axum::Json(json!({ "status": "Ready", "result": { "sample": sample } })).into_response()
    };
    let file = || async { ([(header::CONTENT_TYPE, "image/png")], png()).into_response() };
    Router::new()
        .route("/v1/flux-dev", post(submit))
        .route("/v1/get_result", get(poll))
        .route("/files/sample.png", get(file))
}

/// Jobs the run has written down as accepted by the provider.
fn accepted(run: &Path) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(run.join("ledger.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM attempts WHERE state = 'accepted'", [], |r| r.get(0)).unwrap_or(0)
}

fn evolve() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut command = Command::new(env!("CARGO_BIN_EXE_evolve"));
    command.current_dir(root).env(KEY_ENV, "k");
    command
}

#[test]
fn a_run_killed_while_its_jobs_are_queued_collects_them_on_resume_instead_of_buying_again() {
    let rt = runtime();
    let bill = Arc::new(Bill::default());
    let base = serve(&rt, bfl_queue(), &bill);
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<String> = (0..6).map(|i| format!("a red circle number {i}")).collect();
    std::fs::write(dir.path().join("prompts.txt"), prompts.join("\n")).unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
[run]
name = "queued"
[base_model]
plugin = "dit"
config = {{ preset = "tiny" }}
[[teachers]]
plugin = "bfl"
config = {{ base_url = "{base}/v1", model = "flux-dev", api_key = {{ env = "{KEY_ENV}" }}, price_usd = 0.02, poll_ms = 20 }}
[judge]
plugin = "shapes"
[prompts]
file = "prompts.txt"
generate = 0
[budget]
max_steps = 2
"#
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let args = ["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()];

    let mut child = evolve().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while accepted(&run) < 6 {
        assert!(started.elapsed() < Duration::from_secs(60), "the six jobs were never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed with six paid jobs queued: all six are in the ledger, counted at their quotes.
    assert_eq!(ledger_totals(&run), (0, 6, 120_000));

    bill.release.store(true, SeqCst);
    let resumed = evolve().args(args).arg("--resume").output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(bill.billed.load(SeqCst), 6, "a queued job was bought again instead of collected");
    assert_eq!(ledger_totals(&run), (6, 0, 120_000));
}

// ------------------------------------------------------------------------------------ the soak

/// A BFL-style provider at its worst: submissions refused now and then (429, 503: not billed) or
/// accepted and answered after the client's time-out, polls failing (500) or broken off, results
/// that are slow, unavailable for a while, or corrupt (billed, unusable). Every accepted
/// submission is billed; its id is on the bill.
struct Faulty {
    base: OnceLock<String>,
    requests: AtomicU32,
    billed: Mutex<Vec<u32>>,
    faults: AtomicU32,
    /// Each accepted job's prompt, rendered by the embedded world when its result is fetched, so
    /// that the judge finds the model wanting and the director keeps buying.
    prompts: Mutex<std::collections::HashMap<u32, String>>,
    world: Box<dyn evolve_sdk::Teacher>,
}

impl Default for Faulty {
    fn default() -> Self {
        let ctx = evolve_sdk::PluginContext::new("world", 0);
        let world = Registry::builtin().teacher(&"shapes".into(), json!({}), &ctx).unwrap();
        Faulty {
            base: OnceLock::new(),
            requests: AtomicU32::new(0),
            billed: Mutex::new(vec![]),
            faults: AtomicU32::new(0),
            prompts: Mutex::new(Default::default()),
            world,
        }
    }
}

impl Faulty {
    fn fault(&self) -> bool {
        self.faults.fetch_add(1, SeqCst);
        true
    }
}

/// Deterministic pseudo-random fault choice for the `n`th request of a route.
fn roll(n: u32, salt: u32) -> u32 {
    (n.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)).rotate_left(13) % 100
}

fn faulty_provider() -> Router<Arc<Faulty>> {
    let submit = |State(p): State<Arc<Faulty>>, body: String| async move {
        let n = p.requests.fetch_add(1, SeqCst);
        match roll(n, 1) {
            0..=7 if p.fault() => {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")], "slow down").into_response()
            }
            8..=15 if p.fault() => (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response(),
            // Accepted and billed, but answered after the client gave up: its outcome is unknown.
            16..=20 if p.fault() => {
                p.billed.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                axum::Json(json!({ "id": n, "polling_url": "late" })).into_response()
            }
            _ => {
                p.billed.lock().unwrap().push(n);
                let input: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let prompt = input["prompt"].as_str().unwrap_or("a red circle").to_string();
                p.prompts.lock().unwrap().insert(n, prompt);
                let base = p.base.get().unwrap();
                axum::Json(json!({ "id": n, "polling_url": format!("{base}/v1/get_result?id={n}") })).into_response()
            }
        }
    };
    let poll = |State(p): State<Arc<Faulty>>, axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
        let id: u32 = query.as_deref().and_then(|q| q.strip_prefix("id=")).and_then(|i| i.parse().ok()).unwrap_or(0);
        let n = p.requests.fetch_add(1, SeqCst);
        match roll(n, 2) {
            0..=9 if p.fault() => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
            10..=17 if p.fault() => {
                ([(header::CONTENT_TYPE, "application/json")], "{\"status\": \"Rea").into_response()
            }
            18..=49 => axum::Json(json!({ "status": "Pending" })).into_response(),
            _ => {
                let sample = format!("{}/files/{id}.png", p.base.get().unwrap());
                axum::Json(json!({ "status": "Ready", "result": { "sample": sample } })).into_response()
            }
        }
    };
    let file = |State(p): State<Arc<Faulty>>, axum::extract::Path(name): axum::extract::Path<String>| async move {
        let id: u32 = name.trim_end_matches(".png").parse().unwrap_or(0);
        let n = p.requests.fetch_add(1, SeqCst);
        match roll(n, 3) {
            0..=9 if p.fault() => (StatusCode::SERVICE_UNAVAILABLE, "result store busy").into_response(),
            // Corrupt for good for some results: billed, unusable.
            _ if id % 23 == 5 && p.fault() => {
                ([(header::CONTENT_TYPE, "image/png")], b"not a png".to_vec()).into_response()
            }
            10..=14 if p.fault() => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([(header::CONTENT_TYPE, "image/png")], png()).into_response()
            }
            _ => {
                let prompt = p.prompts.lock().unwrap().get(&id).cloned().unwrap_or_default();
                let request = GenerateRequest { prompt, width: 32, height: 32, seed: u64::from(id) };
                match p.world.generate(&request).await {
                    Ok(image) => {
                        ([(header::CONTENT_TYPE, "image/png")], encode_png(&image.image).unwrap()).into_response()
                    }
                    Err(_) => ([(header::CONTENT_TYPE, "image/png")], png()).into_response(),
                }
            }
        }
    };
    Router::new()
        .route("/v1/flux-dev", post(submit))
        .route("/v1/get_result", get(poll))
        .route("/files/{name}", get(file))
}

#[test]
fn soak_twenty_kills_against_a_faulty_provider_lose_nothing_and_pay_nothing_twice() {
    let rt = runtime();
    let provider = Arc::new(Faulty::default());
    let base = serve(&rt, faulty_provider(), &provider);

    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
[run]
name = "soak"
seed = 2
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "bfl"
config = {{ base_url = "{base}/v1", model = "flux-dev", api_key = {{ env = "{KEY_ENV}" }}, price_usd = 0.01, poll_ms = 20, request_timeout_s = 1 }}
[judge]
plugin = "shapes"
# No deletion: the provider's flat images never teach the model, and the set must not empty.
[[operators]]
plugin = "discrimination"
[[operators]]
plugin = "expansion"
[[operators]]
plugin = "mutation"
config = {{ mutation_ratio = 0.5 }}
[prompts]
generate = 16
[training]
batch_size = 8
checkpoint_every = 10
[director]
every_steps = 10
select_ratio = 0.5
[budget]
max_cost_usd = 0.8
max_steps = 600
"#
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut kills = 0;
    for cycle in 0..22u32 {
        let mut command = evolve();
        command.arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet");
        if run.join("ledger.sqlite").exists() {
            command.arg("--resume");
        }
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300 + u64::from(roll(cycle, 4)) * 20));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
    }
    let last = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).args(["--resume", "--quiet"]).output().unwrap();
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));

    let billed: Vec<u32> = provider.billed.lock().unwrap().clone();
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let jobs: Vec<u32> = {
        let mut statement = conn.prepare("SELECT job FROM attempts WHERE job IS NOT NULL").unwrap();
        let rows = statement.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|job| job.unwrap().rsplit('=').next().unwrap().parse().unwrap()).collect()
    };
    let jobless_charged: usize = conn
        .query_row("SELECT count(*) FROM attempts WHERE job IS NULL AND state = 'charged'", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize;
    let unique: std::collections::HashSet<u32> = jobs.iter().copied().collect();
    let duplicates = jobs.len() - unique.len();
    let unrecorded = billed.iter().filter(|id| !unique.contains(id)).count();
    let (_, counted, micro) = ledger_totals(&run);
    let delivered: i64 = conn.query_row("SELECT count(*) FROM api_calls", [], |r| r.get(0)).unwrap();
    let report = RunDir::open(&run).unwrap().check().unwrap();
    println!(
        "soak: {kills} kills, {} requests, {} faults injected, {} billed, {delivered} delivered, {counted} charged \
         without an image, {duplicates} duplicates, {unrecorded} billed before their job was written down \
         (counted as {jobless_charged} jobless charged attempts), ${:.2} counted",
        provider.requests.load(SeqCst),
        provider.faults.load(SeqCst),
        billed.len(),
        micro as f64 / 1e6
    );
    assert!(kills >= 20, "only {kills} kills landed");
    assert_eq!(duplicates, 0, "a job is in the ledger twice");
    assert!(jobs.iter().all(|id| billed.contains(id)), "the ledger holds a job the provider never billed");
    assert!(unrecorded <= jobless_charged, "a billed request is not counted in the ledger");
    assert!(micro <= 800_000, "counted ${} over the $0.80 budget", micro as f64 / 1e6);
    assert!(billed.len() <= 80, "the provider billed {} calls, over the $0.80 budget", billed.len());
    assert!(report.is_consistent(), "a paid image is missing: {:?}", report.problems);
}
