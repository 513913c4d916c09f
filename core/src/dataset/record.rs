//! One image's line in `metadata.jsonl` (and its `{key}.json` in a WebDataset shard).

use crate::store::{DatasetRow, DatasetVerdict};
use serde::{Deserialize, Serialize};

/// What an export says about one image. `file_name` and `text` are the columns `imagefolder`
/// needs; the rest is the run's record of the image, columns of the loaded dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The image file, relative to the folder (absent in a shard's `{key}.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The caption (the prompt it was bought for).
    pub text: String,
    /// The teacher that made it.
    pub teacher: String,
    /// What it cost, in US dollars (0 for imported images).
    pub cost_usd: f64,
    /// `seed`, `expansion`, `mutation` or `imported`.
    pub origin: String,
    /// The prompt it was expanded or mutated from.
    pub parent_prompt: Option<String>,
    /// The round that bought it (0: before the first round).
    pub round: i64,
    /// In the active set when exported (false: the director deleted it, or it lost its
    /// tournament).
    pub active: bool,
    /// Won its prompt's tournament among the teachers.
    pub winner: bool,
    /// The image's blake3 hash (its name in the run's image store).
    pub image_hash: String,
    /// The judge's verdicts on the base model against it, oldest first.
    pub verdicts: Vec<DatasetVerdict>,
}

impl Record {
    /// The record of `row`, stored as `file_name` (`None` in a shard).
    pub fn of(row: &DatasetRow, file_name: Option<String>) -> Record {
        Record {
            file_name,
            text: row.prompt.clone(),
            teacher: row.teacher.clone(),
            cost_usd: row.cost_micro_usd as f64 / 1e6,
            origin: row.origin.clone(),
            parent_prompt: row.parent_prompt.clone(),
            round: row.round,
            active: row.active,
            winner: row.winner,
            image_hash: row.image.as_str().to_string(),
            verdicts: row.verdicts.clone(),
        }
    }
}

/// What an import reads from a line of someone's `metadata.jsonl` (or a shard's `.json`):
/// the image and its caption, under the names datasets commonly give them. Other columns are
/// ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImportLine {
    /// The image file, relative to the folder (not needed in a shard).
    #[serde(default)]
    pub file_name: Option<String>,
    /// The caption.
    #[serde(alias = "caption", alias = "prompt")]
    pub text: Option<String>,
    /// Who made the image, if the dataset says (an evolve export does).
    #[serde(default)]
    pub teacher: Option<String>,
    /// Whether the image won its prompt's tournament (an evolve export says; a loser is another
    /// teacher's image of a prompt whose winner is in the set too).
    #[serde(default)]
    pub winner: Option<bool>,
}
