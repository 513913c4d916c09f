//! End-to-end: a run's curated set out (`evolve export --dataset`, both layouts, filters, the
//! card, no overwrite without --force) and back in (`[prompts] from_dataset`): a new run started
//! from an export holds the same prompts and images; bad entries are named and skipped.

mod support;

use evolve_core::store::encode_png;
use evolve_sdk::Image;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use support::{count, evolve, ledger, ok};

/// A small director run with two teachers, so that some prompts have a losing image, and a
/// judge that errs, so that some samples are deleted (an untrained model is never as good as
/// the teacher to an exact judge).
fn bought_run(dir: &Path) -> PathBuf {
    let exp = dir.join("source.toml");
    std::fs::write(
        &exp,
        r#"
[run]
name = "dataset-source"
seed = 11
[base_model]
plugin = "dit"
config = { preset = "tiny", sample_steps = 2 }
[[teachers]]
name = "exact"
plugin = "shapes"
[[teachers]]
name = "sloppy"
plugin = "shapes"
config = { sloppiness = 0.8 }
[judge]
plugin = "shapes"
config = { flip_rate = 0.3 }
[prompts]
generate = 12
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_teacher_calls = 60
max_steps = 30
"#,
    )
    .unwrap();
    let run = dir.join("source");
    ok(&evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
    run
}

/// Starts a run from the dataset at `dataset` that buys nothing and trains a few steps.
fn run_from(dir: &Path, name: &str, dataset: &Path) -> (PathBuf, String) {
    let exp = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
[run]
name = "{name}"
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "shapes"
[prompts]
from_dataset = {dataset:?}
generate = 0
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 1000
[budget]
max_teacher_calls = 0
max_steps = 4
"#
    );
    std::fs::write(&exp, text).unwrap();
    let run = dir.join(name);
    let out = evolve().args(["run"]).arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    ok(&out);
    (run, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    evolve().args(["export", "--dataset", "--run"]).arg(run).arg("--out").arg(out).args(extra).output().unwrap()
}

fn lines(folder: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(folder.join("metadata.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (prompt, image hash) of the run's samples of `origin` (any origin: `None`).
fn pairs(run: &Path, origin: Option<&str>) -> BTreeSet<(String, String)> {
    let conn = ledger(run);
    let mut stmt = conn
        .prepare(
            "SELECT p.text, s.image_hash FROM samples s JOIN prompts p ON p.id = s.prompt_id
             WHERE ?1 IS NULL OR s.origin = ?1",
        )
        .unwrap();
    stmt.query_map([origin], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_runs_set_exports_in_both_layouts_and_a_new_run_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = bought_run(dir.path());
    let conn = ledger(&run);
    let samples = count(&conn, "SELECT count(*) FROM samples");
    let losers = count(&conn, "SELECT count(*) FROM candidates WHERE won = 0");
    let active = count(&conn, "SELECT count(*) FROM samples WHERE active = 1");
    assert!(losers > 0 && active < samples, "the run should have losers and deletions to export");

    // The image folder: every bought image, each file matching its hash, with its record.
    let folder = dir.path().join("set");
    let stdout = ok(&export(&run, &folder, &[]));
    assert!(stdout.contains(&format!("wrote {} images", samples + losers)), "{stdout}");
    let records = lines(&folder);
    assert_eq!(records.len() as i64, samples + losers);
    for record in &records {
        let bytes = std::fs::read(folder.join(record["file_name"].as_str().unwrap())).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), record["image_hash"].as_str().unwrap());
        assert!(record["text"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(record["cost_usd"].as_f64().is_some() && record["teacher"].is_string());
    }
    let winners = records.iter().filter(|r| r["winner"] == true).count() as i64;
    assert_eq!(winners, samples);
    let expanded = records.iter().find(|r| r["origin"] == "expansion").expect("an expansion");
    assert!(expanded["parent_prompt"].is_string(), "{expanded}");
    assert!(records.iter().any(|r| r["verdicts"].as_array().is_some_and(|v| !v.is_empty())), "verdicts");
    let card = std::fs::read_to_string(folder.join("README.md")).unwrap();
    assert!(card.contains("task_categories") && card.contains("dataset-source"), "{card}");
    assert!(card.contains(&format!("| images | {} |", samples + losers)), "{card}");

    // Never over an existing folder unless asked, and never half-written.
    let again = export(&run, &folder, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
    ok(&export(&run, &folder, &["--force"]));
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".partial-"));
    assert_eq!(leftovers.count(), 0);

    // Filters.
    for (flags, expected) in [
        (vec!["--active-only"], active),
        (vec!["--winners-only"], samples),
        (
            vec!["--round", "0"],
            count(&conn, "SELECT count(*) FROM samples WHERE round_added IS NULL")
                + count(
                    &conn,
                    "SELECT count(*) FROM candidates c JOIN pending p ON p.id = c.pending_id WHERE c.won = 0 AND p.round_id IS NULL",
                ),
        ),
    ] {
        let out = dir.path().join(format!("filtered{}", flags.join("")));
        ok(&export(&run, &out, &flags));
        assert_eq!(lines(&out).len() as i64, expected, "{flags:?}");
    }

    // WebDataset shards: {key}.png, .txt and .json together per image.
    let shards = dir.path().join("shards");
    ok(&export(&run, &shards, &["--format", "webdataset"]));
    let mut archive = tar::Archive::new(std::fs::File::open(shards.join("shard-000000.tar")).unwrap());
    let names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len() as i64, 3 * (samples + losers));
    assert_eq!(names[..3], ["00000000.png", "00000000.txt", "00000000.json"]);

    // Back in: a new run from either layout holds the run's prompts with the same images
    // (a prompt's winner comes first in the export, so the losers' captions are repeats).
    let bought = pairs(&run, None);
    for (name, dataset) in [("from-folder", &folder), ("from-shards", &shards)] {
        let (new_run, _) = run_from(dir.path(), name, dataset);
        assert_eq!(pairs(&new_run, Some("imported")), bought, "{name}");
        let conn = ledger(&new_run);
        assert_eq!(count(&conn, "SELECT count(*) FROM api_calls"), 0, "imported images are not bought");
        assert_eq!(count(&conn, "SELECT count(*) FROM samples WHERE active = 1"), samples);
    }
}

#[test]
fn bad_entries_in_a_dataset_are_named_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("captioned");
    std::fs::create_dir(&data).unwrap();
    let png = encode_png(&Image::filled(32, 32, [200, 30, 30])).unwrap();
    std::fs::write(data.join("good.png"), &png).unwrap();
    std::fs::write(data.join("good.txt"), "a red square\n").unwrap();
    std::fs::write(data.join("uncaptioned.png"), &png).unwrap();
    std::fs::write(data.join("orphan.txt"), "a caption without its image").unwrap();
    std::fs::write(data.join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(data.join("corrupt.txt"), "a blue circle").unwrap();
    std::fs::write(data.join("blank.png"), &png).unwrap();
    std::fs::write(data.join("blank.txt"), "  \n").unwrap();

    let (run, stderr) = run_from(dir.path(), "from-captions", &data);
    for name in ["uncaptioned.png", "orphan.txt", "corrupt.png", "blank.png"] {
        assert!(stderr.contains(name), "{name} not reported:\n{stderr}");
    }
    assert_eq!(pairs(&run, Some("imported")).into_iter().map(|(p, _)| p).collect::<Vec<_>>(), ["a red square"]);

    // A dataset that is not there is an `evolve check` error naming the key.
    let exp = dir.path().join("missing.toml");
    std::fs::write(
        &exp,
        "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n[judge]\nplugin = \"shapes\"\n[prompts]\nfrom_dataset = \"nowhere\"\n",
    )
    .unwrap();
    let out = evolve().arg("check").arg(&exp).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prompts.from_dataset") && stderr.contains("dataset `nowhere` does not exist"), "{stderr}");
}

#[test]
fn a_run_that_fails_before_it_trains_leaves_no_run_directory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.md"), "no images here").unwrap();
    let exp = dir.path().join("exp.toml");
    let text = |dataset: &Path| {
        format!(
            "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\nconfig = {{ preset = \"tiny\", sample_steps = 2 }}\n\
             [[teachers]]\nplugin = \"shapes\"\n[judge]\nplugin = \"shapes\"\n[prompts]\nfrom_dataset = {dataset:?}\ngenerate = 4\n\
             [training]\nbatch_size = 4\ncheckpoint_every = 1000\n[director]\nevery_steps = 1\n[budget]\nmax_steps = 2\n"
        )
    };
    std::fs::write(&exp, text(&empty)).unwrap();
    let run = dir.path().join("run");
    let out = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no image-caption pairs") && stderr.contains("was removed"), "{stderr}");
    assert!(!run.exists(), "nothing paid, nothing trained: no run directory left behind");
    assert!(!stderr.contains("\u{1b}["), "no colour codes when stderr is not a terminal: {stderr}");

    // Fixed, the same command starts afresh (no "already holds a run").
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("a.png"), encode_png(&Image::filled(32, 32, [200, 30, 30])).unwrap()).unwrap();
    std::fs::write(data.join("a.txt"), "a red square").unwrap();
    std::fs::write(&exp, text(&data)).unwrap();
    let out = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).output().unwrap();
    ok(&out);
    // Without a terminal, a plain line per note and per round instead of progress bars.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("imported 1 image-caption pairs"), "{stderr}");
    assert!(stderr.contains("round 1 at step 1: judged"), "{stderr}");
}
