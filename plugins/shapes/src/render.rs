//! The teacher's side of the world: lay a prompt out as a scene, then rasterise it.
//!
//! Sizes are half-extents (half the bounding-box side) in units of `side / 32`: small objects
//! 4-4.5, large 6.5-7, unsized ones anywhere from 4 to 6.5 (4-5 when three or four share the
//! frame). The detector calls an object small up to 5.25 and large from 5.75, so every render is
//! read back with more than half a pixel to spare. Below 4 a circle on the pixel grid is too
//! square to tell apart.

use crate::grammar::{Colour, ObjectSpec, Prompt, Relation, Shape, Size};
use evolve_sdk::{Image, SplitMix64};

/// One object placed in a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// Its shape.
    pub shape: Shape,
    /// Its colour.
    pub colour: Colour,
    /// Centre, in pixels.
    pub cx: f32,
    /// Centre, in pixels.
    pub cy: f32,
    /// Half the side of its bounding box, in pixels.
    pub extent: f32,
}

/// A laid-out scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Background grey level.
    pub background: u8,
    /// Objects in drawing order.
    pub objects: Vec<Placed>,
}

/// Whether the pixel offset (`u`, `v`) from a shape's centre lies inside it.
pub fn inside(shape: Shape, u: f32, v: f32, e: f32) -> bool {
    match shape {
        Shape::Circle => u * u + v * v <= e * e,
        Shape::Square => u.abs() <= e && v.abs() <= e,
        // Apex at the top (v = -e), base at the bottom (v = +e).
        Shape::Triangle => v.abs() <= e && u.abs() <= (v + e) / 2.0,
        Shape::Diamond => u.abs() + v.abs() <= e,
    }
}

fn extent_range(spec: &ObjectSpec, crowded: bool) -> (f32, f32) {
    match spec.size {
        Some(Size::Small) => (4.0, 4.5),
        Some(Size::Large) => (6.5, 7.0),
        None if crowded => (4.0, 5.0),
        None => (4.0, 6.5),
    }
}

/// Lays `prompt` out at `width` x `height` so that every clause of it holds with a margin.
pub fn layout(prompt: &Prompt, width: u32, height: u32, rng: &mut SplitMix64) -> Scene {
    let scale = width.min(height) as f32 / 32.0;
    let specs = prompt.objects();
    let crowded = specs.len() > 2;
    let gap = 2.0 * scale;
    let background = 60 + rng.below(140) as u8;
    let count_colour = *rng.pick(&Colour::ALL).expect("non-empty");
    for attempt in 0..200 {
        // After many misses, shrink towards the small end of each size range.
        let shrink = (attempt as f32 / 150.0).min(1.0);
        let mut objects: Vec<Placed> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let (lo, hi) = extent_range(spec, crowded);
            let extent = scale * (lo + (hi - lo) * (1.0 - shrink) * rng.next_f64() as f32);
            let colour = spec.colour.unwrap_or_else(|| match prompt {
                Prompt::Count(..) => count_colour,
                _ => *rng.pick(&Colour::ALL).expect("non-empty"),
            });
            let placed = (0..100).find_map(|_| {
                let cx = extent + 1.0 + rng.next_f64() as f32 * (width as f32 - 2.0 * extent - 2.0);
                let cy = extent + 1.0 + rng.next_f64() as f32 * (height as f32 - 2.0 * extent - 2.0);
                let candidate = Placed { shape: spec.shape, colour, cx, cy, extent };
                let apart = objects.iter().all(|o| {
                    (o.cx - cx).abs() >= o.extent + extent + gap || (o.cy - cy).abs() >= o.extent + extent + gap
                });
                let related = match (prompt, i) {
                    (Prompt::Relation(_, relation, _), 1) => clearly(*relation, &objects[0], &candidate),
                    _ => true,
                };
                (apart && related).then_some(candidate)
            });
            match placed {
                Some(p) => objects.push(p),
                None => break,
            }
        }
        if objects.len() == specs.len() {
            return Scene { width, height, background, objects };
        }
    }
    // Unreachable for grammar prompts at 32 px and up (tested); keep the frame valid anyway.
    Scene { width, height, background, objects: vec![] }
}

/// `a` is `relation` `b` with room to spare: apart along the relation's axis by more than
/// twice the offset across it.
fn clearly(relation: Relation, a: &Placed, b: &Placed) -> bool {
    let (dx, dy) = (b.cx - a.cx, b.cy - a.cy);
    match relation {
        Relation::LeftOf => dx > 0.0 && dy.abs() * 2.0 <= dx,
        Relation::RightOf => dx < 0.0 && dy.abs() * 2.0 <= -dx,
        Relation::Above => dy > 0.0 && dx.abs() * 2.0 <= dy,
        Relation::Below => dy < 0.0 && dx.abs() * 2.0 <= -dy,
    }
}

/// Draws `scene`: a grey background with faint tint and grain, objects in jittered colours.
pub fn rasterize(scene: &Scene, rng: &mut SplitMix64) -> Image {
    let tint: Vec<i32> = (0..3).map(|_| rng.below(13) as i32 - 6).collect();
    let mut image = Image::filled(scene.width, scene.height, [0, 0, 0]);
    for y in 0..scene.height {
        for x in 0..scene.width {
            let grain = rng.below(7) as i32 - 3;
            let px = [0, 1, 2].map(|c| (scene.background as i32 + tint[c] + grain).clamp(0, 255) as u8);
            image.put(x, y, px);
        }
    }
    for object in &scene.objects {
        let base = object.colour.rgb();
        let rgb = base.map(|c| (c as i32 + rng.below(25) as i32 - 12).clamp(0, 255) as u8);
        let e = object.extent;
        let (x0, x1) = ((object.cx - e - 1.0).max(0.0) as u32, (object.cx + e + 1.0) as u32);
        let (y0, y1) = ((object.cy - e - 1.0).max(0.0) as u32, (object.cy + e + 1.0) as u32);
        for y in y0..=y1.min(scene.height - 1) {
            for x in x0..=x1.min(scene.width - 1) {
                if inside(object.shape, x as f32 + 0.5 - object.cx, y as f32 + 0.5 - object.cy, e) {
                    image.put(x, y, rgb);
                }
            }
        }
    }
    image
}

/// Renders `prompt` deterministically for `seed`.
pub fn render(prompt: &Prompt, width: u32, height: u32, seed: u64) -> Image {
    let mut rng = SplitMix64::from_parts(&[seed, 0x7265_6E64]);
    let scene = layout(prompt, width, height, &mut rng);
    rasterize(&scene, &mut rng)
}
