//! The judge's eyes: colour segmentation, connected components and template matching turn an
//! image back into objects with shape, colour, size and position.
//!
//! Pixels count as paint when their chroma (max - min channel) is high, and take the palette
//! colour nearest in hue; grey backgrounds, grain and noise have low chroma. Each 8-connected
//! region of one colour, if big enough to be an object, is matched against each shape's
//! template drawn in its bounding box; the best intersection-over-union names the shape.
//! Random noise yields no region big enough, so it scores about zero.

use crate::grammar::{Colour, Shape, Size};
use crate::render::inside;
use evolve_sdk::Image;

/// Chroma below which a pixel is background.
const MIN_CHROMA: i32 = 60;
/// Largest hue distance (degrees) to a palette colour.
const MAX_HUE_DISTANCE: f32 = 28.0;
/// Smallest region, in pixels at 32 px, that counts as an object (a small object has ~25).
const MIN_AREA_32: f32 = 10.0;
/// Smallest intersection-over-union with the best shape template for a region to count as an
/// object: renders fit at 0.9 and more, blurred ones at 0.65 and more, while the ragged clusters
/// that saturated noise forms stay below.
const MIN_FIT: f32 = 0.55;
/// Half-extent (at 32 px) at or below which an object is small, and above which it is large.
const SMALL_MAX: f32 = 5.25;
const LARGE_MIN: f32 = 5.75;

/// An object the detector found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    /// Best-matching shape.
    pub shape: Shape,
    /// Nearest palette colour.
    pub colour: Colour,
    /// Centroid, in pixels.
    pub cx: f32,
    /// Centroid, in pixels.
    pub cy: f32,
    /// Half the side of the bounding box of the fitted shape, in units of `side / 32`.
    pub extent: f32,
    /// Pixels in the region.
    pub area: u32,
    /// Intersection-over-union with the best template.
    pub fit: f32,
}

impl Detected {
    /// Whether the object reads as `size`.
    pub fn is(&self, size: Size) -> bool {
        match size {
            Size::Small => self.extent <= SMALL_MAX,
            Size::Large => self.extent >= LARGE_MIN,
        }
    }
}

fn hue(rgb: [u8; 3]) -> Option<f32> {
    let [r, g, b] = rgb.map(|c| c as i32);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let chroma = max - min;
    if chroma < MIN_CHROMA {
        return None;
    }
    let c = chroma as f32;
    let h = if max == r {
        ((g - b) as f32 / c).rem_euclid(6.0)
    } else if max == g {
        (b - r) as f32 / c + 2.0
    } else {
        (r - g) as f32 / c + 4.0
    };
    Some(h * 60.0)
}

fn chroma(p: &[u8]) -> i32 {
    let (max, min) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
    (max - min) as i32
}

fn palette_hues() -> [(Colour, f32); 6] {
    Colour::ALL.map(|c| (c, hue(c.rgb()).unwrap_or(0.0)))
}

fn classify(rgb: [u8; 3], palette: &[(Colour, f32); 6]) -> Option<u8> {
    let h = hue(rgb)?;
    palette
        .iter()
        .enumerate()
        .map(|(i, (_, ph))| {
            let d = (h - ph).abs();
            (i, d.min(360.0 - d))
        })
        .filter(|(_, d)| *d <= MAX_HUE_DISTANCE)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i as u8)
}

/// Reads the objects in `image`.
pub fn detect(image: &Image) -> Vec<Detected> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return vec![];
    }
    let scale = w.min(h) as f32 / 32.0;
    let palette = palette_hues();
    let labels: Vec<Option<u8>> =
        image.pixels().chunks_exact(3).map(|p| classify([p[0], p[1], p[2]], &palette)).collect();
    let mut seen = vec![false; w * h];
    let mut found = vec![];
    let mut stack = vec![];
    let mut region = vec![];
    for start in 0..w * h {
        let Some(label) = labels[start] else { continue };
        if seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        region.clear();
        while let Some(i) = stack.pop() {
            region.push(i);
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !seen[j] && labels[j] == Some(label) {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        // Keep the pixels at least half as saturated as the region's core: blur smears an edge
        // over a pixel or two, and the half-maximum contour is where the edge was.
        let mut chromas: Vec<i32> = region.iter().map(|&i| chroma(&image.pixels()[i * 3..i * 3 + 3])).collect();
        chromas.sort_unstable();
        let core = chromas[chromas.len() * 9 / 10];
        region.retain(|&i| chroma(&image.pixels()[i * 3..i * 3 + 3]) * 2 >= core);
        if (region.len() as f32) < MIN_AREA_32 * scale * scale {
            continue;
        }
        let object = describe(&region, w, palette[label as usize].0, scale);
        if object.fit >= MIN_FIT {
            found.push(object);
        }
    }
    found
}

/// Half-extent of `shape` with `area` pixels, and where its bounding-box centre sits relative
/// to its centroid (only the triangle's differ: its centroid is a third of the way up).
fn fit_template(shape: Shape, area: f32) -> (f32, f32) {
    match shape {
        Shape::Circle => ((area / std::f32::consts::PI).sqrt(), 0.0),
        Shape::Square => (area.sqrt() / 2.0, 0.0),
        Shape::Diamond => ((area / 2.0).sqrt(), 0.0),
        Shape::Triangle => {
            let e = (area / 2.0).sqrt();
            (e, -e / 3.0)
        }
    }
}

/// Names a region by the shape whose template, of equal area and centred on the region's
/// centroid, overlaps it best. Fitting by area and centroid rather than by bounding box keeps
/// single stray pixels at a shape's tips from throwing the fit.
fn describe(region: &[usize], w: usize, colour: Colour, scale: f32) -> Detected {
    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
    let (mut sx, mut sy) = (0.0f64, 0.0f64);
    for &i in region {
        let (x, y) = (i % w, i / w);
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        sx += x as f64 + 0.5;
        sy += y as f64 + 0.5;
    }
    let n = region.len() as f64;
    let (cx, cy) = ((sx / n) as f32, (sy / n) as f32);
    let area = region.len() as f32;
    let mask: std::collections::HashSet<usize> = region.iter().copied().collect();
    let best = Shape::ALL
        .into_iter()
        .map(|shape| {
            let (e, dy) = fit_template(shape, area);
            let (tx, ty) = (cx, cy + dy);
            let reach = e.ceil() as i64 + 2;
            let (mut both, mut either) = (0u32, 0u32);
            let xs = (x0 as i64).min(tx as i64 - reach)..=(x1 as i64).max(tx as i64 + reach);
            for y in (y0 as i64).min(ty as i64 - reach)..=(y1 as i64).max(ty as i64 + reach) {
                for x in xs.clone() {
                    let t = inside(shape, x as f32 + 0.5 - tx, y as f32 + 0.5 - ty, e);
                    let m = x >= 0 && y >= 0 && (x as usize) < w && mask.contains(&(y as usize * w + x as usize));
                    both += (t && m) as u32;
                    either += (t || m) as u32;
                }
            }
            (shape, e, both as f32 / either.max(1) as f32)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2));
    let (shape, e, fit) = best.unwrap_or((Shape::Circle, 0.0, 0.0));
    Detected { shape, colour, cx, cy, extent: e / scale, area: region.len() as u32, fit }
}
