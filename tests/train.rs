//! End-to-end: `evolve train --static` on the embedded world lowers the loss, checkpoints,
//! resumes, samples and evaluates — through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evolve(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    Command::new(env!("CARGO_BIN_EXE_evolve")).args(args).current_dir(root).output().expect("evolve runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn experiment(dir: &Path, steps: u64) -> PathBuf {
    let text = format!(
        r#"
[run]
name = "e2e"
seed = 3

[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 4 }}

[[teachers]]
plugin = "shapes"

[judge]
plugin = "shapes"

[eval]
plugin = "shapes"

[prompts]
generate = 48

[training]
batch_size = 16
checkpoint_every = 50

[budget]
max_teacher_calls = 48
max_steps = {steps}
"#
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn losses(run: &Path) -> Vec<(i64, f64)> {
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let mut stmt = conn.prepare("SELECT step, value FROM metrics WHERE name = 'loss' ORDER BY step").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn static_training_learns_checkpoints_resumes_samples_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let exp = experiment(dir.path(), 150);
    let out = ok(&evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]));
    assert!(out.contains("ShapesEval v2"), "{out}");
    assert!(out.contains("150 steps on 48 teacher images"), "{out}");

    // Each record is the mean loss of its 10 steps. The model predicts the clean image, whose loss
    // has a floor (at high noise the best guess is the mean image), so falling to under half of the
    // first 10 steps' mean is a large margin; here it reaches about 0.4, an untrained model stays at 1.
    let series = losses(&run);
    let first = series.first().unwrap().1;
    let last_avg = series.iter().rev().take(3).map(|s| s.1).sum::<f64>() / 3.0;
    assert!(last_avg < first * 0.5, "loss did not fall enough: {first} -> {last_avg} ({series:?})");

    // Every paid image once; the run store is consistent.
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let calls: i64 = conn.query_row("SELECT count(*) FROM api_calls", [], |r| r.get(0)).unwrap();
    assert_eq!(calls, 48);

    // Resume to 200 steps: training continues from the checkpoint at 150, nothing re-bought.
    let exp = experiment(dir.path(), 200);
    ok(&evolve(&[
        "train",
        exp.to_str().unwrap(),
        "--static",
        "--quiet",
        "--resume",
        "--run-dir",
        run.to_str().unwrap(),
    ]));
    let series = losses(&run);
    assert_eq!(series.last().unwrap().0, 200);
    assert_eq!(series.iter().filter(|s| s.0 == 160).count(), 1);
    let calls: i64 = conn.query_row("SELECT count(*) FROM api_calls", [], |r| r.get(0)).unwrap();
    assert_eq!(calls, 48, "a resumed run must not buy again");

    let grid = dir.path().join("grid.png");
    ok(&evolve(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--prompt",
        "a red circle",
        "-n",
        "4",
        "--out",
        grid.to_str().unwrap(),
    ]));
    let png = std::fs::read(&grid).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A bare file name is written to the current folder (it once failed to fsync folder "").
    let bare = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(["sample", "--run", run.to_str().unwrap(), "--prompt", "a circle", "-n", "1", "--out", "bare.png"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    ok(&bare);
    assert!(dir.path().join("bare.png").is_file());

    // Every single-object prompt, read back by the detector: a share per shape and overall.
    let readback = ok(&evolve(&["bench", "shape-readback", "--run", run.to_str().unwrap(), "--seeds", "1"]));
    assert_eq!(readback.lines().filter(|l| l.starts_with("circle ") || l.starts_with("diamond ")).count(), 2);
    let share: f64 = readback
        .lines()
        .find_map(|l| l.strip_prefix("shape-readback prompted shape: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no readback figure in {readback}"));
    assert!((0.0..=1.0).contains(&share));
    let all = readback.lines().find(|l| l.starts_with("all ")).unwrap_or_default();
    assert_eq!(all.split_whitespace().nth(1), Some("84"), "{readback}");

    let report: serde_json::Value =
        serde_json::from_str(&ok(&evolve(&["eval", "--run", run.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(report["categories"].as_array().unwrap().len(), 6);
    assert!((0.0..=1.0).contains(&report["overall"].as_f64().unwrap()));

    // GenEval's protocol: several images per prompt, each category scored over its images.
    let twice: serde_json::Value = serde_json::from_str(&ok(&evolve(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--json",
        "--images-per-prompt",
        "2",
    ])))
    .unwrap();
    for (one, two) in report["categories"].as_array().unwrap().iter().zip(twice["categories"].as_array().unwrap()) {
        assert_eq!(one["images"], one["prompts"]);
        assert_eq!(two["prompts"], one["prompts"]);
        assert_eq!(two["images"].as_u64().unwrap(), 2 * one["prompts"].as_u64().unwrap());
    }
    let refused = evolve(&["eval", "--run", run.to_str().unwrap(), "--images-per-prompt", "0"]);
    assert_eq!(refused.status.code(), Some(2), "0 images per prompt is a usage error");
}

#[test]
fn static_training_replays_from_its_seed_whichever_purchase_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    // A teacher with latency, 16 calls at once: purchases finish in the order the scheduler
    // allows, and the samples must still enter the set in the prompts' order.
    let text = std::fs::read_to_string(experiment(dir.path(), 20)).unwrap();
    let text = text
        .replace("[[teachers]]\nplugin = \"shapes\"", "[[teachers]]\nplugin = \"shapes\"\nconfig = { latency_ms = 2 }");
    let exp = dir.path().join("slow.toml");
    std::fs::write(&exp, text).unwrap();
    let replay = |name: &str| {
        let run = dir.path().join(name);
        ok(&evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]));
        let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
        let mut stmt =
            conn.prepare("SELECT p.text FROM samples s JOIN prompts p ON p.id = s.prompt_id ORDER BY s.id").unwrap();
        let prompts: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        (prompts, losses(&run))
    };
    let (first, second) = (replay("a"), replay("b"));
    assert_eq!(first.0.len(), 48);
    assert_eq!(first, second, "the same samples in the same order, and the same losses");
}

#[test]
fn static_training_buys_no_more_than_max_cost_usd() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // 48 prompts at $0.25 a call against $2: eight calls fit.
    let text = std::fs::read_to_string(experiment(dir.path(), 2)).unwrap();
    let text = text
        .replace(
            "[[teachers]]\nplugin = \"shapes\"",
            "[[teachers]]\nplugin = \"shapes\"\nconfig = { price_usd = 0.25 }",
        )
        .replace("max_teacher_calls = 48", "max_teacher_calls = 48\nmax_cost_usd = 2.0");
    let exp = dir.path().join("priced.toml");
    std::fs::write(&exp, text).unwrap();
    ok(&evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]));
    let conn = rusqlite::Connection::open(run.join("ledger.sqlite")).unwrap();
    let (calls, micro_usd): (i64, i64) = conn
        .query_row("SELECT count(*), sum(cost_micro_usd) FROM api_calls", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((calls, micro_usd), (8, 2_000_000), "spent beyond max_cost_usd");
}

#[test]
fn training_an_existing_run_without_resume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let exp = experiment(dir.path(), 2);
    ok(&evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]));
    let out = evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&out.stderr));
}
