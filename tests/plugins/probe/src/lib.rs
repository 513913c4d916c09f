//! The operator behind the probe plugins (`probe-native`, `probe-wasm`): by default it does
//! what the built-in `expansion` operator does, so that the three can be timed against each
//! other; its `behaviour` makes it misbehave for the hostile-plugin tests.

use evolve_sdk::host::{self, HttpRequest};
use evolve_sdk::prelude::*;

/// What the probe does in `decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(crate = "evolve_sdk::schemars")]
pub enum Behaviour {
    /// Ask for 3 expansions when the teacher won, like the built-in `expansion`.
    Expand,
    /// Spin forever.
    Loop,
    /// Allocate until something gives.
    MemoryBomb,
    /// Panic.
    Panic,
    /// GET `url` through the host and report the status.
    Fetch,
    /// Read the file at `path` and report its length.
    Read,
    /// Sleep 20 s in a WASI call, then answer like `expand`.
    Sleep,
}

/// The probe's config.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ProbeConfig {
    /// What to do.
    #[serde(default = "expand")]
    pub behaviour: Behaviour,
    /// For `fetch`: the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// For `read`: the file.
    #[serde(default)]
    pub path: Option<String>,
}

fn expand() -> Behaviour {
    Behaviour::Expand
}

/// The probe operator.
pub struct Probe(pub ProbeConfig);

impl Operator for Probe {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        match self.0.behaviour {
            Behaviour::Expand => Ok(match sample.outcome {
                Outcome::TeacherBetter => vec![Action::Expand { n: 3 }],
                Outcome::BaseAsGood => vec![],
            }),
            Behaviour::Loop => {
                let mut x = sample.seed;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            Behaviour::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Behaviour::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(20));
                Ok(vec![])
            }
            Behaviour::Panic => panic!("the probe panics on purpose (prompt {:?})", sample.prompt),
            Behaviour::Fetch => {
                let url = self.0.url.clone().unwrap_or_default();
                let reply = host::http(&HttpRequest::get(url))?;
                Err(PluginError::Failed(format!("fetched: HTTP {}", reply.status)))
            }
            Behaviour::Read => {
                let path = self.0.path.clone().unwrap_or_default();
                match std::fs::read(&path) {
                    Ok(bytes) => Err(PluginError::Failed(format!("read {} bytes", bytes.len()))),
                    Err(e) => Err(PluginError::Failed(format!("cannot read {path}: {e}"))),
                }
            }
        }
    }
}
