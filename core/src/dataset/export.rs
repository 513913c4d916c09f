//! `evolve export --dataset`: the run's set as an image folder or WebDataset shards.
//!
//! The export reads the ledger read-only, so it works on a live run (a snapshot of it), and it
//! appears whole or not at all: it is written into a hidden folder beside `out`, then renamed.

use super::card::Card;
use super::record::Record;
use super::{DatasetError, io};
use crate::store::{DatasetFilter, DatasetRow, ImageStore, Ledger, replace_folder};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Images per WebDataset shard.
pub const SHARD_SIZE: usize = 1000;

/// The layout to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Images beside `metadata.jsonl` (`datasets.load_dataset("imagefolder", data_dir=…)`).
    #[default]
    ImageFolder,
    /// Tar shards of `{key}.png`, `{key}.txt`, `{key}.json` (`webdataset`, `datasets`'
    /// `webdataset` builder).
    WebDataset,
}

/// What to export and how.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The layout.
    pub format: Format,
    /// Which images.
    pub filter: DatasetFilter,
    /// Replace an existing `out`.
    pub force: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The folder.
    pub out: PathBuf,
    /// Images written.
    pub images: usize,
    /// Tar shards written (WebDataset only).
    pub shards: usize,
}

/// Writes the set of the run at `run` into the folder `out`.
pub fn export(run: &Path, out: &Path, options: &ExportOptions) -> Result<ExportSummary, DatasetError> {
    if out.exists() && !options.force {
        return Err(DatasetError::Exists(out.to_path_buf()));
    }
    let ledger_path = run.join("ledger.sqlite");
    if !ledger_path.is_file() {
        return Err(crate::store::StoreError::Missing(run.to_path_buf()).into());
    }
    let ledger = Ledger::open_read_only(&ledger_path).map_err(crate::store::StoreError::from)?;
    let rows = ledger.dataset(&options.filter).map_err(crate::store::StoreError::from)?;
    let images = ImageStore::reader(&run.join("images"));
    let card = Card::of_run(run, &rows, options)?;
    let mut shards = 0;
    replace_folder(out, |partial| -> Result<(), DatasetError> {
        shards = match options.format {
            Format::ImageFolder => write_image_folder(partial, &rows, &images)?,
            Format::WebDataset => write_shards(partial, &rows, &images)?,
        };
        let readme = partial.join("README.md");
        std::fs::write(&readme, card.markdown()).map_err(io("cannot write", &readme))
    })?;
    Ok(ExportSummary { out: out.to_path_buf(), images: rows.len(), shards })
}

/// The key of the `i`th image: sortable, and free of dots (WebDataset splits names at the first).
fn key(i: usize) -> String {
    format!("{i:08}")
}

/// The PNG of `row`, checked against its hash.
fn png(images: &ImageStore, row: &DatasetRow) -> Result<Vec<u8>, DatasetError> {
    let path = images.path(&row.image);
    let bytes = std::fs::read(&path).map_err(io("cannot read", &path))?;
    if blake3::hash(&bytes).to_hex().as_str() != row.image.as_str() {
        return Err(DatasetError::Damaged { hash: row.image.to_string(), path });
    }
    Ok(bytes)
}

fn write_image_folder(dir: &Path, rows: &[DatasetRow], images: &ImageStore) -> Result<usize, DatasetError> {
    let metadata = dir.join("metadata.jsonl");
    let file = std::fs::File::create(&metadata).map_err(io("cannot create", &metadata))?;
    let mut lines = std::io::BufWriter::new(file);
    for (i, row) in rows.iter().enumerate() {
        let name = format!("{}.png", key(i));
        let path = dir.join(&name);
        std::fs::write(&path, png(images, row)?).map_err(io("cannot write", &path))?;
        let line = serde_json::to_string(&Record::of(row, Some(name))).unwrap_or_default();
        writeln!(lines, "{line}").map_err(io("cannot write", &metadata))?;
    }
    lines.flush().map_err(io("cannot write", &metadata))?;
    Ok(0)
}

fn write_shards(dir: &Path, rows: &[DatasetRow], images: &ImageStore) -> Result<usize, DatasetError> {
    let mut shards = 0;
    for (n, chunk) in rows.chunks(SHARD_SIZE).enumerate() {
        let path = dir.join(format!("shard-{n:06}.tar"));
        let file = std::fs::File::create(&path).map_err(io("cannot create", &path))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        for (j, row) in chunk.iter().enumerate() {
            let key = key(n * SHARD_SIZE + j);
            let json = serde_json::to_vec(&Record::of(row, None)).unwrap_or_default();
            for (ext, bytes) in [("png", png(images, row)?), ("txt", row.prompt.clone().into_bytes()), ("json", json)] {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                // No timestamps: the same run exports to the same bytes.
                header.set_mtime(0);
                tar.append_data(&mut header, format!("{key}.{ext}"), bytes.as_slice())
                    .map_err(io("cannot write", &path))?;
            }
        }
        let mut writer = tar.into_inner().map_err(io("cannot finish", &path))?;
        writer.flush().map_err(io("cannot write", &path))?;
        shards += 1;
    }
    Ok(shards)
}
