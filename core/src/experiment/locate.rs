//! From a path in the document (as JSON Schema reports it) back to the bytes in the TOML file.

use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A parsed TOML document that remembers where every key and value came from.
pub(super) struct SpannedDoc<'i> {
    root: Spanned<DeTable<'i>>,
}

impl<'i> SpannedDoc<'i> {
    pub fn parse(text: &'i str) -> Result<Self, toml::de::Error> {
        Ok(SpannedDoc { root: DeTable::parse(text)? })
    }

    /// The span of the value at `path`, or of the deepest ancestor that exists.
    pub fn value_span(&self, path: &[String]) -> Range<usize> {
        self.walk(path).1
    }

    /// The span of the key `key` inside the table at `path`, falling back to the table.
    pub fn key_span(&self, path: &[String], key: &str) -> Range<usize> {
        let (node, span) = self.walk(path);
        node.and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == key)).map(|(k, _)| k.span()).unwrap_or(span)
    }

    /// The table at `path` (if it is one) and the span of the deepest node reached.
    fn walk(&self, path: &[String]) -> (Option<&DeTable<'i>>, Range<usize>) {
        let mut table = Some(self.root.get_ref());
        let mut span = self.root.span();
        let mut value: Option<&Spanned<DeValue<'i>>> = None;
        for segment in path {
            let next = match (table, value.map(Spanned::get_ref)) {
                (Some(t), _) => t.iter().find(|(k, _)| k.get_ref().as_ref() == segment.as_str()).map(|(_, v)| v),
                (None, Some(DeValue::Array(items))) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            let Some(next) = next else { break };
            span = next.span();
            value = Some(next);
            table = next.get_ref().as_table();
        }
        if span.start == span.end && span.start == 0 {
            span = 0..0;
        }
        (table, span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_values_keys_and_array_items() {
        let text =
            "[run]\nname = \"x\"\n\n[[teachers]]\nplugin = \"a\"\n\n[[teachers]]\nplugin = \"b\"\nconfig = { q = 3 }\n";
        let doc = SpannedDoc::parse(text).unwrap();
        let span = doc.value_span(&path(&["teachers", "1", "plugin"]));
        assert_eq!(&text[span], "\"b\"");
        let span = doc.value_span(&path(&["teachers", "1", "config", "q"]));
        assert_eq!(&text[span], "3");
        let span = doc.key_span(&path(&["run"]), "name");
        assert_eq!(&text[span], "name");
        // A missing leaf falls back to its parent.
        let span = doc.value_span(&path(&["run", "seed"]));
        assert!(!text[..span.start].contains('\n'), "should point at the [run] table: {:?}", &text[span]);
    }
}
