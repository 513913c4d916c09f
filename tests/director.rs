//! End-to-end: `evolve run` — the director — through the real binary: rounds judge and evolve
//! the set, several teachers compete, budgets stop the run exactly, and `kill -9` at any moment
//! followed by `--resume` loses nothing and pays for nothing twice.

use rusqlite::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod support;

use support::{calls_counted, count, evolve, ok};

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rounds_evolve_the_set_two_teachers_compete_and_the_budget_stops_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        r#"
[run]
name = "director-e2e"
seed = 5

[base_model]
plugin = "dit"
config = { preset = "tiny", sample_steps = 4 }

[[teachers]]
name = "exact"
plugin = "shapes"

[[teachers]]
name = "sloppy"
plugin = "shapes"
config = { sloppiness = 0.8 }

[judge]
plugin = "shapes"

[eval]
plugin = "shapes"

[prompts]
generate = 12

[training]
batch_size = 8
checkpoint_every = 40

[director]
every_steps = 20
select_ratio = 0.5

[budget]
max_teacher_calls = 60
max_steps = 120
"#,
    );
    let run = dir.path().join("run");
    let out = evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("ShapesEval") && stdout.contains("overall"), "{stdout}");
    assert!(stdout.contains("trainer busy"), "{stdout}");
    assert!(stdout.contains("teacher exact"), "{stdout}");

    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    // The budget is met exactly, never exceeded, though rounds wanted more.
    assert_eq!(count(&conn, "SELECT count(*) FROM api_calls"), 60);
    // Rounds ran every 20 steps and recorded what they did.
    let rounds = count(&conn, "SELECT count(*) FROM rounds WHERE finished_at IS NOT NULL");
    assert!(rounds >= 5, "{rounds} rounds");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM judgments"),
        count(&conn, "SELECT sum(selected) FROM rounds"),
        "one judgment per selected sample"
    );
    assert!(count(&conn, "SELECT count(*) FROM samples WHERE origin = 'expansion' AND parent_id IS NOT NULL") > 0);
    assert_eq!(
        count(&conn, "SELECT sum(added) FROM rounds"),
        count(&conn, "SELECT count(*) FROM samples WHERE round_added IS NOT NULL")
    );
    assert_eq!(
        count(&conn, "SELECT sum(deactivated) FROM rounds"),
        count(&conn, "SELECT count(*) FROM samples WHERE active = 0")
    );
    // Every paid image is kept; the exact teacher beats the sloppy one.
    assert_eq!(count(&conn, "SELECT count(*) FROM candidates"), 60);
    let wins = |t: &str| count(&conn, &format!("SELECT coalesce(sum(won), 0) FROM candidates WHERE teacher = '{t}'"));
    assert!(wins("exact") > wins("sloppy"), "exact {} vs sloppy {}", wins("exact"), wins("sloppy"));
    for metric in ["loss", "trainer_busy", "round/teacher_win_rate", "teacher_win_rate/exact", "eval/overall"] {
        assert!(count(&conn, &format!("SELECT count(*) FROM metrics WHERE name = '{metric}'")) > 0, "{metric}");
    }
    assert_eq!(count(&conn, "SELECT max(step) FROM metrics WHERE name = 'loss'"), 120, "stops at max_steps");
}

/// The provider's books: (prompt, seed) of every call the teacher billed.
fn invoice(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("invoice line {l:?}: {e}"));
            (v["prompt"].as_str().unwrap().to_string(), v["seed"].as_u64().unwrap())
        })
        .collect()
}

/// The run's books: (prompt, seed) of every call recorded as paid.
fn recorded(run: &Path) -> HashSet<(String, u64)> {
    let Ok(conn) = Connection::open(run.join("ledger.sqlite")) else { return HashSet::new() };
    let mut stmt = match conn.prepare("SELECT request FROM api_calls") {
        Ok(stmt) => stmt,
        Err(_) => return HashSet::new(),
    };
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.unwrap()).unwrap();
            (v["prompt"].as_str().unwrap().to_string(), v["seed"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn kill_nine_at_any_moment_then_resume_loses_nothing_and_pays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bill = dir.path().join("invoice.jsonl");
    let exp = write(
        dir.path(),
        &format!(
            r#"
[run]
name = "kill-resume"
seed = 9

[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 3 }}

[[teachers]]
plugin = "shapes"
config = {{ latency_ms = 40, concurrency = 4, invoice = "{}" }}

[judge]
plugin = "shapes"

[prompts]
generate = 24

[training]
batch_size = 8
checkpoint_every = 15

[director]
every_steps = 15
select_ratio = 0.5

[budget]
max_teacher_calls = 90
max_steps = 150
"#,
            bill.display()
        ),
    );
    let run = dir.path().join("run");
    let mut kills = 0;
    for delay_ms in [900u64, 2600, 1700, 4100, 3100] {
        let before = recorded(&run);
        let billed_before = invoice(&bill).len();
        let mut command = evolve();
        command.arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet");
        if run.join("ledger.sqlite").exists() {
            command.arg("--resume");
        }
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        kills += usize::from(!finished);
        // Nothing recorded before this process started was billed again by it.
        let again: Vec<_> = invoice(&bill)[billed_before..].iter().filter(|c| before.contains(*c)).cloned().collect();
        assert!(again.is_empty(), "paid twice after resume: {again:?}");
        // Whatever was recorded is still recorded, and the store is consistent.
        let after = recorded(&run);
        assert!(before.is_subset(&after), "a recorded call was lost");
        if run.join("ledger.sqlite").exists() {
            let store = evolve_core::store::RunDir::open(&run).unwrap();
            let report = store.check().unwrap();
            assert!(report.is_consistent(), "{:?}", report.problems);
        }
    }
    assert!(kills >= 3, "only {kills} kills landed; the test proved little");

    let before = recorded(&run);
    let billed_before = invoice(&bill).len();
    let out = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).args(["--resume", "--quiet"]).output().unwrap();
    ok(&out);
    let again: Vec<_> = invoice(&bill)[billed_before..].iter().filter(|c| before.contains(*c)).cloned().collect();
    assert!(again.is_empty(), "paid twice after resume: {again:?}");

    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    // The budget is met exactly across restarts: delivered calls, plus the attempts a kill left in
    // flight (the provider may have billed them, so they are counted at their quote).
    let (counted, _) = calls_counted(&conn);
    assert_eq!(counted, 90, "the budget is met exactly across restarts");
    assert!(invoice(&bill).len() as i64 <= counted, "the provider billed more than the run counted");
    assert_eq!(count(&conn, "SELECT max(step) FROM metrics WHERE name = 'loss'"), 150);
    // Every call the run recorded was billed by the provider, and every pending prompt that
    // was bought became a sample.
    let billed: HashSet<_> = invoice(&bill).into_iter().collect();
    assert!(recorded(&run).is_subset(&billed));
    assert_eq!(
        count(&conn, "SELECT count(*) FROM pending WHERE sample_id IS NOT NULL"),
        count(&conn, "SELECT count(*) FROM samples")
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM rounds WHERE finished_at IS NULL"), 0);
}

#[test]
fn a_teacher_that_panics_costs_its_calls_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        r#"
[run]
name = "panicky"
seed = 9

[base_model]
plugin = "dit"
config = { preset = "tiny", depth = 2, sample_steps = 2 }

[[teachers]]
plugin = "shapes"
config = { panic_rate = 0.3 }

[judge]
plugin = "shapes"

[prompts]
generate = 16

[training]
batch_size = 4
checkpoint_every = 20

[director]
every_steps = 10
select_ratio = 0.5

[budget]
max_teacher_calls = 40
max_steps = 40
"#,
    );
    let run = dir.path().join("run");
    let out = evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    ok(&out);
    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    let dropped = count(&conn, "SELECT count(*) FROM pending WHERE dropped LIKE '%panicked%'");
    assert!(dropped > 0, "no panic was contained (or none injected)");
    assert!(count(&conn, "SELECT count(*) FROM samples") > 0);
}

/// Steps the trainer took while a round was running: `loss` records (every 10 steps) after the
/// round's step, written before the round finished.
fn steps_during_rounds(run: &Path) -> i64 {
    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    count(
        &conn,
        "SELECT count(*) FROM metrics m JOIN rounds r
         WHERE m.name = 'loss' AND m.step > r.step AND m.recorded_at < r.finished_at",
    )
}

#[test]
fn in_lockstep_training_waits_for_each_round_and_otherwise_trains_through_it() {
    let dir = tempfile::tempdir().unwrap();
    // A slow teacher makes every round's purchases take seconds: time enough for many steps.
    let text = |lockstep: bool| {
        format!(
            r#"
[run]
name = "lockstep"
seed = 3
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
config = {{ latency_ms = 400, concurrency = 1 }}
[judge]
plugin = "shapes"
[prompts]
generate = 6
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 20
select_ratio = 1.0
lockstep = {lockstep}
[budget]
max_teacher_calls = 30
max_steps = 100
"#
        )
    };
    let mut during = vec![];
    for lockstep in [false, true] {
        let exp = dir.path().join(format!("lockstep-{lockstep}.toml"));
        std::fs::write(&exp, text(lockstep)).unwrap();
        let run = dir.path().join(format!("run-{lockstep}"));
        ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
        let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
        assert!(count(&conn, "SELECT count(*) FROM rounds WHERE added > 0") > 0, "rounds bought nothing");
        if lockstep {
            assert_eq!(count(&conn, "SELECT count(*) FROM rounds WHERE step % 20 != 0"), 0, "rounds off their step");
        }
        during.push(steps_during_rounds(&run));
    }
    assert!(during[0] > 0, "without lockstep the trainer trains on while the teacher works");
    assert_eq!(during[1], 0, "in lockstep it waits for every round");
}

/// What a run decided and learned: its samples in id order, its judgments (with the base
/// model's renders), its losses and its final weights.
fn replay_record(run: &Path) -> (Vec<String>, Vec<String>, Vec<String>, Vec<u8>) {
    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    let samples = rows(
        "SELECT s.id || '|' || p.text || '|' || s.teacher || '|' || s.origin || '|' || ifnull(s.parent_id, '')
                || '|' || s.active || '|' || ifnull(s.round_added, '')
         FROM samples s JOIN prompts p ON p.id = s.prompt_id ORDER BY s.id",
    );
    let judgments = rows(
        "SELECT round_id || '|' || sample_id || '|' || outcome || '|' || base_image_hash FROM judgments ORDER BY id",
    );
    let losses = rows("SELECT step || '|' || value FROM metrics WHERE name = 'loss' ORDER BY step");
    let weights = std::fs::read(run.join("checkpoints/step-000000060/model.safetensors")).unwrap();
    (samples, judgments, losses, weights)
}

#[test]
fn a_lockstep_run_replays_from_its_seed_whichever_purchase_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    // Two teachers at different speeds, concurrent purchases and judgments, and a call limit
    // that runs out in the middle of the first round's purchases: every place where the order
    // things finish in could leak into the set.
    let exp = write(
        dir.path(),
        r#"
[run]
name = "replay"
seed = 6
[base_model]
plugin = "dit"
config = { preset = "tiny", sample_steps = 2 }
[[teachers]]
plugin = "shapes"
name = "slow"
config = { latency_ms = 3 }
[[teachers]]
plugin = "shapes"
name = "fast"
[judge]
plugin = "shapes"
[prompts]
generate = 30
[training]
batch_size = 8
checkpoint_every = 1000
[director]
every_steps = 20
select_ratio = 1.0
lockstep = true
[budget]
max_teacher_calls = 150
max_steps = 60
"#,
    );
    let records: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let run = dir.path().join(name);
            ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
            replay_record(&run)
        })
        .collect();
    let (samples, judgments, losses, _) = &records[0];
    assert_eq!(samples.len(), 75, "the call limit buys 75 prompts from both teachers");
    assert!(samples.iter().any(|s| s.contains("|expansion|")), "rounds bought expansions");
    assert!(!judgments.is_empty() && losses.len() >= 6);
    assert_eq!(records[0].0, records[1].0, "the same samples, in the same order");
    assert_eq!(records[0].1, records[1].1, "the same judgments");
    assert_eq!(records[0].2, records[1].2, "the same losses");
    assert!(records[0].3 == records[1].3, "the same final weights");
}

#[test]
fn paced_spending_shares_the_budget_over_the_rounds_instead_of_spending_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let text = |spend: &str| {
        format!(
            r#"
[run]
name = "paced"
seed = 4
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "shapes"
[prompts]
generate = 10
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 20
select_ratio = 1.0
spend = "{spend}"
[budget]
max_teacher_calls = 60
max_steps = 120
"#
        )
    };
    let mut added_per_round = vec![];
    for spend in ["as_asked", "paced"] {
        let exp = dir.path().join(format!("{spend}.toml"));
        std::fs::write(&exp, text(spend)).unwrap();
        let run = dir.path().join(spend);
        ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
        let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
        let mut query = conn.prepare("SELECT added FROM rounds ORDER BY step").unwrap();
        let added: Vec<i64> = query.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(added.len(), 5, "rounds at steps 20, 40, 60, 80 and 100: {added:?}");
        added_per_round.push(added);
    }
    let (greedy, paced) = (&added_per_round[0], &added_per_round[1]);
    // An untrained model fails everything: left alone, the first two rounds spend it all.
    assert!(greedy[0] > 20, "about 3 variations of each of the 10 seeds: {greedy:?}");
    assert_eq!(greedy[0] + greedy[1], 50, "{greedy:?}");
    assert_eq!(greedy[2..], [0, 0, 0], "{greedy:?}");
    // Paced, the 50 calls left are spent 10 a round (each round's share of what is left).
    assert_eq!(paced[0], 10, "{paced:?}");
    assert!(paced.iter().all(|&a| a <= 13), "{paced:?}");
    assert!(paced[4] > 0, "the last round still buys: {paced:?}");
    let conn = Connection::open(dir.path().join("paced").join("ledger.sqlite")).unwrap();
    assert!(count(&conn, "SELECT count(*) FROM api_calls") <= 60);
}

#[test]
fn paced_spending_without_a_call_or_step_limit_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n[judge]\nplugin = \"shapes\"\n[director]\nspend = \"paced\"\n[budget]\nmax_steps = 10\n",
    );
    let out = evolve().arg("check").arg(&exp).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`paced` spending needs `budget.max_teacher_calls`"), "{stderr}");
    assert!(stderr.contains("director.spend"), "{stderr}");
}

#[test]
fn buying_near_misses_first_without_paced_spending_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let text = |director: &str| {
        format!(
            "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n[judge]\nplugin = \"shapes\"\n[director]\n{director}\n[budget]\nmax_teacher_calls = 10\nmax_steps = 10\n"
        )
    };
    let refused = write(dir.path(), &text("buy_first = \"near_misses\""));
    let out = evolve().arg("check").arg(&refused).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("it needs `spend = \"paced\"`"), "{stderr}");
    assert!(stderr.contains("director.buy_first"), "{stderr}");
    let paced = write(dir.path(), &text("spend = \"paced\"\nbuy_first = \"near_misses\""));
    ok(&evolve().arg("check").arg(&paced).output().unwrap());
}

/// The last value of metric `name`.
fn last_metric(conn: &Connection, name: &str) -> f64 {
    conn.query_row("SELECT value FROM metrics WHERE name = ?1 ORDER BY step DESC LIMIT 1", [name], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn audited(flip_rate: f64, position_bias: f64, on_fail: &str) -> String {
    format!(
        r#"
[run]
name = "audit"
seed = 8
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "shapes"
config = {{ flip_rate = {flip_rate}, position_bias = {position_bias} }}
[[operators]]
plugin = "discrimination"
[prompts]
generate = 60
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_steps = 60
[audit]
swap_share = 1.0
known_share = 1.0
on_fail = "{on_fail}"
"#
    )
}

#[test]
fn the_judge_audit_recovers_the_embedded_judges_flaws() {
    let dir = tempfile::tempdir().unwrap();
    for (flip_rate, position_bias) in [(0.0, 0.0), (0.2, 0.3)] {
        let exp = dir.path().join(format!("audit-{flip_rate}.toml"));
        std::fs::write(&exp, audited(flip_rate, position_bias, "warn")).unwrap();
        let run = dir.path().join(format!("run-{flip_rate}"));
        let stdout = ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
        let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
        // Five rounds of 60 samples, each probed both ways.
        assert_eq!(count(&conn, "SELECT count(*) FROM audit_probes WHERE kind = 'known'"), 300);
        assert_eq!(count(&conn, "SELECT count(*) FROM audit_probes WHERE kind = 'swap'"), 300);
        let figure = |name: &str| {
            let (e, low, high) = (
                last_metric(&conn, &format!("audit/{name}")),
                last_metric(&conn, &format!("audit/{name}_low")),
                last_metric(&conn, &format!("audit/{name}_high")),
            );
            assert!(low <= e && e <= high && high - low < 0.3, "{name}: {e} in {low}..{high}");
            e
        };
        let (bias, error, consistency) = (figure("position_bias"), figure("error_rate"), figure("consistency"));
        if position_bias == 0.0 {
            // The exact judge: never fooled, never swayed by order.
            assert_eq!((bias, error, consistency), (0.0, 0.0, 1.0));
            assert!(!stdout.contains("judge audit failed"), "{stdout}");
        } else {
            // Three standard errors of 150 probes a side.
            assert!((bias - position_bias).abs() < 0.15, "position bias {bias}, set {position_bias}");
            assert!((error - flip_rate).abs() < 0.15, "error rate {error}, set {flip_rate}");
            assert!(consistency < 0.8, "{consistency}");
        }
        let report = std::fs::read_to_string(run.join("report/index.html")).unwrap();
        assert!(report.contains("Judge audit") && report.contains("300 known-answer probes"), "report");
    }
}

#[test]
fn a_judge_that_fails_its_audit_stops_the_run_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("stop.toml");
    std::fs::write(&exp, audited(0.0, 0.9, "stop")).unwrap();
    let run = dir.path().join("run");
    let out = evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Set at 0.9, estimated from one round's swapped pairs: anything from about 0.7 to 1.00.
    assert!(stdout.contains("judge audit failed: position bias "), "{stdout}");
    assert!(stdout.contains("above 0.2"), "{stdout}");
    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM rounds"), 1, "stopped after the first round");
}

#[test]
fn routed_purchases_buy_expansions_from_one_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let text = |selection: &str| {
        format!(
            r#"
[run]
name = "routing"
seed = 6
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
name = "exact"
plugin = "shapes"
config = {{ price_usd = 0.04 }}
[[teachers]]
name = "sloppy"
plugin = "shapes"
config = {{ price_usd = 0.01, sloppiness = 0.8 }}
[judge]
plugin = "shapes"
[prompts]
generate = 10
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
lockstep = true
teacher_selection = "{selection}"
[budget]
max_teacher_calls = 80
max_steps = 40
"#
        )
    };
    for selection in ["parent_winner", "bandit"] {
        let exp = dir.path().join(format!("{selection}.toml"));
        std::fs::write(&exp, text(selection)).unwrap();
        let run = dir.path().join(selection);
        let stdout = ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
        let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
        let bought = |origin: &str, teachers: u32| {
            let sql = format!(
                "SELECT count(*) FROM (SELECT p.id FROM pending p JOIN candidates c ON c.pending_id = p.id
                 WHERE p.origin {origin} GROUP BY p.id HAVING count(*) = {teachers})"
            );
            count(&conn, &sql)
        };
        if selection == "parent_winner" {
            assert_eq!(bought("= 'seed'", 2), 10, "the initial set is a tournament of both");
        } else {
            // Five tournaments first (every teacher needs a record), then the rest routed.
            assert!(bought("= 'seed'", 2) >= 5, "{}", bought("= 'seed'", 2));
            assert!(bought("= 'seed'", 1) > 0, "the initial set's rest is routed");
        }
        let (routed, tournaments) = (bought("!= 'seed'", 1), bought("!= 'seed'", 2));
        assert!(routed > 0, "{selection}: some expansions from one teacher");
        if selection == "parent_winner" {
            assert_eq!(tournaments, 0, "every expansion from its parent's teacher");
            let strays = "SELECT count(*) FROM samples s JOIN samples parent ON parent.id = s.parent_id
                          WHERE s.teacher != parent.teacher";
            assert_eq!(count(&conn, strays), 0);
        }
        // A purchase from one teacher is no tournament: the records count only the real ones.
        let held = count(
            &conn,
            "SELECT count(*) FROM (SELECT pending_id FROM candidates GROUP BY pending_id HAVING count(*) > 1)",
        );
        assert!(stdout.contains(&format!(" of {held:>5} tournaments")), "{held} tournaments:\n{stdout}");
    }
}

/// The processes whose command line mentions `needle` (Linux's /proc).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// `--gpus N` on the CPU: rank 0 runs the director and N-1 `evolve worker` processes train
/// beside it on their shares of each batch; the run finishes, resumes with another number of
/// ranks (every rank loads the checkpoint), and killing rank 0 ends its workers.
#[test]
fn data_parallel_ranks_train_resume_and_end_with_rank_zero() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = |max_steps: u32| {
        format!(
            r#"
[run]
name = "ranks"
seed = 4

[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 3 }}

[[teachers]]
plugin = "shapes"

[judge]
plugin = "shapes"

[prompts]
generate = 24

[training]
batch_size = 4
checkpoint_every = 20

[director]
every_steps = 20
select_ratio = 0.5

[budget]
max_teacher_calls = 60
max_steps = {max_steps}
"#
        )
    };
    let exp = write(dir.path(), &experiment(40));
    let run = dir.path().join("data-parallel-run");
    ok(&evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).args(["--gpus", "2", "--quiet"]).output().unwrap());
    let conn = Connection::open(run.join("ledger.sqlite")).unwrap();
    assert_eq!(count(&conn, "SELECT max(step) FROM metrics WHERE name = 'loss'"), 40);

    let exp = write(dir.path(), &experiment(60));
    let mut resumed = evolve();
    resumed.arg("run").arg(&exp).arg("--run-dir").arg(&run).args(["--gpus", "3", "--resume", "--quiet"]);
    ok(&resumed.output().unwrap());
    assert_eq!(count(&conn, "SELECT max(step) FROM metrics WHERE name = 'loss'"), 60);
    let losses: Vec<f64> = conn
        .prepare("SELECT value FROM metrics WHERE name = 'loss' ORDER BY step")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(losses.last().unwrap() < &losses[0], "the loss falls across ranks and resumes: {losses:?}");
    let needle = run.display().to_string();
    assert!(processes_mentioning(&needle).is_empty(), "workers outlived a finished run");

    // kill -9 rank 0 mid-training: its workers see the control connection close and exit.
    let exp = write(dir.path(), &experiment(100_000));
    let mut rank0 = evolve()
        .arg("run")
        .arg(&exp)
        .arg("--run-dir")
        .arg(&run)
        .args(["--gpus", "2", "--resume", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while processes_mentioning(&needle).len() < 2 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rank0.try_wait().unwrap().is_none(), "still training");
    rank0.kill().unwrap();
    rank0.wait().unwrap();
    let killed = std::time::Instant::now();
    while !processes_mentioning(&needle).is_empty() && killed.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_mentioning(&needle).is_empty(), "a worker outlived rank 0");
}
