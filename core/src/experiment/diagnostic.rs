//! Problems in an experiment file, each pinned to file, line and column, and rendered the way
//! rustc renders them so that the eye finds the spot at once.
//!
//! Written by hand rather than with `codespan-reporting`/`miette`: one label per diagnostic is
//! all we need, and the renderer is a screenful.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Where in the document, as a key path (`judge.config.flip_rate`); empty for the root.
    pub key_path: String,
    /// What is wrong (names the bad value unless it is a secret).
    pub message: String,
    /// What would be valid.
    pub help: Option<String>,
    /// The source line and the marked character range on it; `None` hides the line (secrets).
    snippet: Option<(String, Range<usize>)>,
}

impl Diagnostic {
    /// A diagnostic for `span` (byte offsets) of `source`.
    pub(super) fn new(source: &SourceText<'_>, span: Range<usize>, key_path: String, message: String) -> Self {
        let (line, column) = source.line_col(span.start);
        let line_text = source.line_text(line).to_string();
        let width = source.text.get(span.clone()).map_or(1, |s| s.lines().next().unwrap_or("").chars().count()).max(1);
        let start = column - 1;
        let end = (start + width).min(line_text.chars().count().max(start + 1));
        Diagnostic {
            file: source.file.to_path_buf(),
            line,
            column,
            key_path,
            message,
            help: None,
            snippet: Some((line_text, start..end)),
        }
    }

    /// Adds what would be valid.
    pub(super) fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Drops the source line from the rendering (the line holds a secret).
    pub(super) fn redacted(mut self) -> Self {
        self.snippet = None;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.key_path.is_empty() { String::new() } else { format!("`{}`: ", self.key_path) };
        writeln!(f, "error: {at}{}", self.message)?;
        let gutter = " ".repeat(self.line.to_string().len());
        writeln!(f, "{gutter}--> {}:{}:{}", self.file.display(), self.line, self.column)?;
        if let Some((text, marked)) = &self.snippet {
            writeln!(f, "{gutter} |")?;
            writeln!(f, "{} | {text}", self.line)?;
            let pad: String = text.chars().take(marked.start).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            writeln!(f, "{gutter} | {pad}{}", "^".repeat(marked.len().max(1)))?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "{gutter} = help: {help}")?;
        }
        Ok(())
    }
}

/// All the problems found in one file, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} in the experiment file", if n == 1 { "" } else { "s" })
    }
}

/// A file's text with line starts indexed, to turn byte offsets into line and column.
pub(super) struct SourceText<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceText { file, text, line_starts }
    }

    /// 1-based (line, column) of byte `offset`; column counts characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// The text of 1-based `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(self.text.len());
        let rest = &self.text[start..];
        rest.split('\n').next().unwrap_or("").trim_end_matches('\r')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "a = 1\nbé = \"x\"\n";
        let src = SourceText::new(Path::new("f.toml"), text);
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(text.find('=').unwrap()), (1, 3));
        let x = text.find("\"x\"").unwrap();
        assert_eq!(src.line_col(x), (2, 6));
        assert_eq!(src.line_text(2), "bé = \"x\"");
    }

    #[test]
    fn renders_like_rustc() {
        let text = "[judge]\nflip_rate = \"high\"\n";
        let src = SourceText::new(Path::new("e.toml"), text);
        let start = text.find("\"high\"").unwrap();
        let d = Diagnostic::new(&src, start..start + 6, "judge.flip_rate".into(), "bad".into())
            .with_help(Some("a number".into()));
        let out = d.to_string();
        assert!(out.contains("--> e.toml:2:13"), "{out}");
        assert!(out.contains("2 | flip_rate = \"high\""), "{out}");
        assert!(out.contains("  |             ^^^^^^"), "{out}");
        assert!(out.contains("= help: a number"), "{out}");
    }
}
