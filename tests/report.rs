//! End-to-end: a short `evolve run --json` streams events and leaves an HTML report that a real
//! browser (headless Chromium) renders with every chart and grid and without script errors.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it and sets
//! `EVOLVE_REQUIRE_BROWSER=1`); elsewhere the browser half is skipped with a message, the rest
//! still runs. A screenshot is saved to `target/test-artifacts/report.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var("EVOLVE_CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into()];
    candidates.into_iter().filter(|c| !c.is_empty()).map(PathBuf::from).find(|p| p.is_file())
}

fn headless(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn a_short_run_streams_json_events_and_its_report_renders_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        r#"
[run]
name = "report-e2e"
seed = 2
[base_model]
plugin = "dit"
config = { preset = "tiny", sample_steps = 2 }
[[teachers]]
name = "exact"
plugin = "shapes"
config = { price_usd = 0.01 }
[[teachers]]
name = "sloppy"
plugin = "shapes"
config = { sloppiness = 0.5, price_usd = 0.02 }
[judge]
plugin = "shapes"
[eval]
plugin = "shapes"
[prompts]
generate = 8
[training]
batch_size = 8
[director]
every_steps = 15
select_ratio = 0.5
eval_every_rounds = 2
[budget]
max_teacher_calls = 40
max_cost_usd = 5.0
max_steps = 60
target_eval = 0.99
"#,
    )
    .unwrap();
    let run = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .current_dir(root())
        .arg("run")
        .arg(&exp)
        .arg("--run-dir")
        .arg(&run)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"round"), "{kinds:?}");
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["steps"], 60);
    assert!(finished["eval"]["overall"].is_number(), "{finished}");

    // The run refreshed its report; `evolve report` rewrites it.
    let report = run.join("report/index.html");
    assert!(report.is_file(), "the run wrote no report");
    let out = Command::new(env!("CARGO_BIN_EXE_evolve")).arg("report").arg("--run").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    let charts = html.matches("<figure class=\"chart\"").count();
    assert!(charts >= 10, "{charts} charts");
    for needle in ["Loss", "Active training set", "Teacher calls", "Evaluation score by category", "id=\"tree\""] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(html.contains("<img class=\"px\""), "no image grid");
    assert!(html.contains("exact") && html.contains("sloppy"), "no per-teacher win rates");
    assert!(!html.contains("http://") && !html.contains("https://"), "the report must not need the network");

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("EVOLVE_REQUIRE_BROWSER").is_err(),
            "EVOLVE_REQUIRE_BROWSER is set but chromium is missing"
        );
        eprintln!("skipped the browser half: no chromium (apt install chromium)");
        return;
    };
    let url = format!("file://{}", report.display());
    let profile = dir.path().join("profile");
    let out = headless(&browser, &profile, &["--virtual-time-budget=3000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-ready=\"yes\""),
        "the page's script did not run to the end:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dom.contains("data-errors=\""), "script errors: {}", dom.split("data-errors=\"").nth(1).unwrap_or(""));
    assert!(dom.matches("<svg").count() >= 10, "charts missing in the rendered page");

    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out =
        headless(&browser, &profile, &["--window-size=1280,3200", &format!("--screenshot={}", shot.display()), &url]);
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
