//! The JSON Schema of experiment files, with every registered plugin's config schema attached,
//! so that one schema both validates a file and lets an editor autocomplete it.

use super::Experiment;
use crate::registry::Registry;
use evolve_sdk::PluginKind;
use serde_json::{Value, json};

/// Where each kind's plugin sections sit in the experiment schema (JSON pointers).
pub(super) const SECTIONS: [(&str, PluginKind); 5] = [
    ("/properties/base_model", PluginKind::BaseModel),
    ("/properties/teachers/items", PluginKind::Teacher),
    ("/properties/judge", PluginKind::Judge),
    ("/properties/operators/items", PluginKind::Operator),
    ("/properties/eval", PluginKind::Evaluator),
];

/// The JSON Schema (draft 2020-12) of experiment files for the plugins in `registry`.
///
/// Each plugin section's `plugin` key is restricted to the registered names of its kind, and
/// an `if`/`then` per plugin applies that plugin's schema to the section's `config`.
pub fn experiment_schema(registry: &Registry) -> Value {
    let mut schema = evolve_sdk::config_schema::<Experiment>();
    schema["$id"] = json!("https://evolve.rs/schemas/experiment.schema.json");
    for (pointer, kind) in SECTIONS {
        let Some(section) = schema.pointer_mut(pointer) else {
            // The pointers mirror `Experiment`; a mismatch is caught by the schema tests.
            continue;
        };
        let names = registry.names(kind);
        // A name must be registered; a table names an external plugin file.
        section["properties"]["plugin"] = json!({
            "description": section["properties"]["plugin"]["description"].clone(),
            "if": { "type": "string" },
            "then": { "enum": names },
            "else": {
                "type": "object",
                "oneOf": [
                    { "required": ["native"], "properties": { "native": { "type": "string", "minLength": 1 } },
                      "additionalProperties": false },
                    { "required": ["wasm"], "properties": { "wasm": { "type": "string", "minLength": 1 } },
                      "additionalProperties": false }
                ]
            }
        });
        let rules: Vec<Value> = registry
            .entries()
            .iter()
            .filter(|e| e.kind() == kind)
            .map(|e| {
                let mut config = e.config_schema.clone();
                if let Some(obj) = config.as_object_mut() {
                    // A nested `$schema` would make the embedded schema a separate resource.
                    obj.remove("$schema");
                }
                json!({
                    "if": { "properties": { "plugin": { "const": e.name() } }, "required": ["plugin"] },
                    "then": { "properties": { "config": config } }
                })
            })
            .collect();
        if !rules.is_empty() {
            section["allOf"] = Value::Array(rules);
        }
    }
    schema
}

/// Applies `config_schema` to the `config` of every `kind` section whose `plugin` is exactly
/// `plugin` (an external plugin's table as written), as the built-ins' schemas are applied.
pub(super) fn attach_config_schema(schema: &mut Value, kind: PluginKind, plugin: &Value, config_schema: &Value) {
    let Some((pointer, _)) = SECTIONS.iter().find(|(_, k)| *k == kind) else { return };
    let Some(section) = schema.pointer_mut(pointer) else { return };
    let mut config = config_schema.clone();
    if let Some(obj) = config.as_object_mut() {
        obj.remove("$schema");
    }
    let rule = json!({
        "if": { "properties": { "plugin": { "const": plugin } }, "required": ["plugin"] },
        "then": { "properties": { "config": config } }
    });
    match section.get_mut("allOf").and_then(Value::as_array_mut) {
        Some(rules) => rules.push(rule),
        None => section["allOf"] = json!([rule]),
    }
}

/// The plugin kind whose sections live under the top-level key `key`.
pub(super) fn kind_of_section(key: &str) -> Option<PluginKind> {
    match key {
        "base_model" => Some(PluginKind::BaseModel),
        "teachers" => Some(PluginKind::Teacher),
        "judge" => Some(PluginKind::Judge),
        "operators" => Some(PluginKind::Operator),
        "eval" => Some(PluginKind::Evaluator),
        _ => None,
    }
}

/// A one-line, human description of what a schema node accepts ("a number from 0 to 1").
pub(super) fn describe(schema: &Value) -> Option<String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Some(if list.is_empty() {
            "nothing (none registered)".into()
        } else {
            format!("one of {}", list.join(", "))
        });
    }
    // schemars writes an enum whose variants have doc comments as `oneOf` single constants.
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let constants: Option<Vec<String>> = options.iter().map(|o| o.get("const").map(Value::to_string)).collect();
        if let Some(list) = constants.filter(|l| !l.is_empty()) {
            return Some(format!("one of {}", list.join(", ")));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    let mut parts: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "integer" => "an integer",
            "number" => "a number",
            "string" => "a string",
            "boolean" => "true or false",
            "array" => "an array",
            "object" => "a table",
            other => other,
        })
        .map(str::to_string)
        .collect();
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    match (bound("minimum"), bound("maximum")) {
        (Some(lo), Some(hi)) => parts.push(format!("from {lo} to {hi}")),
        (Some(lo), None) => parts.push(format!("at least {lo}")),
        (None, Some(hi)) => parts.push(format!("at most {hi}")),
        (None, None) => {}
    }
    if let Some(lo) = bound("exclusiveMinimum") {
        parts.push(format!("greater than {lo}"));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        parts.push(format!("matching /{p}/"));
    }
    if let Some(n) = schema.get("minItems").and_then(Value::as_u64) {
        parts.push(format!("with at least {n} item(s)"));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        parts.push(format!("with keys {}", keys.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_pointer_exists() {
        let schema = evolve_sdk::config_schema::<Experiment>();
        for (pointer, _) in SECTIONS {
            let section = schema.pointer(pointer).unwrap_or_else(|| panic!("{pointer} missing"));
            assert!(section.pointer("/properties/plugin").is_some(), "{pointer}");
        }
    }

    #[test]
    fn describes_ranges_and_enums() {
        assert_eq!(describe(&json!({"type": "number", "minimum": 0, "maximum": 1})).unwrap(), "a number from 0 to 1");
        assert_eq!(describe(&json!({"enum": ["a", "b"]})).unwrap(), "one of \"a\", \"b\"");
        let documented = json!({"oneOf": [{"const": "a", "description": "A."}, {"const": "b"}]});
        assert_eq!(describe(&documented).unwrap(), "one of \"a\", \"b\"");
        assert_eq!(describe(&json!({"type": "number", "exclusiveMinimum": 0})).unwrap(), "a number greater than 0");
    }
}
