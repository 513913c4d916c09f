//! `evolve bench shape-readback --run DIR`: how often a run's model draws the shape it is
//! asked for. ShapesEval holds only 12 single-object prompts, too few to tell 60% from 75%; this
//! renders every single-object prompt of the shapes grammar (4 shapes x 7 colour words x 3 size
//! words) at several seeds and reads each image back with the world's detector.
//!
//! It measures the model, not generalisation: most of these prompts may have been trained on.

use crate::registry::Registry;
use crate::run_model;
use evolve_sdk::SampleRequest;
use evolve_shapes::clauses::clauses;
use evolve_shapes::detect::detect;
use evolve_shapes::grammar::{Colour, ObjectSpec, Prompt, Shape, Size};
use std::path::Path;

/// Seeds per prompt by default.
pub const SEEDS: u64 = 4;

/// Readback counts for one shape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Images rendered.
    pub images: u32,
    /// Images in which the detector found an object of the prompted shape.
    pub shape: u32,
    /// Images in which it found the object exactly as prompted (shape, colour and size).
    pub exact: u32,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.images += other.images;
        self.shape += other.shape;
        self.exact += other.exact;
    }

    /// Share of images with the prompted shape.
    pub fn shape_share(&self) -> f64 {
        self.shape as f64 / self.images.max(1) as f64
    }

    /// Share of images exactly as prompted.
    pub fn exact_share(&self) -> f64 {
        self.exact as f64 / self.images.max(1) as f64
    }
}

/// Every object the grammar can name: each shape with or without a colour and a size word.
fn objects() -> Vec<ObjectSpec> {
    let colours = std::iter::once(None).chain(Colour::ALL.map(Some));
    let sizes = [None, Some(Size::Small), Some(Size::Large)];
    Shape::ALL
        .into_iter()
        .flat_map(|shape| {
            colours
                .clone()
                .flat_map(move |colour| sizes.into_iter().map(move |size| ObjectSpec { shape, colour, size }))
        })
        .collect()
}

/// Every single-object prompt of the grammar.
pub fn prompts() -> Vec<Prompt> {
    objects().into_iter().map(Prompt::Single).collect()
}

/// Renders every single-object prompt with the run's model at `seeds` seeds and tallies, per
/// shape in [`Shape::ALL`]'s order, what the detector reads.
pub fn measure(run: &Path, registry: &Registry, seeds: u64) -> Result<[Tally; 4], super::BenchError> {
    let (_, mut model, _) = run_model::open(run, registry)?;
    let specs = objects();
    let texts: Vec<String> = specs.iter().map(|&spec| Prompt::Single(spec).to_string()).collect();
    let mut tallies = [Tally::default(); 4];
    for seed in 0..seeds {
        let request = SampleRequest { prompts: texts.clone(), seed: 0x5EAD_BAC0 + seed, ..SampleRequest::default() };
        let images = model.generate(&request).map_err(super::BenchError::plugin("rendering"))?;
        for (spec, image) in specs.iter().zip(&images) {
            let found = detect(image);
            let tally = Tally {
                images: 1,
                shape: found.iter().any(|o| o.shape == spec.shape) as u32,
                exact: clauses(&Prompt::Single(*spec)).iter().all(|c| c.holds(&found)) as u32,
            };
            tallies[spec.shape as usize].add(tally);
        }
    }
    Ok(tallies)
}

/// The table and figure lines of `tallies`.
pub fn table(tallies: &[Tally; 4]) -> String {
    let mut out = format!("{:<10} {:>7} {:>7} {:>7}\n", "shape", "images", "shape", "exact");
    let mut all = Tally::default();
    for (shape, tally) in Shape::ALL.iter().zip(tallies) {
        out += &format!(
            "{:<10} {:>7} {:>6.1}% {:>6.1}%\n",
            shape.noun(),
            tally.images,
            100.0 * tally.shape_share(),
            100.0 * tally.exact_share()
        );
        all.add(*tally);
    }
    out += &format!(
        "{:<10} {:>7} {:>6.1}% {:>6.1}%\n",
        "all",
        all.images,
        100.0 * all.shape_share(),
        100.0 * all.exact_share()
    );
    out += &format!("shape-readback prompted shape: {:.3}\n", all.shape_share());
    out += &format!("shape-readback exact: {:.3}\n", all.exact_share());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_single_object_prompt_once() {
        let all = prompts();
        assert_eq!(all.len(), 4 * 7 * 3);
        let distinct: std::collections::HashSet<String> = all.iter().map(Prompt::to_string).collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[test]
    fn the_table_sums_the_shapes() {
        let t = Tally { images: 10, shape: 7, exact: 5 };
        let text = table(&[t, t, t, Tally { images: 10, shape: 3, exact: 1 }]);
        assert!(text.contains("shape-readback prompted shape: 0.600"), "{text}");
        assert!(text.contains("shape-readback exact: 0.400"), "{text}");
    }
}
