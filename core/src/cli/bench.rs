//! `evolve bench`: run a benchmark and print its figures.

use anyhow::{Context, bail};
use evolve_core::bench::{
    AVAILABLE, data_efficiency, plugin_overhead, shape_readback, teacher_routing, train_throughput, transformer_step,
};
use evolve_core::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Settings of `evolve bench data-efficiency` (`None`: the full or quick default).
pub struct DataSettings {
    /// Trainer steps per run.
    pub steps: Option<u64>,
    /// Teacher-call budgets.
    pub budgets: Option<Vec<u64>>,
    /// Seeds per arm and budget.
    pub seeds: Option<u64>,
    /// data-efficiency: the first seed (the seeds run from it up).
    pub first_seed: u64,
    /// Arms by key (the baseline is always measured).
    pub arms: Option<Vec<String>>,
    /// A smoke run.
    pub quick: bool,
    /// Keep the points of an interrupted run in `out`.
    pub resume: bool,
    /// Output folder.
    pub out: PathBuf,
    /// data-efficiency: initial prompts from the world's natural set instead of the grammar.
    pub natural: bool,
    /// data-efficiency, teacher-routing: images per ShapesEval prompt of the final scores.
    pub eval_images: Option<u32>,
    /// data-efficiency: the checkpoint every arm's model starts from.
    pub start_from: Option<PathBuf>,
    /// data-efficiency: every run's peak learning rate.
    pub learning_rate: Option<f64>,
}

/// Settings of `evolve bench train-throughput`'s transformer-step cases.
pub struct StepOptions {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// bf16 mixed precision (else f32).
    pub bf16: bool,
    /// Gradient checkpointing of the blocks.
    pub checkpointing: bool,
}

/// Runs benchmark `name`.
pub fn run(
    name: &str,
    run: Option<PathBuf>,
    python: Option<PathBuf>,
    cases: &[String],
    probes: &[String],
    data: DataSettings,
    step: StepOptions,
) -> anyhow::Result<ExitCode> {
    match name {
        "shape-readback" => readback(run, data.seeds),
        "train-throughput" if cases.iter().any(|c| transformer_step::CASES.iter().any(|t| t.name == c)) => {
            transformer_steps(cases, &step)
        }
        "train-throughput" if step.device != "cpu" => {
            bail!(
                "on {} train-throughput measures the pixart cases: give --case pixart-xl-256 or pixart-xl-512",
                step.device
            )
        }
        "train-throughput" => train(python, cases),
        "data-efficiency" => data_efficiency(data),
        "teacher-routing" => routing(data),
        "plugin-overhead" => plugin_overhead(probes),
        other => {
            let list: Vec<String> = AVAILABLE.iter().map(|(n, d)| format!("  {n}: {d}")).collect();
            bail!("no benchmark `{other}` in this build; available:\n{}", list.join("\n"))
        }
    }
}

fn routing(data: DataSettings) -> anyhow::Result<ExitCode> {
    let mut settings = if data.quick {
        teacher_routing::Settings::quick(data.out.clone())
    } else {
        teacher_routing::Settings::full(data.out.clone())
    };
    if let Some(steps) = data.steps {
        settings.steps = steps;
    }
    settings.seeds = seeds(data.first_seed, data.seeds.unwrap_or(settings.seeds.len() as u64))?;
    settings.resume = data.resume;
    if let Some(images) = data.eval_images {
        settings.eval_images = images;
    }
    let registry = Registry::builtin();
    let points = teacher_routing::measure(&settings, &registry, |what| eprintln!("teacher-routing: {what}"))?;
    let (table, figures) = teacher_routing::summarise(&points);
    println!(
        "teacher-routing: seeds {} of {} steps, {} initial prompts, scored at {} images per prompt; teachers exact $0.04, fair $0.02 (30% wrong), cheap $0.01 (80% wrong)",
        settings.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        settings.steps,
        settings.initial,
        settings.eval_images
    );
    print!("{table}");
    for figure in figures {
        println!("{figure}");
    }
    Ok(ExitCode::SUCCESS)
}

fn readback(run: Option<PathBuf>, seeds: Option<u64>) -> anyhow::Result<ExitCode> {
    let Some(run) = run else { bail!("shape-readback measures a run's model: give --run DIR") };
    let seeds = seeds.unwrap_or(shape_readback::SEEDS);
    let tallies = shape_readback::measure(&run, &Registry::builtin(), seeds).context("shape-readback")?;
    print!("{}", shape_readback::table(&tallies));
    Ok(ExitCode::SUCCESS)
}

/// The transformer's training step alone at PixArt's shapes, with TFLOP/s and MFU against the
/// device's bf16 matrix-product rate measured here first.
fn transformer_steps(only: &[String], options: &StepOptions) -> anyhow::Result<ExitCode> {
    let device = evolve_dit::device(&options.device)?;
    let precision = if options.bf16 { evolve_dit::Precision::Bf16 } else { evolve_dit::Precision::F32 };
    let settings = transformer_step::StepSettings { precision, checkpointing: options.checkpointing };
    let side = if device.is_cpu() { 1024 } else { 8192 };
    let peak = transformer_step::matmul_peak(&device, side, 10)?;
    println!("bf16 matmul {side}³ on {}: {peak:.1} TFLOP/s (the MFU denominator)", options.device);
    println!(
        "{:<14} {:>6} {:>6} {:>10} {:>10} {:>8}   ({precision:?}{})",
        "case",
        "latent",
        "batch",
        "img/s",
        "TFLOP/s",
        "MFU",
        if options.checkpointing { ", checkpointed" } else { "" }
    );
    let mut figures = vec![];
    for case in transformer_step::CASES.iter().filter(|c| only.iter().any(|o| o == c.name)) {
        let rate = transformer_step::measure(case, &device, settings)?;
        let tflops = rate * transformer_step::flops_per_image(&transformer_step::shape(case)) / 1e12;
        let mfu = tflops / peak;
        println!(
            "{:<14} {:>6} {:>6} {rate:>10.2} {tflops:>10.1} {:>7.1}%",
            case.name,
            case.latent,
            case.batch,
            100.0 * mfu
        );
        figures.push(format!("train-throughput {} evolve img/s: {rate:.2}", case.name));
        figures.push(format!("train-throughput {} evolve TFLOP/s: {tflops:.1}", case.name));
        figures.push(format!("train-throughput {} evolve MFU: {:.3}", case.name, mfu));
    }
    figures.push(format!("train-throughput bf16 matmul TFLOP/s: {peak:.1}"));
    for f in figures {
        println!("{f}");
    }
    Ok(ExitCode::SUCCESS)
}

fn train(python: Option<PathBuf>, only: &[String]) -> anyhow::Result<ExitCode> {
    let root = std::env::current_dir().context("no current directory")?;
    let script = root.join("bench/dit_torch.py");
    if !script.is_file() {
        bail!("{} not found: run `evolve bench` from the repository root", script.display());
    }
    let python = python.unwrap_or_else(|| {
        let venv = root.join("bench/.venv/bin/python");
        if venv.is_file() { venv } else { PathBuf::from("python3") }
    });
    let cases: Vec<_> =
        train_throughput::CASES.iter().filter(|c| only.is_empty() || only.iter().any(|o| o == c.name)).collect();
    println!("{:<6} {:>6} {:>6} {:>12} {:>12} {:>8}", "case", "image", "batch", "candle img/s", "torch img/s", "ratio");
    let mut figures = vec![];
    for case in cases {
        // Alternated, several rounds, medians: both sides see the same machine load, and one
        // noisy round (this machine swings by 15%) does not decide the ratio.
        let (mut candles, mut torches) = (vec![], vec![]);
        for round in 1..=train_throughput::ROUNDS {
            let candle = train_throughput::measure_candle(case)?;
            let torch = train_throughput::measure_torch(case, Path::new(&python), &script)?;
            eprintln!(
                "{} round {round}/{}: evolve {candle:.1} img/s, torch {torch:.1} img/s ({:.2})",
                case.name,
                train_throughput::ROUNDS,
                candle / torch
            );
            candles.push(candle);
            torches.push(torch);
        }
        let (candle, torch) = (train_throughput::median(&mut candles), train_throughput::median(&mut torches));
        let ratio = candle / torch;
        println!(
            "{:<6} {:>6} {:>6} {:>12.1} {:>12.1} {:>8.2}",
            case.name, case.image, case.batch, candle, torch, ratio
        );
        figures.push(format!("train-throughput {} ratio evolve/torch: {ratio:.2}", case.name));
        figures.push(format!("train-throughput {} evolve img/s: {candle:.1}", case.name));
        figures.push(format!("train-throughput {} torch img/s: {torch:.1}", case.name));
    }
    for f in figures {
        println!("{f}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `count` seeds from `first` (`--first-seed`, `--seeds`).
fn seeds(first: u64, count: u64) -> anyhow::Result<Vec<u64>> {
    if count == 0 {
        bail!("--seeds needs at least 1 (2 or more for confidence intervals)");
    }
    Ok((first..first.saturating_add(count)).collect())
}

fn data_efficiency(data: DataSettings) -> anyhow::Result<ExitCode> {
    let defaults = if data.quick {
        data_efficiency::Settings::quick(data.out.clone())
    } else {
        data_efficiency::Settings::full(data.out.clone())
    };
    let mut budgets = data.budgets.unwrap_or(defaults.budgets);
    budgets.sort_unstable();
    budgets.dedup();
    if budgets.is_empty() || budgets[0] == 0 {
        bail!("--budgets needs positive teacher-call counts, e.g. --budgets 20,60,200");
    }
    let seeds = seeds(data.first_seed, data.seeds.unwrap_or(defaults.seeds.len() as u64))?;
    let arms = match &data.arms {
        None => defaults.arms.clone(),
        Some(keys) => {
            let mut arms = vec![data_efficiency::Arm::Uniform];
            for key in keys {
                let Some(arm) = data_efficiency::Arm::from_key(key) else {
                    let valid: Vec<&str> = data_efficiency::Arm::ALL.iter().map(|a| a.key()).collect();
                    bail!("--arms: no arm `{key}`; valid: {}", valid.join(", "));
                };
                if !arms.contains(&arm) {
                    arms.push(arm);
                }
            }
            arms
        }
    };
    if let Some(dir) = &data.start_from
        && !evolve_core::run_model::is_checkpoint(dir)
    {
        bail!(
            "--start-from {}: not a checkpoint folder (no host.json, which evolve writes into every checkpoint); \
             give a run's checkpoints/step-… folder, the one its checkpoints/LATEST names",
            dir.display()
        );
    }
    let settings = data_efficiency::Settings {
        steps: data.steps.unwrap_or(defaults.steps).max(1),
        budgets,
        seeds,
        arms,
        resume: data.resume,
        pool: if data.natural { data_efficiency::Pool::Natural } else { data_efficiency::Pool::Grammar },
        eval_images: data.eval_images.unwrap_or(defaults.eval_images),
        start_from: data.start_from.map(|dir| std::path::absolute(&dir).unwrap_or(dir)),
        learning_rate: data.learning_rate,
        ..defaults
    };
    let registry = Registry::builtin();
    let runs = settings.budgets.len() * settings.arms.len() * settings.seeds.len();
    let mut started = 0;
    let began = std::time::Instant::now();
    let points = data_efficiency::measure(&settings, &registry, |what| {
        started += 1;
        eprintln!("[{started}/{runs}, {:.0} min] {what}", began.elapsed().as_secs_f64() / 60.0);
    })?;
    let (table, figures) = data_efficiency::summarise(&points, &settings);
    let seeds: Vec<String> = settings.seeds.iter().map(u64::to_string).collect();
    // How every run's model began and was trained, where the benchmark was told.
    let mut model = match &settings.start_from {
        Some(dir) => format!(", every model started from {}", dir.display()),
        None => String::new(),
    };
    if let Some(rate) = settings.learning_rate {
        model += &format!(", learning rate {rate}");
    }
    let header = format!(
        "ShapesEval ({} images per prompt) after {} steps of {}, seeds {}, initial prompts from the {} pool{model}, {:.0} min\n",
        settings.eval_images,
        settings.steps,
        data_efficiency::BATCH,
        seeds.join(","),
        settings.pool.key(),
        began.elapsed().as_secs_f64() / 60.0
    );
    print!("{header}{table}");
    for f in &figures {
        println!("{f}");
    }
    let lines: Vec<_> = settings.arms.iter().map(|&arm| data_efficiency::line(&points, arm, &settings)).collect();
    let title =
        format!("ShapesEval vs teacher calls ({} steps, {} seeds, 95% CI)", settings.steps, settings.seeds.len());
    let svg = settings.out.join("data-efficiency.svg");
    std::fs::write(&svg, data_efficiency::chart::svg(&title, &lines)).with_context(|| svg.display().to_string())?;
    let summary = settings.out.join("summary.txt");
    let text = format!("{header}{table}{}\n", figures.join("\n"));
    std::fs::write(&summary, text).with_context(|| summary.display().to_string())?;
    eprintln!("chart: {}\ntable: {}", svg.display(), summary.display());
    Ok(ExitCode::SUCCESS)
}

fn plugin_overhead(probes: &[String]) -> anyhow::Result<ExitCode> {
    let mut files = plugin_overhead::Probes::default();
    for probe in probes {
        let Some((kind, path)) = probe.split_once('=') else {
            bail!("--probe {probe}: expected KIND=PATH (native=, wasm= or python=)");
        };
        let slot = match kind {
            "native" => &mut files.native,
            "wasm" => &mut files.wasm,
            "python" => &mut files.python,
            other => bail!("--probe {probe}: unknown kind `{other}` (native, wasm or python)"),
        };
        *slot = Some(PathBuf::from(path));
    }
    if files == plugin_overhead::Probes::default() {
        bail!("give the plugins to time with --probe KIND=PATH; bench/plugin-overhead.sh builds them and runs this");
    }
    let registry = Registry::builtin();
    let o = plugin_overhead::measure(&registry, &files, 15, 20_000)?;
    println!("{:<10} {:>12} {:>10}", "way in", "ns / call", "vs built-in");
    println!("{:<10} {:>12.0} {:>10.1}x", "built-in", o.builtin_ns, 1.0);
    for (name, ns) in [("native", o.native_ns), ("wasm", o.wasm_ns)] {
        if let Some(ns) = ns {
            println!("{name:<10} {ns:>12.0} {:>10.1}x", ns / o.builtin_ns);
        }
    }
    println!("plugin-overhead builtin ns/call: {:.0}", o.builtin_ns);
    for (name, ns) in [("native", o.native_ns), ("wasm", o.wasm_ns)] {
        if let Some(ns) = ns {
            println!("plugin-overhead {name} ns/call: {ns:.0}");
            println!("plugin-overhead {name} extra ns/call: {:.0}", ns - o.builtin_ns);
        }
    }
    if let Some(component) = &files.python {
        // An interpreter per call is dearer by orders of magnitude: its own, shorter rounds.
        let (python, builtin) = plugin_overhead::measure_python(&registry, component, 9, 200)?;
        println!(
            "{:<10} {python:>12.0} {:>10.0}x   (built-in in the same rounds: {builtin:.0} ns)",
            "python",
            python / builtin
        );
        println!("plugin-overhead python ns/call: {python:.0}");
    }
    Ok(ExitCode::SUCCESS)
}
