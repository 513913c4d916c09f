//! A run's curated text-image set, out and in: `evolve export --dataset` writes it in the
//! layouts the ecosystem loads directly, and `[prompts] from_dataset` starts a run from one.
//!
//! Two layouts, both understood in each direction:
//!
//! - **image folder** (Hugging Face `datasets`' `imagefolder`): the images beside a
//!   `metadata.jsonl` whose lines name each `file_name` with its caption in `text`;
//! - **WebDataset**: tar shards holding `{key}.png`, `{key}.txt` (the caption) and `{key}.json`
//!   (the same record as `metadata.jsonl`'s line) per image.
//!
//! On the way in, a plain folder of images with `{name}.txt` captions beside them is read too.
//! Exports carry a dataset card (`README.md`) saying what the run was.

mod card;
mod export;
mod import;
mod into_run;
mod record;

pub use export::{ExportOptions, ExportSummary, Format, export};
pub use import::{Pair, Skipped, read};
pub use into_run::{Imported, import_into};
pub use record::{ImportLine, Record};

use std::path::PathBuf;

/// Errors reading or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The run's ledger or image store refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The output folder exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// A stored image does not match its hash.
    #[error("image {hash} in {} does not match its hash; the run's image store is damaged", path.display())]
    Damaged {
        /// The image's recorded hash.
        hash: String,
        /// Its file.
        path: PathBuf,
    },
    /// The folder holds nothing this reader understands.
    #[error(
        "{} holds no image-caption pairs: expected metadata.jsonl (an image folder), .tar shards (WebDataset), \
         or images with a {{name}}.txt caption beside each",
        .0.display()
    )]
    Empty(PathBuf),
}

/// A ledger error is a store error: `?` on a ledger call needs no conversion at each site.
impl From<crate::store::LedgerError> for DatasetError {
    fn from(error: crate::store::LedgerError) -> Self {
        DatasetError::Store(error.into())
    }
}

/// `action path` as a [`DatasetError::Io`].
fn io<'a>(action: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> DatasetError + 'a {
    move |source| DatasetError::Io { action, path: path.to_path_buf(), source }
}
