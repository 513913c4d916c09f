//! Plugins in Python and JavaScript, built from `examples/plugins/` with the languages' own
//! component toolchains (componentize-py, componentize-js) exactly as their READMEs say, and run
//! inside real `evolve run`s: a Python judge asking `evolve serve` over the host's HTTP, a Python
//! operator, and a JavaScript operator.
//!
//! The toolchains come from PyPI and npm (`.ci/run` installs them and sets
//! `EVOLVE_REQUIRE_COMPONENTIZE=1`); elsewhere, without them on `PATH`, these tests are skipped
//! with a message.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use support::{count, evolve, ledger, ok, start_serve};

/// The built components: the Python operator and judge, the JavaScript operator.
struct Components {
    banlist: PathBuf,
    chat_judge: PathBuf,
    add_constraint_js: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Builds the three examples with their `build.sh` once per test binary; `None` (the tests
/// skip) when a toolchain is missing and CI did not ask for them.
fn components() -> Option<&'static Components> {
    static BUILT: OnceLock<Option<Components>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let missing: Vec<&str> =
                ["componentize-py", "componentize-js"].into_iter().filter(|t| !on_path(t)).collect();
            if !missing.is_empty() {
                assert!(
                    std::env::var("EVOLVE_REQUIRE_COMPONENTIZE").is_err(),
                    "EVOLVE_REQUIRE_COMPONENTIZE is set but {missing:?} are not on PATH"
                );
                eprintln!("skipped: {missing:?} not on PATH (pip install componentize-py; npm install @bytecodealliance/componentize-js)");
                return None;
            }
            let out = root().join("target").join("guest-plugins");
            std::fs::create_dir_all(&out).unwrap();
            let build = |example: &str, file: &str| {
                let path = out.join(file);
                let status = Command::new("bash")
                    .arg(root().join("examples/plugins").join(example).join("build.sh"))
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(status.success(), "examples/plugins/{example}/build.sh failed");
                path
            };
            Some(Components {
                banlist: build("python-operator", "banlist.wasm"),
                chat_judge: build("python-judge", "chat-judge.wasm"),
                add_constraint_js: build("js-operator", "add-constraint.wasm"),
            })
        })
        .as_ref()
}

/// An experiment on the embedded world with `judge` and `operators` (TOML sections).
fn experiment(dir: &Path, name: &str, judge: &str, operators: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
[run]
name = "{name}"
seed = 5
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
{judge}
{operators}
[prompts]
generate = 12
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_steps = 40
[plugins]
allow_hosts = ["127.0.0.1:*"]
memory_mb = 256
call_timeout_ms = 20000
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_python_judge_and_a_python_operator_run_inside_an_evolve_run() {
    let Some(built) = components() else { return };
    let (_server, url) = start_serve(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let judge = format!(
        "[judge]\nplugin = {{ wasm = \"{}\" }}\nconfig = {{ base_url = \"{url}\", model = \"shapes\" }}",
        built.chat_judge.display()
    );
    let operators = format!(
        "[[operators]]\nplugin = {{ wasm = \"{}\" }}\nconfig = {{ words = [\"triangle\"] }}\n\
         [[operators]]\nplugin = \"expansion\"\nconfig = {{ expand_num = 2 }}",
        built.banlist.display()
    );
    let exp = experiment(dir.path(), "python", &judge, &operators);
    // `evolve check` loads both components and runs their `init`: the whole configuration is
    // checked before anything runs (and the first compile of each says so).
    ok(&evolve().arg("check").arg(&exp).output().unwrap());

    let run = dir.path().join("run");
    let stdout = ok(&evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
    let conn = ledger(&run);
    let count = |sql: &str| count(&conn, sql);
    // The Python judge wrote the seed prompts (mutation), judged (its replies are the ledger's
    // raw verdicts) and expanded, all over the host's HTTP to `evolve serve`.
    assert_eq!(count("SELECT count(*) FROM samples WHERE origin = 'seed'"), 12, "{stdout}");
    assert!(count("SELECT count(*) FROM judgments WHERE raw LIKE '(_) is better'") > 0, "{stdout}");
    assert!(count("SELECT count(*) FROM samples WHERE origin = 'expansion'") > 0, "{stdout}");
    // The Python operator deactivated what it was told to, and nothing else was deactivated.
    let banned = "SELECT count(*) FROM samples s JOIN prompts p ON p.id = s.prompt_id WHERE s.active = 0";
    assert!(count(&format!("{banned} AND p.text LIKE '%triangle%'")) > 0, "{stdout}");
    assert_eq!(count(&format!("{banned} AND p.text NOT LIKE '%triangle%'")), 0);
    assert!(!stdout.contains("quarantined"), "{stdout}");
}

#[test]
fn a_javascript_operator_runs_inside_an_evolve_run() {
    let Some(built) = components() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A judge that finds the base model as good half of the time, so that there are mastered
    // prompts to add constraints to.
    let judge = "[judge]\nplugin = \"shapes\"\nconfig = { flip_rate = 0.5 }";
    let operators = format!(
        "[[operators]]\nplugin = {{ wasm = \"{}\" }}\nconfig = {{ constraints = [\"to the left of a blue square\", \
         \"above a green circle\"], rate = 1.0, applies_to = [\"a \", \"an \"], unless_contains = [\" and \", \" of \", \
         \" above \", \" below \"] }}",
        built.add_constraint_js.display()
    );
    let exp = experiment(dir.path(), "javascript", judge, &operators);
    let run = dir.path().join("run");
    let stdout = ok(&evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
    let conn = ledger(&run);
    let evolved = count(
        &conn,
        "SELECT count(*) FROM samples s JOIN prompts p ON p.id = s.prompt_id WHERE s.origin = 'mutation'
         AND (p.text LIKE '% to the left of a blue square' OR p.text LIKE '% above a green circle')",
    );
    assert!(evolved > 0, "no constraint-added prompt entered the set: {stdout}");
    assert!(!stdout.contains("quarantined"), "{stdout}");
}

#[test]
fn check_reports_what_a_python_plugin_refuses_in_its_own_configuration_step() {
    let Some(built) = components() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A blank word passes the schema (a string of length 1) but not the plugin's `init`.
    let operators =
        format!("[[operators]]\nplugin = {{ wasm = \"{}\" }}\nconfig = {{ words = [\" \"] }}", built.banlist.display());
    let exp = experiment(dir.path(), "blank", "[judge]\nplugin = \"shapes\"", &operators);
    let out = evolve().arg("check").arg(&exp).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("words must not be blank") && stderr.contains("operator"), "{stderr}");
    // The component is named as it names itself.
    assert!(stderr.contains("plugin `banlist`"), "{stderr}");
}
