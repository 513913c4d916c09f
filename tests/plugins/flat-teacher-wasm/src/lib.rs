//! A wasm teacher that paints each prompt as one flat colour chosen by the prompt's bytes, at a
//! fixed price: enough to exercise the teacher interface of the WIT world end to end.

use evolve_sdk::prelude::*;

/// The fixture's config.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct FlatConfig {
    /// Price of one image in micro-dollars.
    #[serde(default)]
    pub micro_usd: u64,
    /// Pricing a prompt that contains this word traps (a plugin whose pricing fails).
    #[serde(default)]
    pub unpriceable: Option<String>,
    /// Micro-dollars billed above the quoted price (a teacher that overcharges).
    #[serde(default)]
    pub overcharge: u64,
}

/// The teacher.
pub struct Flat(pub FlatConfig);

#[async_trait]
impl Teacher for Flat {
    fn limits(&self) -> Limits {
        Limits { concurrency: 8, requests_per_minute: Some(600) }
    }

    fn price(&self, request: &GenerateRequest) -> Cost {
        if self.0.unpriceable.as_ref().is_some_and(|word| request.prompt.contains(word.as_str())) {
            panic!("no price for {:?}", request.prompt);
        }
        Cost { micro_usd: self.0.micro_usd }
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        if request.prompt.is_empty() {
            return Err(PluginError::InvalidInput("empty prompt".into()));
        }
        let sum = request.prompt.bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
        let rgb = [(sum & 0xFF) as u8, ((sum >> 8) & 0xFF) as u8, ((sum >> 16) & 0xFF) as u8];
        Ok(GeneratedImage {
            image: Image::filled(request.width, request.height, rgb),
            revised_prompt: Some(format!("{} (flat)", request.prompt)),
            cost: Cost { micro_usd: self.price(request).micro_usd + self.0.overcharge },
        })
    }
}

#[cfg(target_arch = "wasm32")]
evolve_sdk::export_wasm_plugin! {
    kind: Teacher,
    name: "flat",
    description: "Test fixture: paints each prompt as a flat colour.",
    config: FlatConfig,
    build: |config: FlatConfig, _ctx: &PluginContext| Ok(Flat(config)),
}
