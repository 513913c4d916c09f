//! Two images as one, for vision-language models that take a single image: side by side with a
//! white gap, labelled "(A)" and "(B)" underneath, as EvolveDirector composes them for such
//! models — so that the words of the comparison prompt ("which one, (A) or (B)") point at
//! something the model can see. [`split`] reads a composition back (`evolve serve` does).
//!
//! The labels are drawn with a 5×7 bitmap font of the four glyphs they need, scaled with the
//! image; no font file is shipped for four characters.

use evolve_sdk::Image;

/// The glyphs of "(A)" and "(B)": seven rows of five pixels, most significant bit leftmost.
const GLYPHS: [(char, [u8; 7]); 4] = [
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000]),
    ('A', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('B', [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110]),
];

/// The white gap between the two images of width `side`.
fn gap(side: u32) -> u32 {
    (side / 16).max(2)
}

/// The height of the label strip under images `height` pixels high: a quarter of it, at least
/// the font's seven rows and a margin.
fn strip(height: u32) -> u32 {
    (height / 4).max(9)
}

/// `a` and `b` side by side (at the left and the right), labelled (A) and (B) underneath.
pub fn compose(a: &Image, b: &Image) -> Image {
    let gap = gap(a.width().max(b.width()));
    let height = a.height().max(b.height());
    let strip = strip(height);
    let mut out = Image::filled(a.width() + gap + b.width(), height + strip, [255, 255, 255]);
    for (image, x0) in [(a, 0), (b, a.width() + gap)] {
        for y in 0..image.height() {
            for x in 0..image.width() {
                if let Some(px) = image.get(x, y) {
                    out.put(x0 + x, y, px);
                }
            }
        }
    }
    // The font's 7 rows fill about 70% of the strip.
    let scale = (strip * 7 / 10 / 7).max(1);
    let top = height + (strip - 7 * scale) / 2;
    label(&mut out, "(A)", a.width() / 2, top, scale);
    label(&mut out, "(B)", a.width() + gap + b.width() / 2, top, scale);
    out
}

/// Draws `text` in black, centred on `centre`, its top at `top`.
fn label(out: &mut Image, text: &str, centre: u32, top: u32, scale: u32) {
    let advance = 6 * scale;
    let width = advance * text.chars().count() as u32 - scale;
    let left = centre.saturating_sub(width / 2);
    for (i, c) in text.chars().enumerate() {
        let Some((_, rows)) = GLYPHS.iter().find(|(g, _)| *g == c) else { continue };
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0b10000 >> col) == 0 {
                    continue;
                }
                let (x0, y0) = (left + i as u32 * advance + col * scale, top + row as u32 * scale);
                for dy in 0..scale {
                    for dx in 0..scale {
                        // Off the canvas (a label wider than a tiny image) is left undrawn.
                        if x0 + dx < out.width() && y0 + dy < out.height() {
                            out.put(x0 + dx, y0 + dy, [0, 0, 0]);
                        }
                    }
                }
            }
        }
    }
}

/// The two images of a [`compose`]d pair of equal sizes (as the host shows a judge), or `None`
/// when `image` cannot be one.
pub fn split(image: &Image) -> Option<[Image; 2]> {
    let total = image.width();
    let side = (1..total).find(|&a| 2 * a + gap(a) == total)?;
    let height = (1..image.height()).find(|&h| h + strip(h) == image.height())?;
    let crop = |x0: u32| {
        let mut out = Image::filled(side, height, [0, 0, 0]);
        for y in 0..height {
            for x in 0..side {
                if let Some(px) = image.get(x0 + x, y) {
                    out.put(x, y, px);
                }
            }
        }
        out
    };
    Some([crop(0), crop(total - side)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dark(image: &Image, x0: u32, x1: u32, y0: u32, y1: u32) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                n += usize::from(image.get(x, y).is_some_and(|p| p == [0, 0, 0]));
            }
        }
        n
    }

    #[test]
    fn a_composition_splits_back_into_its_two_images_at_every_size() {
        for side in [16, 32, 33, 256, 512] {
            let a = Image::filled(side, side, [200, 10, 10]);
            let b = Image::filled(side, side, [10, 10, 200]);
            let pair = compose(&a, &b);
            assert_eq!(split(&pair), Some([a, b]), "side {side}");
        }
        assert_eq!(split(&Image::filled(51, 50, [0, 0, 0])), None, "no width is two equal images and their gap");
    }

    #[test]
    fn each_image_has_its_label_under_it() {
        let a = Image::filled(64, 64, [255, 255, 255]);
        let pair = compose(&a, &a);
        let (gap, strip) = (gap(64), strip(64));
        let (left, right) = (dark(&pair, 0, 64, 64, 64 + strip), dark(&pair, 64 + gap, 128 + gap, 64, 64 + strip));
        assert!(left > 20 && right > 20, "labels drawn: {left}, {right}");
        assert_ne!(left, right, "(A) and (B) differ");
        assert_eq!(dark(&pair, 0, pair.width(), 0, 64), 0, "nothing drawn over the images");
    }
}
