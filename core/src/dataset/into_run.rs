//! Bringing a dataset into a run as already-paid samples (`[prompts] from_dataset`).

use super::DatasetError;
use super::import::{Skipped, read};
use crate::store::{ImportedSample, RunDir};
use std::collections::HashSet;
use std::path::Path;

/// What an import brought in.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// Samples added to the active set.
    pub added: usize,
    /// Images left out because their caption came earlier with another image (the ledger keeps
    /// one image per prompt: the first); an evolve export's losing teachers' images among them.
    pub repeats: usize,
    /// Entries left out, each with its path and why: unreadable, uncaptioned, or a prompt the
    /// evaluation suite holds out.
    pub skipped: Vec<Skipped>,
}

/// Reads the dataset at `path` into `run`: every image into the image store, then every pair
/// into the ledger as an active sample of origin `imported` (no cost, no teacher call) in one
/// transaction, so that a run killed part-way imports all or nothing. Captions `held_out` by the
/// evaluation suite are left out (training on them would inflate its score).
pub fn import_into(run: &mut RunDir, path: &Path, held_out: &dyn Fn(&str) -> bool) -> Result<Imported, DatasetError> {
    let mut samples = vec![];
    let mut seen = HashSet::new();
    let mut left_out = vec![];
    let mut repeats = 0;
    let images = run.images.clone();
    let mut skipped = read(path, |pair| {
        if held_out(&pair.caption) {
            left_out.push(Skipped {
                source: pair.source,
                reason: "its caption is held out by the evaluation suite".into(),
            });
            return Ok(());
        }
        // A losing teacher's image (an evolve export marks them) never displaces its winner.
        if pair.winner == Some(false) || !seen.insert(pair.caption.clone()) {
            repeats += 1;
            return Ok(());
        }
        let image = images.put(&pair.image)?;
        samples.push(ImportedSample {
            prompt: pair.caption,
            image,
            teacher: pair.teacher.unwrap_or_else(|| "imported".into()),
        });
        Ok(())
    })?;
    skipped.extend(left_out);
    let added = run.ledger.import(&samples)?;
    Ok(Imported { added, repeats, skipped })
}
