//! The command line: one module per command, each a thin layer over the library.

mod bench;
mod check;
mod eval;
mod export;
mod plugins;
mod run;
mod sample;
mod schema;
mod train;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// evolve trains a text-to-image diffusion model (the base model) on images bought from better
/// models (teachers), while a vision-language model (the judge) keeps rewriting the training
/// set: keeping what the base model still gets wrong, expanding it, deleting what it has
/// mastered, and mutating in new prompts (EvolveDirector, arXiv 2410.07133).
#[derive(Debug, Parser)]
#[command(name = "evolve", version, propagate_version = true)]
#[command(after_help = "Start with:  evolve check examples/shapes/evolve.toml\n\
                        Logs:        EVOLVE_LOG=info evolve ... (tracing filter syntax)")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The layouts `evolve export --dataset` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DatasetFormat {
    /// Images beside metadata.jsonl (Hugging Face `imagefolder`).
    Imagefolder,
    /// Tar shards of {key}.png, {key}.txt, {key}.json.
    Webdataset,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment: train while the judge evolves the training set.
    ///
    /// Buys teacher images for the initial prompts, then trains the base model without pause
    /// while, every `director.every_steps` steps, a round renders part of the set with the base
    /// model, has the judge compare each render with the teacher's image, and applies the
    /// operator chain: expanding what the model still gets wrong, deleting what it has mastered,
    /// mutating in new prompts. Stops at the first budget reached (`budget.*`), then evaluates.
    ///
    /// Everything paid for is in the run's ledger before it is used: after Ctrl-C or a crash,
    /// `evolve run EXPERIMENT --resume` continues the same run and pays for nothing twice.
    Run {
        /// The experiment file.
        experiment: PathBuf,
        /// Continue the run in the run directory instead of starting a new one.
        #[arg(long)]
        resume: bool,
        /// Where the run lives (default: runs/<run.name>).
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Print JSON events on stdout (one per line: status, round, note, finished) instead of
        /// progress bars and tables.
        #[arg(long)]
        json: bool,
        /// Train data-parallel on N GPUs: this process (rank 0, which also runs the director)
        /// on `run.device` and N-1 worker processes on the next GPUs, each on its own share of
        /// every batch (a step trains N x `training.batch_size` images), gradients averaged
        /// over NCCL (builds with the `nccl` feature) or loopback TCP. With `device = "cpu"`
        /// the ranks are CPU processes.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        gpus: u16,
    },
    /// One rank of a data-parallel run; started by `evolve run --gpus N`, not by hand.
    #[command(hide = true)]
    Worker {
        /// The experiment file rank 0 runs.
        experiment: PathBuf,
        /// The run directory.
        #[arg(long, value_name = "DIR")]
        run_dir: PathBuf,
        /// This process's rank (1 or more).
        #[arg(long)]
        rank: usize,
        /// How many ranks train.
        #[arg(long)]
        world: usize,
        /// Rank 0's control address.
        #[arg(long, value_name = "ADDR")]
        control: String,
        /// Where the model's gradient averaging meets.
        #[arg(long, value_name = "ADDR")]
        rendezvous: String,
    },
    /// Validate experiment files against their schema and every plugin's config schema.
    Check {
        /// Experiment files to check.
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
    },
    /// Print the JSON Schema of experiment files, or of one plugin's config.
    Schema {
        /// A plugin name, KIND/NAME when several kinds share the name (e.g. judge/shapes), or
        /// the path of an external plugin file (.wasm or a native library).
        plugin: Option<String>,
    },
    /// List the plugins this build can use, and the external plugins in a folder.
    ///
    /// With --dir, every native library (.so/.dylib/.dll) and wasm component (.wasm) in DIR is
    /// loaded and checked; files that fail to load are listed with the reason, and the exit
    /// status is non-zero.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A folder of external plugins to list too.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Train without the director (the paper's baseline: uniform teacher data).
    ///
    /// Buys images for the experiment's initial prompts (the prompt file, then `prompts.generate`
    /// written by the judge, capped by `budget.max_teacher_calls`) from the first teacher, trains
    /// on them uniformly for `budget.max_steps`, checkpoints every `training.checkpoint_every`
    /// steps, and ends with the evaluation table.
    Train {
        /// The experiment file.
        experiment: PathBuf,
        /// Train on uniformly drawn teacher data, no judge and no curation.
        #[arg(long = "static", required = true)]
        static_data: bool,
        /// Where the run lives (default: runs/<run.name>-static).
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
        /// Continue the run in the run directory from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Render images from a run's model, or from a pretrained model folder.
    Sample {
        /// The run directory.
        #[arg(long, value_name = "DIR", required_unless_present = "pretrained", conflicts_with = "pretrained")]
        run: Option<PathBuf>,
        /// A pretrained model folder instead of a run (for `dit`: a diffusers PixArt pipeline),
        /// rendered at its own size.
        #[arg(long, value_name = "DIR")]
        pretrained: Option<PathBuf>,
        /// The base-model plugin that reads --pretrained.
        #[arg(long, value_name = "NAME", default_value = "dit", requires = "pretrained")]
        plugin: String,
        /// The sampler, by the model's name for it (`dit`: ddim, dpm; default: the model's).
        #[arg(long)]
        sampler: Option<String>,
        /// The starting noise instead of the seed's: a safetensors file with an f32 tensor
        /// `latents` of shape (N, C, H, W), or (1, C, H, W) for every image.
        #[arg(long, value_name = "FILE")]
        init_noise: Option<PathBuf>,
        /// The prompt to render.
        #[arg(long)]
        prompt: String,
        /// How many images (laid out as a grid).
        #[arg(short, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        n: u32,
        /// Seed of the initial noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sampler steps (default: the model's).
        #[arg(long)]
        steps: Option<u32>,
        /// Classifier-free guidance scale (default: the model's).
        #[arg(long)]
        guidance: Option<f32>,
        /// The PNG to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a run's model (EMA weights, latest checkpoint) in its ecosystem's format — for `dit`
    /// with a VAE and T5, a diffusers pipeline folder (`PixArtAlphaPipeline.from_pretrained`) —
    /// or, with --dataset, the text-image set it bought and curated.
    ///
    /// The dataset is an image folder with metadata.jsonl (Hugging Face `imagefolder`) or, with
    /// --format webdataset, tar shards of {key}.png, {key}.txt and {key}.json; either way with a
    /// dataset card (README.md). Every image the run bought is in it — winners and losers of
    /// each prompt's tournament, active and deleted — unless filtered. The folder appears whole
    /// or not at all. Example:
    ///
    ///   evolve export --run runs/shapes --dataset --active-only --out shapes-set
    #[command(verbatim_doc_comment)]
    Export {
        /// The run directory.
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// The folder to write (refused if it exists, unless --force).
        #[arg(long, value_name = "FOLDER")]
        out: PathBuf,
        /// Replace an existing --out.
        #[arg(long)]
        force: bool,
        /// Export the run's curated text-image set instead of its model.
        #[arg(long)]
        dataset: bool,
        /// The dataset's layout.
        #[arg(long, value_enum, default_value_t = DatasetFormat::Imagefolder, requires = "dataset")]
        format: DatasetFormat,
        /// Only samples in the active set at export.
        #[arg(long, requires = "dataset")]
        active_only: bool,
        /// Only the images that won their prompt's tournament (the training samples).
        #[arg(long, requires = "dataset")]
        winners_only: bool,
        /// Only images bought in this round (0: the initial set and imported images).
        #[arg(long, value_name = "N", requires = "dataset")]
        round: Option<i64>,
    },
    /// Score a run's model (or a teacher) on the experiment's evaluation suite.
    Eval {
        /// The run directory.
        #[arg(long, value_name = "DIR", required_unless_present = "teacher")]
        run: Option<PathBuf>,
        /// Score a teacher plugin (with its default config) instead of a run.
        #[arg(long, conflicts_with = "run")]
        teacher: Option<String>,
        /// The evaluator plugin (default: the only one registered, or the experiment's).
        #[arg(long)]
        suite: Option<String>,
        /// Image side in pixels for `--teacher`.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(16..=4096))]
        size: u32,
        /// Images rendered per prompt (GenEval renders 4): more is a steadier score, in
        /// proportionally more time. Default: the experiment's `director.eval_images_per_prompt`
        /// for --run, 1 for --teacher.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        images_per_prompt: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the HTML report of a run (RUN/report/index.html, self-contained, viewable offline).
    ///
    /// Charts of loss, learning rate and trainer load; the training set's growth, deletions and
    /// the judge's verdicts per round; teacher calls and cost against the budget; evaluation by
    /// category; per-teacher win rates; base-vs-teacher image grids; the prompt family tree.
    /// `evolve run` rewrites it after every round.
    Report {
        /// The run directory.
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
    },
    /// Serve an embedded world over OpenAI-compatible (and Ollama) images and chat endpoints.
    ///
    /// `POST /v1/images/generations` renders with the shapes teacher; `POST /v1/chat/completions`
    /// answers evolve's judge prompts with the shapes detector, and so does Ollama's
    /// `POST /api/chat`. Point the `openai` teacher and judge at `http://ADDR/v1` (the `ollama`
    /// judge at `http://ADDR`) to try the HTTP plugins offline
    /// (examples/openai-serve/evolve.toml). Loopback only, unless a bearer token is set.
    Serve {
        /// The world to serve.
        #[arg(long, default_value = "shapes")]
        world: String,
        /// Address to bind (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8765")]
        addr: std::net::SocketAddr,
        /// Environment variable holding the bearer token that requests must carry (required
        /// to bind a non-loopback address).
        #[arg(long, default_value = "EVOLVE_SERVE_TOKEN", value_name = "VAR")]
        token_env: String,
    },
    /// Run a benchmark; ends with `figure-name: value` lines for scripts.
    ///
    /// train-throughput: images/s of a training step, evolve vs PyTorch eager (needs
    /// bench/setup-torch.sh). data-efficiency: ShapesEval vs teacher calls at equal training
    /// steps, uniform prompts vs the director (exact and noisy judge, and without each curation
    /// step), every point over several seeds with a 95% interval (about an hour on 2 CPU cores
    /// by default; --quick for a smoke run); writes a table and an SVG chart under --out.
    /// plugin-overhead: cost of one operator call, built-in vs the probe plugins given with
    /// --probe (`bench/plugin-overhead.sh` builds them from this repository and runs it).
    /// shape-readback: how often the model of the run at --run draws
    /// the shape a single-object prompt asks for, read by the shapes world's detector.
    /// teacher-routing: ShapesEval and money of each director.teacher_selection policy (all,
    /// parent_winner, bandit) with three teachers of different price and quality, over seeds.
    Bench {
        /// Which benchmark: train-throughput, data-efficiency, plugin-overhead, shape-readback or
        /// teacher-routing.
        name: String,
        /// shape-readback: the run whose model is measured.
        #[arg(long, value_name = "DIR")]
        run: Option<PathBuf>,
        /// Python with PyTorch for reference measurements (default: bench/.venv/bin/python,
        /// else python3).
        #[arg(long, value_name = "PATH")]
        python: Option<std::path::PathBuf>,
        /// Only these cases (e.g. `tiny`). train-throughput: `tiny` and `mid` compare with
        /// PyTorch eager on the CPU; `pixart-xl-256`, `pixart-xl-512` (and `tiny-latent`) time
        /// the transformer's training step alone at PixArt-XL/2's shapes on --device, with
        /// TFLOP/s and MFU (bench/device/train-throughput.sh runs them beside PyTorch).
        #[arg(long)]
        case: Vec<String>,
        /// train-throughput: the device of the pixart cases (`cpu`, `cuda:N`; CUDA needs a
        /// build with `--features cuda`, see scripts/build-cuda.sh).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// train-throughput: the pixart cases' compute precision.
        #[arg(long, default_value = "bf16", value_parser = ["f32", "bf16"])]
        precision: String,
        /// train-throughput: the pixart cases with gradient checkpointing of the blocks.
        #[arg(long)]
        checkpointing: bool,
        /// data-efficiency: trainer steps of every run (default 400; --quick: 30);
        /// teacher-routing: the same (default 1500; --quick: 40).
        #[arg(long)]
        steps: Option<u64>,
        /// data-efficiency: teacher-call budgets, comma-separated (default 20,60,200; --quick: 8,16).
        #[arg(long, value_delimiter = ',')]
        budgets: Option<Vec<u64>>,
        /// data-efficiency: seeds per arm and budget (default 3; --quick: 2); at least 2 for
        /// intervals. shape-readback: seeds per prompt (default 4). teacher-routing: seeds per
        /// policy (default 4; --quick: 1).
        #[arg(long)]
        seeds: Option<u64>,
        /// data-efficiency, teacher-routing: the first seed; the seeds are --first-seed,
        /// --first-seed + 1, … (default 0). Splits one benchmark across processes or machines.
        /// data-efficiency: give each its own seeds and --out, then copy their points.csv lines
        /// into one folder and run the whole with --resume to table them together.
        /// teacher-routing: give each its own seeds and the same --out (each run has its own
        /// folder), then run the whole with --resume.
        #[arg(long, value_name = "SEED", default_value_t = 0)]
        first_seed: u64,
        /// data-efficiency: only these arms, comma-separated (uniform, director, noisy,
        /// no-expansion, no-deletion, no-mutation; not run by default: near-misses, the
        /// director buying the near misses first; redraw, the director whose judge redraws
        /// every word of a failed prompt's structure; early, the director buying all it asks
        /// for early, without deletion; early-noisy, the same with the noisy judge; the
        /// uniform baseline is always run).
        #[arg(long, value_delimiter = ',')]
        arms: Option<Vec<String>>,
        /// data-efficiency, teacher-routing: a smoke run (tiny budgets and steps: minutes).
        #[arg(long)]
        quick: bool,
        /// data-efficiency: keep the points already in --out's points.csv (an interrupted run
        /// of the same settings) and measure only the missing ones; refused when --out's
        /// settings.toml records another --steps, --pool, --start-from or --learning-rate.
        /// teacher-routing: keep the finished runs in --out whose experiment is unchanged.
        #[arg(long)]
        resume: bool,
        /// data-efficiency, teacher-routing: where the runs are written (default
        /// target/bench/NAME).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// data-efficiency: where the initial prompts come from: `grammar` (the judge writes them,
        /// uniformly over the world's grammar, which ShapesEval is drawn from) or `natural` (the
        /// world's natural set, skewed as real captions are: counts and relations rare).
        #[arg(long, default_value = "grammar", value_parser = ["grammar", "natural"])]
        pool: String,
        /// data-efficiency, teacher-routing: images per ShapesEval prompt of each run's final
        /// score (GenEval draws 4; default: data-efficiency 1, teacher-routing 4; --quick: 1).
        /// teacher-routing scores a kept run again at
        /// a new count, from its final checkpoint; data-efficiency --resume keeps only the
        /// points measured at this count.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        eval_images: Option<u32>,
        /// data-efficiency: every arm's model starts from this checkpoint (a run's
        /// `checkpoints/step-…` folder, of the tiny preset; the dit's `start_from`) instead of random
        /// weights, as the paper's arms all start from PixArt-alpha; the calls that trained it
        /// are not counted. Default: from scratch.
        #[arg(long, value_name = "DIR")]
        start_from: Option<PathBuf>,
        /// data-efficiency: every run's peak learning rate (the dit's `optim.learning_rate`;
        /// default the model's own, 0.001). A fine-tune from --start-from on a few hundred
        /// images may want less.
        #[arg(long, value_name = "RATE", value_parser = positive_rate, allow_hyphen_values = true)]
        learning_rate: Option<f64>,
        /// plugin-overhead: a plugin to time against the built-in, as KIND=PATH: `native=` the
        /// probe operator as a native library (tests/plugins/probe-native), `wasm=` as a wasm
        /// component (tests/plugins/probe-wasm), `python=` the Python `banlist` component
        /// (examples/plugins/python-operator). Repeat for several.
        #[arg(long, value_name = "KIND=PATH")]
        probe: Vec<String>,
    },
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { experiments } => check::run(&experiments),
        Command::Schema { plugin } => schema::run(plugin.as_deref()),
        Command::Plugins { json, dir } => plugins::run(json, dir.as_deref()),
        Command::Run { experiment, resume, run_dir, quiet, json, gpus } => {
            run::run(&experiment, run::Options { run_dir, resume, quiet, json, gpus: gpus.into() })
        }
        Command::Worker { experiment, run_dir, rank, world, control, rendezvous } => {
            let group = evolve_sdk::DataParallel { rank, world, rendezvous };
            let args = evolve_core::ranks::worker::WorkerArgs { experiment, run_dir, group, control };
            evolve_core::ranks::worker::serve(&args).with_context(|| format!("evolve worker (rank {rank})"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train { experiment, run_dir, resume, quiet, .. } => train::run(&experiment, run_dir, resume, quiet),
        Command::Sample { run, pretrained, plugin, prompt, n, seed, steps, guidance, sampler, init_noise, out } => {
            let source = match (run, pretrained) {
                (Some(run), _) => sample::Source::Run(run),
                (None, Some(dir)) => sample::Source::Pretrained { plugin, dir },
                (None, None) => bail!("give --run DIR or --pretrained DIR"),
            };
            let options = sample::Options { n, seed, steps, guidance, sampler, init_noise };
            sample::run(&source, &prompt, &options, &out)
        }
        Command::Export { run, out, force, dataset: false, .. } => export::run(&run, &out, force),
        Command::Export { run, out, force, format, active_only, winners_only, round, .. } => {
            let filter = evolve_core::store::DatasetFilter { active_only, winners_only, round };
            let format = match format {
                DatasetFormat::Imagefolder => evolve_core::dataset::Format::ImageFolder,
                DatasetFormat::Webdataset => evolve_core::dataset::Format::WebDataset,
            };
            export::dataset(&run, &out, evolve_core::dataset::ExportOptions { format, filter, force })
        }
        Command::Eval { teacher: Some(teacher), suite, size, images_per_prompt, json, .. } => {
            eval::teacher(&teacher, suite.as_deref(), size, images_per_prompt.unwrap_or(1), json)
        }
        Command::Eval { run: Some(run), suite, images_per_prompt, json, .. } => {
            eval::run(&run, suite.as_deref(), images_per_prompt, json)
        }
        Command::Eval { .. } => bail!("give --run DIR or --teacher NAME"),
        Command::Report { run } => {
            let path = evolve_core::report::write(&run)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { world, addr, token_env } => serve(&world, addr, &token_env),
        Command::Bench {
            name,
            run,
            python,
            case,
            device,
            precision,
            checkpointing,
            steps,
            budgets,
            seeds,
            first_seed,
            arms,
            quick,
            resume,
            out,
            probe,
            pool,
            eval_images,
            start_from,
            learning_rate,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from("target/bench").join(&name));
            let natural = pool == "natural";
            let data = bench::DataSettings {
                steps,
                budgets,
                seeds,
                first_seed,
                arms,
                quick,
                resume,
                out,
                natural,
                eval_images,
                start_from,
                learning_rate,
            };
            let bf16 = precision == "bf16";
            let step = bench::StepOptions { device, bf16, checkpointing };
            bench::run(&name, run, python, &case, &probe, data, step)
        }
    }
}

fn serve(world: &str, addr: std::net::SocketAddr, token_env: &str) -> anyhow::Result<ExitCode> {
    use evolve_core::serve;
    let token = std::env::var(token_env).ok().filter(|t| !t.is_empty());
    serve::check_bind(addr, token.as_deref(), token_env)?;
    let router = serve::router(world, token)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        println!("evolve serve: world {world} on http://{bound}/v1");
        use std::io::Write;
        std::io::stdout().flush()?;
        serve::serve(listener, router).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--learning-rate`: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err(format!("{text} is not a learning rate: give a number above 0, such as 0.0003")),
        Err(e) => Err(format!("{text}: {e}; give a number above 0, such as 0.0003")),
    }
}

/// An error with its chain of causes, one per line. Many errors already say their source's
/// message (`checkpoint run/ckpt: the model predicts …`); a cause whose text the last line shown
/// already contains is not printed again.
pub fn render_error(error: &anyhow::Error) -> String {
    if let Some(evolve_core::experiment::ExperimentError::Invalid(diagnostics)) = error.downcast_ref() {
        return diagnostics.to_string();
    }
    let mut shown = error.to_string();
    let mut out = format!("error: {shown}");
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
            shown = text;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_error;

    #[derive(Debug, thiserror::Error)]
    #[error("the model predicts epsilon")]
    struct Mismatch;

    #[derive(Debug, thiserror::Error)]
    #[error("checkpoint run/ckpt: {0}")]
    struct Embeds(#[source] Mismatch);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the run")]
    struct Opaque(#[source] Mismatch);

    #[test]
    fn a_cause_already_in_the_line_above_is_not_repeated() {
        let error = anyhow::Error::new(Embeds(Mismatch)).context("cannot resume");
        assert_eq!(
            render_error(&error),
            "error: cannot resume\n  caused by: checkpoint run/ckpt: the model predicts epsilon"
        );
        let error = anyhow::Error::new(Opaque(Mismatch));
        assert_eq!(render_error(&error), "error: cannot open the run\n  caused by: the model predicts epsilon");
    }
}
