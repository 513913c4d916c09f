//! The run store's durability and idempotency rules, including a real process killed with
//! SIGKILL in the middle of writing.

use evolve_core::store::{Ledger, LedgerError, NewSample, RequestHash, RunDir};
use evolve_sdk::{Cost, GenerateRequest, GeneratedImage, Image, Origin};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn request(prompt: &str, seed: u64) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), width: 16, height: 16, seed }
}

fn render(seed: u64) -> GeneratedImage {
    let mut image = Image::filled(16, 16, [(seed % 251) as u8, (seed / 251 % 251) as u8, 7]);
    image.put((seed % 16) as u32, 3, [255, 255, 255]);
    GeneratedImage { image, revised_prompt: None, cost: Cost::from_usd(0.04) }
}

#[test]
fn a_paid_request_is_never_paid_twice() {
    let dir = tempfile::tempdir().unwrap();
    let req = request("a red circle", 1);
    let hash = RequestHash::of("shapes", &req);
    let mut paid = 0;
    for _attempt in 0..3 {
        // A fresh open each time stands for a restarted run.
        let mut run = match RunDir::open(dir.path()) {
            Ok(run) => run,
            Err(_) => RunDir::create(dir.path(), "[run]\nname = \"t\"\n").unwrap(),
        };
        if run.paid(&hash).unwrap().is_none() {
            paid += 1;
            run.commit_paid(&hash, "shapes", &serde_json::to_string(&req).unwrap(), &render(1), None).unwrap();
        }
        let call = run.paid(&hash).unwrap().expect("recorded");
        assert_eq!(run.images.get(&call.image).unwrap(), render(1).image);
    }
    assert_eq!(paid, 1);
    let run = RunDir::open(dir.path()).unwrap();
    assert_eq!(run.ledger.call_totals().unwrap(), (1, Cost::from_usd(0.04)));
}

#[test]
fn request_hash_depends_on_every_field_and_the_teacher() {
    let base = RequestHash::of("a", &request("p", 1));
    assert_eq!(base, RequestHash::of("a", &request("p", 1)));
    assert_ne!(base, RequestHash::of("b", &request("p", 1)));
    assert_ne!(base, RequestHash::of("a", &request("p", 2)));
    assert_ne!(base, RequestHash::of("a", &request("q", 1)));
    assert_ne!(base, RequestHash::of("a", &GenerateRequest { width: 32, ..request("p", 1) }));
}

#[test]
fn samples_prompts_rounds_judgments_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = RunDir::create(dir.path(), "").unwrap();
    let img = run.images.put(&render(5).image).unwrap();
    let seed = run
        .ledger
        .add_sample(&NewSample {
            prompt: "a blue square",
            image: &img,
            teacher: "shapes",
            origin: Origin::Seed,
            parent: None,
            round: None,
        })
        .unwrap();
    let round = run.ledger.begin_round(200).unwrap();
    let child = run
        .ledger
        .add_sample(&NewSample {
            prompt: "a green square",
            image: &img,
            teacher: "shapes",
            origin: Origin::Expansion,
            parent: Some(seed),
            round: Some(round),
        })
        .unwrap();
    run.ledger.deactivate(seed, round).unwrap();
    let base = run.images.put(&render(6).image).unwrap();
    run.ledger
        .record_judgment(&evolve_core::store::NewJudgment {
            round,
            sample: seed,
            base_image: &base,
            teacher_image: img.hash(),
            outcome: evolve_sdk::Outcome::BaseAsGood,
            base_shown_first: true,
            confidence: 0.9,
            raw: "(A) is better",
        })
        .unwrap();
    run.ledger
        .finish_round(
            round,
            evolve_core::store::RoundSummary { selected: 1, added: 1, deactivated: 1, ..Default::default() },
        )
        .unwrap();
    run.ledger.record_metric(10, "loss", 0.5).unwrap();
    run.ledger.record_metric(20, "loss", 0.25).unwrap();

    let active = run.ledger.samples(true).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, child);
    assert_eq!(active[0].parent, Some(seed));
    assert_eq!(active[0].origin, "expansion");
    assert_eq!(run.ledger.samples(false).unwrap().len(), 2, "deactivated samples stay in the ledger");
    assert!(run.ledger.has_prompt("a blue square").unwrap());
    assert_eq!(run.ledger.metric("loss").unwrap(), vec![(10, 0.5), (20, 0.25)]);
    let report = run.check().unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
    assert_eq!(report.images, 2);
}

#[test]
fn check_finds_missing_and_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = RunDir::create(dir.path(), "").unwrap();
    let hash = RequestHash::of("t", &request("x", 0));
    let stored = run.commit_paid(&hash, "t", "{}", &render(9), None).unwrap();
    std::fs::write(run.images.path(stored.hash()), b"bitrot").unwrap();
    let report = run.check().unwrap();
    assert!(!report.is_consistent());
    assert!(report.problems[0].contains("missing or corrupt"), "{:?}", report.problems);
}

#[test]
fn create_refuses_an_existing_run_and_open_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    RunDir::create(dir.path(), "").unwrap();
    let err = RunDir::create(dir.path(), "").err().unwrap();
    assert!(err.to_string().contains("--resume"), "{err}");
    let err = RunDir::open(&dir.path().join("nope")).err().unwrap();
    assert!(err.to_string().contains("holds no run"), "{err}");
}

#[test]
fn migrations_upgrade_old_ledgers_and_refuse_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let ledger = Ledger::open_at_version(&path, 1).unwrap();
        assert_eq!(ledger.schema_version().unwrap(), 1);
        ledger.record_metric(1, "loss", 2.0).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert!(ledger.schema_version().unwrap() >= 2);
    assert_eq!(ledger.metric("loss").unwrap(), vec![(1, 2.0)], "data survives the migration");
    drop(ledger);

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    match Ledger::open(&path) {
        Err(LedgerError::NewerSchema { found: 999, .. }) => {}
        other => panic!("expected NewerSchema, got {:?}", other.map(|_| ())),
    }
}

/// Not a test on its own: the child process of `sigkill_mid_write_leaves_a_consistent_store`.
/// It writes paid images and samples as fast as it can until it is killed.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("EVOLVE_CRASH_CHILD_DIR") else { return };
    let dir = Path::new(&dir);
    let mut run = RunDir::open(dir).or_else(|_| RunDir::create(dir, "")).unwrap();
    let start: u64 = std::env::var("EVOLVE_CRASH_CHILD_START").unwrap().parse().unwrap();
    for seed in start.. {
        let req = request("crash", seed);
        let hash = RequestHash::of("shapes", &req);
        let stored = run.commit_paid(&hash, "shapes", "{}", &render(seed), None).unwrap();
        run.ledger
            .add_sample(&NewSample {
                prompt: &format!("prompt {seed}"),
                image: &stored,
                teacher: "shapes",
                origin: Origin::Seed,
                parent: None,
                round: None,
            })
            .unwrap();
    }
}

#[test]
fn sigkill_mid_write_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed_before = 0;
    for (i, delay_ms) in [150u64, 40, 260, 90, 333, 15].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
            .env("EVOLVE_CRASH_CHILD_DIR", dir.path())
            .env("EVOLVE_CRASH_CHILD_START", (i as u64 * 100_000).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms + 200));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let run = RunDir::open(dir.path()).unwrap();
        let report = run.check().unwrap();
        assert!(report.is_consistent(), "after kill {i}: {:?}", report.problems);
        let samples = run.ledger.samples(false).unwrap();
        for s in &samples {
            assert!(run.images.verify(&s.image), "sample {} names a missing image", s.id);
        }
        let (calls, _) = run.ledger.call_totals().unwrap();
        assert!(calls >= committed_before, "committed calls were lost");
        committed_before = calls;
    }
    assert!(committed_before > 0, "the child never committed anything; the test proved nothing");
}

#[test]
fn writing_down_prompts_waits_for_another_writer_instead_of_failing() {
    // The trainer thread's connection commits metrics while the director writes down prompts.
    // A deferred transaction that reads first cannot take the write lock once the other writer
    // has committed since its read (SQLITE_BUSY_SNAPSHOT, no retry); the ledger's transactions
    // must take the lock up front and wait.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = Ledger::open(&path).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; INSERT INTO metrics (step, name, value) VALUES (1, 'loss', 0.5);").unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    let wanted = vec![evolve_core::store::NewPending {
        prompt: "a red circle".into(),
        origin: Origin::Seed,
        parent: None,
        round: None,
    }];
    let written = ledger.add_pending(&wanted);
    writer.join().unwrap();
    assert_eq!(written.unwrap().len(), 1);
}

#[test]
fn one_process_at_a_time_holds_a_run_and_a_report_never_touches_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    let run = RunDir::create(&root, "[run]\nname = \"x\"\n").unwrap();
    let second = RunDir::open(&root).err().expect("a second holder of a live run");
    assert!(second.to_string().contains("another evolve process is using the run"), "{second}");

    // A paid image between write and rename, while `evolve report` reads the run.
    let in_flight = root.join("images/tmp/abc.123.0");
    std::fs::write(&in_flight, b"half a PNG").unwrap();
    evolve_core::report::write(&root).unwrap();
    assert!(in_flight.exists(), "the report deleted a file the run was writing");

    drop(run);
    RunDir::open(&root).unwrap();
}

#[test]
fn new_prompts_are_those_writing_down_would_not_skip() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let want = |prompt: &str| evolve_core::store::NewPending {
        prompt: prompt.into(),
        origin: Origin::Expansion,
        parent: None,
        round: None,
    };
    ledger.add_pending(&[want("a red circle")]).unwrap();
    let wanted = vec![want("a red circle"), want("a blue square"), want("a blue square"), want("a green ring")];
    let fresh = ledger.new_prompts(wanted.clone()).unwrap();
    assert_eq!(fresh, vec![want("a blue square"), want("a green ring")]);
    // Exactly what writing them down keeps.
    let written: Vec<_> = ledger.add_pending(&wanted).unwrap().into_iter().map(|row| row.want).collect();
    assert_eq!(written, fresh);
}

#[test]
fn rebuilding_the_samples_table_for_imported_samples_keeps_every_sample_and_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let images = evolve_core::store::ImageStore::open(&dir.path().join("images")).unwrap();
    let stored = images.put(&render(3).image).unwrap();
    {
        // A v6 ledger: a seed, its expansion (parent reference) and a judgment naming it.
        let mut ledger = Ledger::open_at_version(&path, 6).unwrap();
        let sample = |prompt, origin, parent| NewSample {
            prompt,
            image: &stored,
            teacher: "shapes",
            origin,
            parent,
            round: None,
        };
        let seed = ledger.add_sample(&sample("a red circle", Origin::Seed, None)).unwrap();
        ledger.add_sample(&sample("a small red circle", Origin::Expansion, Some(seed))).unwrap();
        let round = ledger.begin_round(10).unwrap();
        ledger.deactivate(seed, round).unwrap();
    }
    let mut ledger = Ledger::open(&path).unwrap();
    assert!(ledger.schema_version().unwrap() >= 7);
    let rows = ledger.samples(false).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[1].parent, rows[0].active), (Some(rows[0].id), false), "references and state survive");
    let imported = evolve_core::store::ImportedSample {
        prompt: "a blue square".into(),
        image: stored.clone(),
        teacher: "imported".into(),
    };
    assert_eq!(ledger.import(&[imported.clone(), imported]).unwrap(), 1, "a caption once");
    assert_eq!(ledger.samples(true).unwrap().last().unwrap().origin, "imported");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let broken: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(broken, 0);
}

#[test]
fn the_judges_spending_is_kept_for_a_resumed_run_to_count() {
    use evolve_core::store::{JudgeCallKind, JudgeTotals};
    use evolve_sdk::Usage;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let ledger = Ledger::open(&path).unwrap();
        let used =
            |input, output, micro_usd| Usage { input_tokens: input, output_tokens: output, cost: Cost { micro_usd } };
        ledger.record_judge_call(JudgeCallKind::Compare, &used(1200, 7, 3_070), false).unwrap();
        ledger.record_judge_call(JudgeCallKind::Expand, &used(0, 0, 9_000), true).unwrap();
    }
    let totals = Ledger::open(&path).unwrap().judge_totals().unwrap();
    assert_eq!(
        totals,
        JudgeTotals { calls: 2, input_tokens: 1200, output_tokens: 7, cost: Cost { micro_usd: 12_070 } }
    );
}
