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

fn serve(rt: &tokio::runtime::Runtime, app: Router<Arc<Bill>>, bill: &Arc<Bill>) -> String {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    bill.base.set(base.clone()).unwrap();
    let app = app.with_state(Arc::clone(bill));
    rt.spawn(async move { axum::serve(listener, app).await });
    base
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn ledger_totals(run: &Path) -> (i64, i64, i64) {
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let delivered: i64 = conn.query_row("SELECT count(*) FROM api_calls", [], |r| r.get(0)).unwrap();
    let charged: i64 = conn.query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
    let micro: i64 = conn
        .query_row(
            "SELECT (SELECT coalesce(sum(cost_micro_usd), 0) FROM api_calls)
                  + (SELECT coalesce(sum(quoted_micro_usd), 0) FROM attempts)",
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

#[test]
fn a_refused_attempt_costs_nothing_and_one_timed_out_after_acceptance_is_counted() {
    let rt = runtime();
    let bill = Arc::new(Bill::default());
    let base = serve(&rt, Router::new().route("/v1/images/generations", post(refuse_then_stall_then_answer)), &bill);
    let dir = tempfile::tempdir().unwrap();
    let till = till(&dir.path().join("run"), None);

    let bought = rt.block_on(till.buy(&openai_slot(&base), &request())).unwrap();
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
    let rt = runtime();
    let bill = Arc::new(Bill::default());
    let base = serve(&rt, Router::new().route("/v1/images/generations", post(refuse_then_stall_then_answer)), &bill);
    let dir = tempfile::tempdir().unwrap();
    // Room for one call: the stalled one takes it, so no third request is sent.
    let till = till(&dir.path().join("run"), Some(Cost::from_usd(0.015)));

    let bought = rt.block_on(till.buy(&openai_slot(&base), &request())).unwrap();
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
