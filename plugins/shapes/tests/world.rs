//! The embedded world's promises: the detector reads the teacher back, survives the damage a
//! half-trained model does, scores noise at zero, and no generator leaks ShapesEval prompts.

use evolve_sdk::{Choice, CompareRequest, EvalCase, Evaluator, Image, SplitMix64};
use evolve_shapes::clauses::{clauses, score};
use evolve_shapes::detect::detect;
use evolve_shapes::eval::{Category, is_eval_prompt, suite, training_prompt};
use evolve_shapes::evaluator::ShapesEval;
use evolve_shapes::grammar::{Prompt, Structure};
use evolve_shapes::judge::{ExpansionStyle, ShapesJudge, ShapesJudgeConfig};
use evolve_shapes::render::render;

/// Clause accuracy of the detector over `n` random prompts rendered at `size`, after `damage`.
fn clause_accuracy(n: u64, size: u32, damage: impl Fn(&mut Image, &mut SplitMix64)) -> f64 {
    let (mut ok, mut all) = (0, 0);
    let mut rng = SplitMix64::new(2024);
    for i in 0..n {
        let prompt = Prompt::random_any(&mut rng);
        let mut image = render(&prompt, size, size, i);
        damage(&mut image, &mut rng);
        let (s, t) = score(&prompt, &detect(&image));
        ok += s;
        all += t;
    }
    ok as f64 / all as f64
}

fn gaussian(rng: &mut SplitMix64) -> f64 {
    // Box-Muller.
    let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn add_noise(image: &mut Image, rng: &mut SplitMix64, sigma: f64) {
    for p in image.pixels_mut() {
        *p = (*p as f64 + sigma * gaussian(rng)).round().clamp(0.0, 255.0) as u8;
    }
}

/// A 3x3 binomial (Gaussian, sigma ~0.7 px) blur.
fn blur(image: &mut Image) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let src = image.clone();
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0u32; 3];
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let k = (2 - dx.abs()) as u32 * (2 - dy.abs()) as u32;
                    let p =
                        src.get((x + dx).clamp(0, w - 1) as u32, (y + dy).clamp(0, h - 1) as u32).unwrap_or_default();
                    (0..3).for_each(|c| acc[c] += k * p[c] as u32);
                }
            }
            image.put(x as u32, y as u32, acc.map(|a| ((a + 8) / 16) as u8));
        }
    }
}

fn colour_shift(image: &mut Image, shift: [i32; 3]) {
    for (i, p) in image.pixels_mut().iter_mut().enumerate() {
        *p = (*p as i32 + shift[i % 3]).clamp(0, 255) as u8;
    }
}

/// Ragged outlines: each pixel on an object's edge takes its neighbour's colour half the time.
fn blobby_edges(image: &mut Image, rng: &mut SplitMix64) {
    let src = image.clone();
    let (w, h) = (image.width(), image.height());
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let here = src.get(x, y).unwrap_or_default();
            let (dx, dy) = [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)][rng.below(4) as usize];
            let there = src.get((x as i64 + dx) as u32, (y as i64 + dy) as u32).unwrap_or_default();
            let differs = here.iter().zip(there).map(|(a, b)| (*a as i32 - b as i32).abs()).sum::<i32>() > 60;
            if differs && rng.chance(0.5) {
                image.put(x, y, there);
            }
        }
    }
}

#[test]
fn detector_reads_teacher_renders() {
    let at32 = clause_accuracy(2000, 32, |_, _| {});
    let at64 = clause_accuracy(500, 64, |_, _| {});
    println!("clause accuracy: 32 px {at32:.4}, 64 px {at64:.4}");
    assert!(at32 >= 0.99, "32 px: {at32}");
    assert!(at64 >= 0.99, "64 px: {at64}");
}

/// Damage done to an image, drawing randomness from the generator.
type Damage = Box<dyn Fn(&mut Image, &mut SplitMix64)>;

#[test]
fn detector_survives_degradations() {
    let cases: [(&str, Damage); 4] = [
        ("gaussian noise sigma 12", Box::new(|img, rng| add_noise(img, rng, 12.0))),
        ("3x3 Gaussian blur", Box::new(|img, _| blur(img))),
        ("colour shift", Box::new(|img, _| colour_shift(img, [18, -14, 10]))),
        ("blobby edges", Box::new(blobby_edges)),
    ];
    for (name, damage) in cases {
        let acc = clause_accuracy(600, 32, damage);
        println!("{name}: {acc:.4}");
        assert!(acc >= 0.90, "{name}: {acc}");
    }
    // All four at once is harsher than any half-trained model we have seen; it must still
    // read most clauses.
    let compound = clause_accuracy(600, 32, |img, rng| {
        blobby_edges(img, rng);
        blur(img);
        colour_shift(img, [-12, 10, 8]);
        add_noise(img, rng, 8.0);
    });
    println!("all four at once: {compound:.4}");
    assert!(compound >= 0.80, "compound: {compound}");
}

fn eval_scores(render_case: impl Fn(&EvalCase) -> Image) -> Vec<(String, f64)> {
    let evaluator = ShapesEval;
    let suite = evaluator.suite();
    let mut by_category: Vec<(String, f64, usize)> = vec![];
    for case in &suite.cases {
        let s = evaluator.score(case, &render_case(case)).unwrap() as f64;
        match by_category.iter_mut().find(|c| c.0 == case.category) {
            Some(c) => {
                c.1 += s;
                c.2 += 1;
            }
            None => by_category.push((case.category.clone(), s, 1)),
        }
    }
    by_category.into_iter().map(|(c, s, n)| (c, s / n as f64)).collect()
}

#[test]
fn teacher_aces_shapes_eval_and_noise_scores_zero() {
    let teacher = eval_scores(|case| render(&Prompt::parse(&case.prompt).unwrap(), 32, 32, case.seed));
    let overall = teacher.iter().map(|c| c.1).sum::<f64>() / teacher.len() as f64;
    println!("teacher: {teacher:?} overall {overall:.4}");
    assert!(overall >= 0.99, "{teacher:?}");
    assert!(teacher.iter().all(|c| c.1 >= 0.97), "{teacher:?}");

    let noise = eval_scores(|case| {
        let mut rng = SplitMix64::new(case.seed);
        let pixels = (0..32 * 32 * 3).map(|_| rng.next_u64() as u8).collect();
        Image::from_rgb(32, 32, pixels).unwrap()
    });
    let overall = noise.iter().map(|c| c.1).sum::<f64>() / noise.len() as f64;
    println!("noise: overall {overall:.4}");
    assert!(overall <= 0.01, "{noise:?}");
    // Saturated noise (what an untrained diffusion model emits after clipping) has same-colour
    // clusters big enough to be objects; their ragged outlines must not pass as shapes.
    let saturated = eval_scores(|case| {
        let mut rng = SplitMix64::new(case.seed ^ 0x5A7);
        let pixels = (0..32 * 32 * 3).map(|_| if rng.chance(0.5) { 255 } else { 0 }).collect();
        Image::from_rgb(32, 32, pixels).unwrap()
    });
    let overall = saturated.iter().map(|c| c.1).sum::<f64>() / saturated.len() as f64;
    println!("saturated noise: overall {overall:.4}");
    assert!(overall <= 0.01, "{saturated:?}");
    let blank = eval_scores(|_| Image::filled(32, 32, [128, 128, 128]));
    assert!(blank.iter().all(|c| c.1 == 0.0), "{blank:?}");
}

#[test]
fn shapes_eval_is_fixed_and_covers_geneval_categories() {
    let all = suite();
    assert!(all.len() >= 400, "{}", all.len());
    for (category, count) in Category::ALL {
        assert_eq!(all.iter().filter(|e| e.category == category).count(), count, "{category:?}");
    }
    let distinct: std::collections::HashSet<_> = all.iter().map(|e| e.prompt).collect();
    assert_eq!(distinct.len(), all.len());
    // A snapshot of the suite: if this changes, bump eval::VERSION and update the fingerprint.
    let text: String = all.iter().map(|e| format!("{}|{}|{}\n", e.category.name(), e.prompt, e.seed)).collect();
    let fingerprint = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    println!("suite fingerprint {fingerprint:#x}; first: {}", all[0].prompt);
    assert_eq!(fingerprint, SUITE_FINGERPRINT, "ShapesEval changed: bump VERSION");
}

const SUITE_FINGERPRINT: u64 = 0xa450_9ec4_71b4_5eff;

#[test]
fn training_generators_never_emit_shapes_eval_prompts() {
    let mut rng = SplitMix64::new(9);
    for _ in 0..100_000 {
        assert!(!is_eval_prompt(&training_prompt(&mut rng)));
    }
    let judge = ShapesJudge::new(ShapesJudgeConfig::default(), 1).unwrap();
    let mut recent: Vec<String> = vec![];
    for seed in 0..2_000u64 {
        let start = training_prompt(&mut rng).to_string();
        let variations = judge.variations(&start, 3, seed).unwrap();
        assert_eq!(variations.len(), 3);
        let parsed: Vec<Prompt> = variations.iter().map(|v| Prompt::parse(v).unwrap()).collect();
        let start_prompt = Prompt::parse(&start).unwrap();
        let distinct: std::collections::HashSet<_> = parsed.iter().chain([&start_prompt]).collect();
        assert_eq!(distinct.len(), 4, "{start} -> {variations:?}");
        for p in &parsed {
            assert!(!is_eval_prompt(p), "expansion leaked {p}");
            assert_eq!(p.structure(), start_prompt.structure(), "{start} -> {p}");
        }
        let mutated = judge.mutation(&recent, seed);
        let m = Prompt::parse(&mutated).unwrap();
        assert!(!is_eval_prompt(&m), "mutation leaked {m}");
        assert!(!recent.contains(&mutated));
        recent.push(mutated);
    }
}

#[test]
fn redrawn_expansions_keep_only_the_structure() {
    let config = ShapesJudgeConfig { expansion: ExpansionStyle::Redraw, ..Default::default() };
    let (redraw, swap) =
        (ShapesJudge::new(config, 1).unwrap(), ShapesJudge::new(ShapesJudgeConfig::default(), 1).unwrap());
    let mut rng = SplitMix64::new(5);
    // Words of a variation not in its parent, summed over many parents: a swap changes one.
    let (mut redrawn_new, mut swapped_new) = (0, 0);
    for seed in 0..300u64 {
        let start = training_prompt(&mut rng).to_string();
        let parent: std::collections::HashSet<&str> = start.split(' ').collect();
        let new_words = |v: &String| v.split(' ').filter(|w| !parent.contains(w)).count();
        let variations = redraw.variations(&start, 3, seed).unwrap();
        let distinct: std::collections::HashSet<&String> = variations.iter().collect();
        assert_eq!(distinct.len(), 3, "{start} -> {variations:?}");
        for v in &variations {
            let p = Prompt::parse(v).unwrap();
            assert!(!is_eval_prompt(&p), "expansion leaked {p}");
            assert_ne!(v, &start);
            assert_eq!(p.structure(), Prompt::parse(&start).unwrap().structure(), "{start} -> {p}");
        }
        redrawn_new += variations.iter().map(new_words).sum::<usize>();
        swapped_new += swap.variations(&start, 3, seed).unwrap().iter().map(new_words).sum::<usize>();
    }
    assert!(redrawn_new > 2 * swapped_new, "redrawn {redrawn_new} new words, swapped {swapped_new}");
    assert_eq!(redraw.variations("a red circle", 5, 9).unwrap(), redraw.variations("a red circle", 5, 9).unwrap());
}

#[test]
fn expansion_works_even_on_tiny_structures() {
    let judge = ShapesJudge::new(ShapesJudgeConfig::default(), 1).unwrap();
    // Every uncoloured single object is a ShapesEval prompt; expansion must still find some.
    let v = judge.variations("a circle", 8, 0).unwrap();
    assert_eq!(v.len(), 8);
    assert!(judge.variations("not a prompt", 3, 0).is_err());
}

#[test]
fn mutation_changes_structure() {
    let judge = ShapesJudge::new(ShapesJudgeConfig::default(), 1).unwrap();
    let recent: Vec<String> =
        ["a red circle", "two blue squares", "a diamond and a small triangle"].map(String::from).to_vec();
    for seed in 0..50 {
        let m = Prompt::parse(&judge.mutation(&recent, seed)).unwrap();
        assert_eq!(m.structure(), Structure::Relation, "{m}");
    }
}

fn pair(prompt: &str, seed: u64) -> (Image, Image) {
    let good = render(&Prompt::parse(prompt).unwrap(), 32, 32, seed);
    let bad = render(&Prompt::parse("four yellow diamonds").unwrap(), 32, 32, seed);
    (good, bad)
}

#[test]
fn compare_prefers_the_image_satisfying_more_clauses() {
    let judge = ShapesJudge::new(ShapesJudgeConfig::default(), 0).unwrap();
    let prompt = "a red circle to the left of a blue square";
    let (good, bad) = pair(prompt, 3);
    let v = judge
        .judge(&CompareRequest { prompt: prompt.into(), images: vec![bad.clone(), good.clone()], seed: 0 })
        .unwrap();
    assert_eq!(v.choice, Choice::Best(1), "{}", v.raw);
    assert!(v.raw.starts_with("(B) is better"), "{}", v.raw);
    let v = judge.judge(&CompareRequest { prompt: prompt.into(), images: vec![good.clone(), good], seed: 0 }).unwrap();
    assert_eq!(v.choice, Choice::Tie);
    assert_eq!(clauses(&Prompt::parse(prompt).unwrap()).len(), 3);
}

#[test]
fn flip_rate_and_position_bias_emulate_a_flawed_vlm() {
    let prompt = "two green triangles";
    let rate = |config: ShapesJudgeConfig, good_first: bool| {
        let judge = ShapesJudge::new(config, 5).unwrap();
        let wrong = (0..1000u64)
            .filter(|&seed| {
                let (good, bad) = pair(prompt, seed % 7);
                let images = if good_first { vec![good, bad] } else { vec![bad, good] };
                let v = judge.judge(&CompareRequest { prompt: prompt.into(), images, seed }).unwrap();
                v.choice != Choice::Best(if good_first { 0 } else { 1 })
            })
            .count();
        wrong as f64 / 1000.0
    };
    assert_eq!(rate(ShapesJudgeConfig::default(), false), 0.0);
    let flipped = rate(ShapesJudgeConfig { flip_rate: 0.2, position_bias: 0.0, ..Default::default() }, false);
    assert!((0.15..0.25).contains(&flipped), "{flipped}");
    let biased = rate(ShapesJudgeConfig { flip_rate: 0.0, position_bias: 0.3, ..Default::default() }, false);
    assert!((0.25..0.35).contains(&biased), "{biased}");
    assert_eq!(
        rate(ShapesJudgeConfig { flip_rate: 0.0, position_bias: 0.3, ..Default::default() }, true),
        0.0,
        "bias toward A helps A"
    );
}

#[test]
fn everything_is_deterministic_under_a_seed() {
    let p = Prompt::parse("three small purple diamonds").unwrap();
    assert_eq!(render(&p, 32, 32, 11), render(&p, 32, 32, 11));
    assert_ne!(render(&p, 32, 32, 11), render(&p, 32, 32, 12));
    let judge =
        ShapesJudge::new(ShapesJudgeConfig { flip_rate: 0.3, position_bias: 0.1, ..Default::default() }, 4).unwrap();
    assert_eq!(judge.variations("a red circle", 5, 9).unwrap(), judge.variations("a red circle", 5, 9).unwrap());
    assert_eq!(judge.mutation(&["a red circle".into()], 3), judge.mutation(&["a red circle".into()], 3));
    let (a, b) = pair("a red circle", 1);
    let req = CompareRequest { prompt: "a red circle".into(), images: vec![a, b], seed: 77 };
    assert_eq!(judge.judge(&req).unwrap(), judge.judge(&req).unwrap());
}

#[test]
fn teacher_price_latency_and_failures_are_configurable() {
    use evolve_sdk::{GenerateRequest, PluginError, Teacher};
    use evolve_shapes::teacher::{ShapesTeacher, ShapesTeacherConfig};
    let request = GenerateRequest { prompt: "a red circle".into(), width: 32, height: 32, seed: 1 };
    let config = |price_usd, latency_ms, failure_rate| ShapesTeacherConfig {
        price_usd,
        latency_ms,
        failure_rate,
        concurrency: 4,
        sloppiness: 0.0,
        panic_rate: 0.0,
        invoice: None,
    };

    let teacher = ShapesTeacher::new(config(0.04, 60, 0.0), 0).unwrap();
    let start = std::time::Instant::now();
    let image = futures_executor::block_on(teacher.generate(&request)).unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(60));
    assert_eq!(image.cost, evolve_sdk::Cost::from_usd(0.04));
    assert_eq!(teacher.price(&request), evolve_sdk::Cost::from_usd(0.04));
    assert_eq!(image.image, render(&Prompt::parse("a red circle").unwrap(), 32, 32, 1));

    let flaky = ShapesTeacher::new(config(0.0, 0, 0.5), 0).unwrap();
    let failures = (0..400)
        .filter(|_| matches!(futures_executor::block_on(flaky.generate(&request)), Err(PluginError::Transient { .. })))
        .count();
    assert!((150..250).contains(&failures), "{failures} of 400 failed");

    let bad = GenerateRequest { prompt: "a photo of a cat".into(), ..request };
    assert!(matches!(futures_executor::block_on(teacher.generate(&bad)), Err(PluginError::InvalidInput(_))));
    assert!(ShapesTeacher::new(config(0.0, 0, 1.5), 0).is_err());

    let dir = tempfile::tempdir().unwrap();
    let invoice = dir.path().join("invoice.jsonl");
    let sloppy = ShapesTeacher::new(
        ShapesTeacherConfig { sloppiness: 1.0, invoice: Some(invoice.clone()), ..config(0.0, 0, 0.0) },
        0,
    )
    .unwrap();
    let wrong = (0..20u64)
        .filter(|&seed| {
            let req = GenerateRequest { seed, ..request.clone() };
            futures_executor::block_on(sloppy.generate(&req)).unwrap().image
                != render(&Prompt::parse("a red circle").unwrap(), 32, 32, seed)
        })
        .count();
    assert!(wrong >= 15, "a fully sloppy teacher rendered the prompt asked for {} of 20 times", 20 - wrong);
    let billed = std::fs::read_to_string(&invoice).unwrap();
    assert_eq!(billed.lines().count(), 20);
    assert!(billed.lines().all(|l| l.contains("\"prompt\":\"a red circle\"")));
}
