//! The teacher's side of the world: lay a prompt out as a scene, then rasterise it.
//!
//! Sizes are half-extents (half the bounding-box side) in units of `side / 32`: small objects 4,
//! large 7, unsized ones either (small when three or four share the frame). The detector calls
//! an object small up to 5.25 and large from 5.75, so every render is read back with more than
//! a pixel to spare. Below 4 a circle on the pixel grid is too square to tell apart.

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

/// Half-extent of a small object and of a large one.
const SMALL: f32 = 4.0;
const LARGE: f32 = 7.0;

fn size_of(spec: &ObjectSpec, crowded: bool, rng: &mut SplitMix64) -> Size {
    match spec.size {
        Some(size) => size,
        None if crowded => Size::Small,
        None => Size::ALL[rng.below(2) as usize],
    }
}

/// Where the objects of `prompt` go, in its order, in units of `side / 32`: one object in the
/// middle; two side by side (one above the other for `above` / `below`), in the prompt's order
/// read left to right or top to bottom; three in a row; four in a square.
fn slots(prompt: &Prompt) -> &'static [(f32, f32)] {
    const ROW: [(f32, f32); 2] = [(8.0, 16.0), (24.0, 16.0)];
    const COLUMN: [(f32, f32); 2] = [(16.0, 8.0), (16.0, 24.0)];
    match prompt {
        Prompt::Single(_) => &[(16.0, 16.0)],
        Prompt::Count(3, _) => &[(6.0, 16.0), (16.0, 16.0), (26.0, 16.0)],
        Prompt::Count(4, _) => &[(8.0, 8.0), (24.0, 8.0), (8.0, 24.0), (24.0, 24.0)],
        Prompt::Count(..) | Prompt::Pair(..) | Prompt::Relation(_, Relation::LeftOf, _) => &ROW,
        Prompt::Relation(_, Relation::RightOf, _) => &[ROW[1], ROW[0]],
        Prompt::Relation(_, Relation::Above, _) => &COLUMN,
        Prompt::Relation(_, Relation::Below, _) => &[COLUMN[1], COLUMN[0]],
    }
}

/// Lays `prompt` out at `width` x `height`: each object in its slot ([`slots`]), small or
/// large, in its colour or a random one.
///
/// Placement is fixed by the prompt's structure, not drawn: a small patch-based model spends
/// CPU minutes learning where objects may go and how many, and with free placement it never
/// got to shapes (measured: README, "What to expect from the embedded default"). Sizes, colours left open and the
/// background stay random.
pub fn layout(prompt: &Prompt, width: u32, height: u32, rng: &mut SplitMix64) -> Scene {
    let scale = width.min(height) as f32 / 32.0;
    let (sx, sy) = (width as f32 / 32.0, height as f32 / 32.0);
    let specs = prompt.objects();
    let crowded = specs.len() > 2;
    let background = 60 + rng.below(140) as u8;
    let count_colour = *rng.pick(&Colour::ALL).expect("non-empty");
    let objects = specs
        .iter()
        .zip(slots(prompt))
        .map(|(spec, &(cx, cy))| {
            let extent = match size_of(spec, crowded, rng) {
                Size::Small => SMALL,
                Size::Large => LARGE,
            };
            let colour = spec.colour.unwrap_or_else(|| match prompt {
                Prompt::Count(..) => count_colour,
                _ => *rng.pick(&Colour::ALL).expect("non-empty"),
            });
            Placed { shape: spec.shape, colour, cx: cx * sx, cy: cy * sy, extent: extent * scale }
        })
        .collect();
    Scene { width, height, background, objects }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::Structure;

    /// Every prompt's objects fit the frame, apart by two units or more, each in its slot and
    /// of its size: what lets the detector read any render back exactly.
    #[test]
    fn every_prompt_lays_out_in_its_slots_apart_and_inside() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..2000 {
            let prompt = Prompt::random_any(&mut rng);
            for side in [32, 96] {
                let scene = layout(&prompt, side, side, &mut rng);
                let unit = side as f32 / 32.0;
                assert_eq!(scene.objects.len(), prompt.objects().len(), "{prompt}");
                for (i, (o, spec)) in scene.objects.iter().zip(prompt.objects()).enumerate() {
                    assert_eq!(o.shape, spec.shape);
                    assert!(spec.colour.is_none_or(|c| c == o.colour), "{prompt}");
                    let want = spec.size.map(|s| if s == Size::Small { SMALL } else { LARGE });
                    assert!(want.is_none_or(|e| e * unit == o.extent), "{prompt}");
                    assert!(o.cx - o.extent >= 0.0 && o.cx + o.extent <= side as f32, "{prompt}");
                    assert!(o.cy - o.extent >= 0.0 && o.cy + o.extent <= side as f32, "{prompt}");
                    for p in &scene.objects[..i] {
                        let gap =
                            ((o.cx - p.cx).abs() - o.extent - p.extent).max((o.cy - p.cy).abs() - o.extent - p.extent);
                        assert!(gap >= 2.0 * unit, "{prompt}: gap {gap}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_prompt_places_its_objects() {
        let parse = |text: &str| Prompt::parse(text).unwrap();
        let mut rng = SplitMix64::new(1);
        let centres = |text: &str, rng: &mut SplitMix64| -> Vec<(f32, f32)> {
            layout(&parse(text), 32, 32, rng).objects.iter().map(|o| (o.cx, o.cy)).collect()
        };
        assert_eq!(centres("a circle", &mut rng), [(16.0, 16.0)]);
        assert_eq!(centres("a circle to the right of a square", &mut rng), [(24.0, 16.0), (8.0, 16.0)]);
        assert_eq!(centres("a circle below a square", &mut rng), [(16.0, 24.0), (16.0, 8.0)]);
        assert_eq!(centres("four circles", &mut rng).len(), 4);
        assert_eq!(Structure::ALL.len(), 4, "a new structure needs slots");
    }
}
