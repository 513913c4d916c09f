use evolve_sdk::SplitMix64;
use evolve_shapes::clauses::clauses;
use evolve_shapes::detect::detect;
use evolve_shapes::grammar::Prompt;
use evolve_shapes::render::render;
fn main() {
    let mut rng = SplitMix64::new(2024);
    let mut shown = 0;
    let (mut ok, mut all) = (0, 0);
    for i in 0..2000u64 {
        let prompt = Prompt::random_any(&mut rng);
        let mut image = render(&prompt, 32, 32, i);
        if std::env::args().any(|a| a == "blur") {
            blur(&mut image);
        }
        let objs = detect(&image);
        for c in clauses(&prompt) {
            all += 1;
            if c.holds(&objs) {
                ok += 1;
            }
            if !c.holds(&objs) && shown < 12 {
                shown += 1;
                println!("{prompt} | {c:?}");
                for o in &objs {
                    println!(
                        "   {:?} {:?} e={:.2} area={} fit={:.2} at ({:.1},{:.1})",
                        o.shape, o.colour, o.extent, o.area, o.fit, o.cx, o.cy
                    );
                }
            }
        }
    }
    println!("accuracy {:.4}", ok as f64 / all as f64);
}

fn blur(image: &mut evolve_sdk::Image) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let src = image.clone();
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0u32; 3];
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let k = (2 - dx.abs()) as u32 * (2 - dy.abs()) as u32;
                    let p = src.get((x + dx).clamp(0, w - 1) as u32, (y + dy).clamp(0, h - 1) as u32).unwrap();
                    (0..3).for_each(|c| acc[c] += k * p[c] as u32);
                }
            }
            image.put(x as u32, y as u32, acc.map(|a| ((a + 8) / 16) as u8));
        }
    }
}
