//! Reading image-caption pairs from an existing dataset: an image folder with
//! `metadata.jsonl`, WebDataset tar shards, or images with `{name}.txt` captions beside them.
//!
//! A bad entry (an unreadable or undecodable image, a missing caption, a broken JSON line) is
//! skipped and reported with its path — never silently, and never failing the whole import:
//! a dataset from the wild has a few. What is not a dataset at all is an error.

use super::record::ImportLine;
use super::{DatasetError, io};
use evolve_sdk::Image;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file read from a shard (an image, a caption): past it the entry is skipped rather
/// than read into memory.
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// Image file extensions read (as the build's decoder supports them).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One image with its caption.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The caption, trimmed.
    pub caption: String,
    /// The image.
    pub image: Image,
    /// Who made it, if the dataset says.
    pub teacher: Option<String>,
    /// Whether it won its prompt's tournament, if the dataset says (an evolve export).
    pub winner: Option<bool>,
    /// Where it came from (a file, or `shard.tar:key`), for messages.
    pub source: String,
}

/// An entry that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file (or `shard.tar:key`, or `metadata.jsonl:line`).
    pub source: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// Reads every pair of the dataset at `path` (a folder, or one `.tar` shard), handing each to
/// `each` as it is decoded. Returns what was skipped.
pub fn read(path: &Path, mut each: impl FnMut(Pair) -> Result<(), DatasetError>) -> Result<Vec<Skipped>, DatasetError> {
    let mut skipped = vec![];
    let mut found = 0usize;
    let mut take = |pair: Pair| {
        found += 1;
        each(pair)
    };
    if path.is_file() {
        read_shard(path, &mut take, &mut skipped)?;
    } else if path.join("metadata.jsonl").is_file() {
        read_metadata(path, &mut take, &mut skipped)?;
    } else {
        let files = list(path)?;
        let shards: Vec<&PathBuf> = files.iter().filter(|f| extension(f) == "tar").collect();
        if shards.is_empty() {
            read_captioned(&files, &mut take, &mut skipped)?;
        } else {
            for shard in shards {
                read_shard(shard, &mut take, &mut skipped)?;
            }
        }
    }
    if found == 0 && skipped.is_empty() {
        return Err(DatasetError::Empty(path.to_path_buf()));
    }
    Ok(skipped)
}

/// The files of `dir`, sorted by name.
fn list(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot read the dataset folder", dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Why an image of the dataset is skipped.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an image this build reads ({0})")]
    Decode(#[from] crate::store::DecodeError),
}

fn decode(bytes: &[u8]) -> Result<Image, Unreadable> {
    Ok(crate::store::decode_png(bytes)?)
}

fn read_image(path: &Path) -> Result<Image, Unreadable> {
    decode(&std::fs::read(path)?)
}

/// A caption as the ledger keeps prompts: trimmed, one line.
fn caption(text: &str) -> Option<String> {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!one_line.is_empty()).then_some(one_line)
}

fn read_metadata(
    dir: &Path,
    each: &mut impl FnMut(Pair) -> Result<(), DatasetError>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DatasetError> {
    let metadata = dir.join("metadata.jsonl");
    let text = std::fs::read_to_string(&metadata).map_err(io("cannot read", &metadata))?;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{}:{}", metadata.display(), n + 1);
        let mut skip = |reason: String| skipped.push(Skipped { source: at.clone(), reason });
        let line: ImportLine = match serde_json::from_str(line) {
            Ok(line) => line,
            Err(e) => {
                skip(format!("not a JSON object with `file_name` and `text` ({e})"));
                continue;
            }
        };
        let Some(file_name) = line.file_name.filter(|f| !f.is_empty()) else {
            skip("no `file_name`".into());
            continue;
        };
        let Some(text) = line.text.as_deref().and_then(caption) else {
            skip(format!("no caption for {file_name} (`text`, `caption` or `prompt`)"));
            continue;
        };
        // Only files inside the folder: a line naming `../x` or `/etc/x` is not the dataset's.
        let relative = Path::new(&file_name);
        if relative.is_absolute() || relative.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            skip(format!("`file_name` {file_name:?} leaves the dataset folder"));
            continue;
        }
        let path = dir.join(relative);
        match read_image(&path) {
            Ok(image) => {
                let source = path.display().to_string();
                each(Pair { caption: text, image, teacher: line.teacher, winner: line.winner, source })?
            }
            Err(e) => skipped.push(Skipped { source: path.display().to_string(), reason: e.to_string() }),
        }
    }
    Ok(())
}

fn read_captioned(
    files: &[PathBuf],
    each: &mut impl FnMut(Pair) -> Result<(), DatasetError>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DatasetError> {
    let images: Vec<&PathBuf> = files.iter().filter(|f| IMAGE_EXTENSIONS.contains(&extension(f).as_str())).collect();
    for path in &images {
        let source = path.display().to_string();
        let txt = path.with_extension("txt");
        let text = match std::fs::read_to_string(&txt) {
            Ok(text) => text,
            Err(_) => {
                skipped.push(Skipped { source, reason: format!("no caption file {}", txt.display()) });
                continue;
            }
        };
        let Some(text) = caption(&text) else {
            skipped.push(Skipped { source, reason: format!("{} is empty", txt.display()) });
            continue;
        };
        match read_image(path) {
            Ok(image) => each(Pair { caption: text, image, teacher: None, winner: None, source })?,
            Err(e) => skipped.push(Skipped { source, reason: e.to_string() }),
        }
    }
    // A caption with no image beside it is a pair that lost its image.
    for txt in files.iter().filter(|f| extension(f) == "txt") {
        if !images.iter().any(|image| image.with_extension("txt") == *txt) {
            skipped.push(Skipped {
                source: txt.display().to_string(),
                reason: "a caption with no image beside it".into(),
            });
        }
    }
    Ok(())
}

/// The files of one WebDataset sample: extension → bytes.
type Entry = BTreeMap<String, Vec<u8>>;

fn read_shard(
    shard: &Path,
    each: &mut impl FnMut(Pair) -> Result<(), DatasetError>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DatasetError> {
    let file = std::fs::File::open(shard).map_err(io("cannot open", shard))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().map_err(io("cannot read the shard", shard))?;
    // WebDataset keeps a sample's files together: a sample ends where the key changes.
    let mut current: Option<(String, Entry)> = None;
    let mut finish = |current: Option<(String, Entry)>, skipped: &mut Vec<Skipped>| match current {
        Some((key, files)) => pair_of(shard, &key, files, each, skipped),
        None => Ok(()),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                skipped.push(Skipped {
                    source: shard.display().to_string(),
                    reason: format!("the rest is unreadable ({e})"),
                });
                break;
            }
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        // The key is the path up to the first dot of the file name; the rest is the extension.
        let (dir, file) = name.rsplit_once('/').map_or(("", name.as_str()), |(d, f)| (d, f));
        let Some((stem, ext)) = file.split_once('.') else { continue };
        let key = if dir.is_empty() { stem.to_string() } else { format!("{dir}/{stem}") };
        if current.as_ref().is_some_and(|(k, _)| *k != key) {
            finish(current.take(), skipped)?;
        }
        let files = &mut current.get_or_insert_with(|| (key.clone(), Entry::new())).1;
        if entry.size() > MAX_ENTRY_BYTES {
            skipped.push(Skipped {
                source: format!("{}:{name}", shard.display()),
                reason: format!("{} bytes, more than {MAX_ENTRY_BYTES}", entry.size()),
            });
            continue;
        }
        let mut bytes = vec![];
        if let Err(e) = entry.read_to_end(&mut bytes) {
            skipped
                .push(Skipped { source: format!("{}:{name}", shard.display()), reason: format!("unreadable ({e})") });
            continue;
        }
        files.insert(ext.to_ascii_lowercase(), bytes);
    }
    finish(current.take(), skipped)
}

fn pair_of(
    shard: &Path,
    key: &str,
    files: Entry,
    each: &mut impl FnMut(Pair) -> Result<(), DatasetError>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DatasetError> {
    let source = format!("{}:{key}", shard.display());
    let json: Option<ImportLine> = files.get("json").and_then(|b| serde_json::from_slice(b).ok());
    let text = files
        .get("txt")
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .or_else(|| json.as_ref().and_then(|j| j.text.clone()))
        .and_then(|t| caption(&t));
    let Some(text) = text else {
        skipped.push(Skipped { source, reason: "no caption (`.txt`, or `text` in `.json`)".into() });
        return Ok(());
    };
    let Some(bytes) = IMAGE_EXTENSIONS.iter().find_map(|ext| files.get(*ext)) else {
        skipped.push(Skipped { source, reason: "no image (.png, .jpg or .jpeg)".into() });
        return Ok(());
    };
    match decode(bytes) {
        Ok(image) => {
            let (teacher, winner) = json.map_or((None, None), |j| (j.teacher, j.winner));
            each(Pair { caption: text, image, teacher, winner, source })
        }
        Err(e) => {
            skipped.push(Skipped { source, reason: e.to_string() });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        crate::store::encode_png(&Image::filled(8, 8, [10, 20, 30])).unwrap()
    }

    fn read_all(path: &Path) -> (Vec<Pair>, Vec<Skipped>) {
        let mut pairs = vec![];
        let skipped = read(path, |pair| {
            pairs.push(pair);
            Ok(())
        })
        .unwrap();
        (pairs, skipped)
    }

    #[test]
    fn metadata_lines_that_cannot_be_used_are_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), png()).unwrap();
        std::fs::write(dir.path().join("b.png"), png()).unwrap();
        let lines = [
            r#"{"file_name": "a.png", "text": "a red circle", "teacher": "flux"}"#,
            r#"{"file_name": "b.png", "caption": "  a blue   square "}"#,
            r#"{"file_name": "a.png""#,
            r#"{"file_name": "b.png"}"#,
            r#"{"file_name": "../a.png", "text": "outside"}"#,
            r#"{"file_name": "missing.png", "text": "gone"}"#,
        ];
        std::fs::write(dir.path().join("metadata.jsonl"), lines.join("\n")).unwrap();
        let (pairs, skipped) = read_all(dir.path());
        let captions: Vec<_> = pairs.iter().map(|p| (p.caption.as_str(), p.teacher.as_deref())).collect();
        assert_eq!(captions, [("a red circle", Some("flux")), ("a blue square", None)]);
        let sources: Vec<_> = skipped.iter().map(|s| s.source.rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(sources, ["metadata.jsonl:3", "metadata.jsonl:4", "metadata.jsonl:5", "missing.png"]);
        assert!(skipped[2].reason.contains("leaves the dataset folder"), "{}", skipped[2]);
    }

    #[test]
    fn a_shard_pairs_files_by_key_and_names_incomplete_samples() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("data.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&shard).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("x/0001.png", &png());
        add("x/0001.txt", b"a green ring");
        add("x/0002.png", &png());
        add("x/0002.json", br#"{"text": "from the json", "teacher": "dalle"}"#);
        add("x/0003.txt", b"no image here");
        add("x/0004.jpg", b"not a jpeg");
        add("x/0004.txt", b"broken image");
        tar.finish().unwrap();
        drop(tar);
        let (pairs, skipped) = read_all(&shard);
        let captions: Vec<_> = pairs.iter().map(|p| p.caption.as_str()).collect();
        assert_eq!(captions, ["a green ring", "from the json"]);
        assert_eq!(pairs[1].teacher.as_deref(), Some("dalle"));
        let sources: Vec<_> = skipped.iter().map(|s| s.source.rsplit(':').next().unwrap().to_string()).collect();
        assert_eq!(sources, ["x/0003", "x/0004"]);
    }

    #[test]
    fn a_folder_with_nothing_to_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.md"), "hello").unwrap();
        let err = read(dir.path(), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("holds no image-caption pairs"), "{err}");
        assert!(read(&dir.path().join("nowhere"), |_| Ok(())).is_err());
    }
}
