//! Plugin configuration: schemas that travel with the plugin, typed decoding, and secrets.

use crate::PluginError;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The JSON Schema (draft 2020-12) of a config type, with every sub-schema inlined so that the
/// host can embed it in the experiment-file schema without rewriting references.
pub fn config_schema<C: JsonSchema>() -> serde_json::Value {
    let generator =
        schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    generator.into_root_schema_for::<C>().to_value()
}

/// Decodes a plugin's config section. The host validates against the schema first, so an error
/// here means the schema and the type disagree; the message still names the field.
pub fn decode_config<C: DeserializeOwned>(value: serde_json::Value) -> Result<C, PluginError> {
    serde_json::from_value(value).map_err(|e| PluginError::InvalidConfig(e.to_string()))
}

/// A secret named by the environment variable that holds it, never written in a file.
///
/// In an experiment file: `api_key = { env = "OPENAI_API_KEY" }`. The value is read when the
/// plugin starts and is never logged, stored or serialised.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the environment variable that holds the secret.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: String,
}

impl SecretRef {
    /// Reads the secret from the environment.
    pub fn resolve(&self) -> Result<String, PluginError> {
        match std::env::var(&self.env) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(PluginError::InvalidConfig(format!(
                "environment variable {} is not set (it should hold the secret)",
                self.env
            ))),
        }
    }
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretRef(env:{})", self.env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        /// A knob.
        rate: f64,
        key: Option<SecretRef>,
    }

    #[test]
    fn schema_is_inlined_2020_12() {
        let schema = config_schema::<Sample>();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(!schema.to_string().contains("$ref"), "{schema}");
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn decode_names_the_field() {
        let err = decode_config::<Sample>(serde_json::json!({"rate": "x"})).err().unwrap();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn secret_debug_hides_nothing_but_the_name() {
        let s = SecretRef { env: "NO_SUCH_VAR_EVOLVE".into() };
        assert_eq!(format!("{s:?}"), "SecretRef(env:NO_SUCH_VAR_EVOLVE)");
        assert!(s.resolve().is_err());
    }
}
