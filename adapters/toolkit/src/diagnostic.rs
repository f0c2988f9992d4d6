//! Positions and messages: what a user reads when the configuration is wrong.
//!
//! Every problem found in `gateway.toml` becomes a [`Diagnostic`] printed as `PATH:LINE:COL:
//! message`, pointing at the key or value at fault. The loader collects them in a [`Report`]
//! (errors and warnings apart) so that one run shows every problem, not just the first; byte
//! spans from the TOML parser are turned into 1-based line and column numbers by [`LineIndex`].
//! [`did_you_mean`] proposes the closest known name for a misspelt key or reference.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A byte range in the configuration source.
pub type Span = Range<usize>;

/// One problem (or, in [`the gateway's list of warnings`], one warning) with its position.
///
/// `line` and `col` are 1-based; `col` counts characters, not bytes. Warnings carry no prefix
/// of their own: whoever prints them says `warning:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about the file as a whole (unreadable, empty...): position 1:1.
    pub fn at_start(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: 1,
            col: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Everything wrong with a configuration, in file order; displayed one diagnostic per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_lines(.0))]
pub struct ConfigErrors(pub Vec<Diagnostic>);

fn join_lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Maps byte offsets of one source text to 1-based line and column numbers.
pub struct LineIndex<'s> {
    source: &'s str,
    /// Byte offset at which each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub fn new(source: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            source,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        // `line >= 1` because line_starts[0] == 0 <= offset.
        let start = self.line_starts[line - 1];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |text| text.chars().count());
        (line, col + 1)
    }

    pub fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }
}

/// Collects the errors and warnings of one load.
pub struct Report<'s> {
    file: PathBuf,
    source: &'s str,
    /// Made at the first position asked for: a valid file never needs it, and for a large
    /// one it is 8 bytes per line.
    index: std::cell::OnceCell<LineIndex<'s>>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'s> Report<'s> {
    pub fn new(file: &Path, source: &'s str) -> Self {
        Report {
            file: file.to_owned(),
            source,
            index: std::cell::OnceCell::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn index(&self) -> &LineIndex<'s> {
        self.index.get_or_init(|| LineIndex::new(self.source))
    }

    fn diagnostic(&self, span: &Span, message: String) -> Diagnostic {
        let (line, col) = self.index().position(span.start);
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message,
        }
    }

    /// Records an error at the start of `span`.
    pub fn error(&mut self, span: &Span, message: impl Into<String>) {
        let d = self.diagnostic(span, message.into());
        self.errors.push(d);
    }

    /// Records a warning at the start of `span`.
    pub fn warn(&mut self, span: &Span, message: impl fmt::Display) {
        let d = self.diagnostic(span, message.to_string());
        self.warnings.push(d);
    }

    /// The 1-based line of a span, for messages such as "already used (line 12)".
    pub fn line(&self, span: &Span) -> usize {
        self.index().line(span.start)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Errors and warnings, each sorted by position (stable, so same-position messages keep
    /// the order they were found in) with exact repeats removed.
    pub fn finish(self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        (tidy(self.errors), tidy(self.warnings))
    }
}

fn tidy(mut list: Vec<Diagnostic>) -> Vec<Diagnostic> {
    list.sort_by_key(|d| (d.line, d.col));
    let mut out: Vec<Diagnostic> = Vec::with_capacity(list.len());
    for d in list {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The candidate closest to `input`, if one is close enough to be a likely misspelling:
/// Jaro-Winkler similarity of at least 0.8, or few edits (insertions, deletions, substitutions,
/// swaps of neighbours): one for names of three characters, two from four on. Case is ignored.
pub fn did_you_mean<'c, I>(input: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let input = input.to_lowercase();
    let mut best: Option<(f64, usize, &'c str)> = None;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        if lower == input {
            return Some(candidate);
        }
        let similarity = strsim::jaro_winkler(&input, &lower);
        // Optimal string alignment: a swap of two neighbours (`bsu` for `bus`) is one edit.
        let edits = strsim::osa_distance(&input, &lower);
        let len = lower.chars().count();
        let close = similarity >= 0.8 || (edits <= 1 && len >= 3) || (edits <= 2 && len >= 4);
        if !close {
            continue;
        }
        let better = match best {
            None => true,
            Some((s, e, _)) => edits < e || (edits == e && similarity > s),
        };
        if better {
            best = Some((similarity, edits, candidate));
        }
    }
    best.map(|(_, _, candidate)| candidate)
}

/// `"; did you mean `x`?"` when a candidate is close, else the empty string.
pub fn suggestion<'c, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'c str>,
{
    did_you_mean(input, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

/// `a, b and c` for a list in a message.
pub fn list_names<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.as_ref())).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = "a = 1\nunit = \"°C\" x\n\nlast";
        let index = LineIndex::new(src);
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (1, 5));
        assert_eq!(index.position(5), (1, 6)); // the newline itself
        assert_eq!(index.position(6), (2, 1));
        // `x` comes after a two-byte character: column 13, byte offset 13 into the line.
        let x = src.find(" x").unwrap() + 1;
        assert_eq!(index.position(x), (2, 13));
        assert_eq!(index.position(src.find("last").unwrap()), (4, 1));
        assert_eq!(index.position(10_000), (4, 5));
    }

    #[test]
    fn displays_path_line_col_message() {
        let d = Diagnostic {
            file: PathBuf::from("/etc/gw.toml"),
            line: 3,
            col: 7,
            message: "unknown key `nmae`".into(),
        };
        assert_eq!(d.to_string(), "/etc/gw.toml:3:7: unknown key `nmae`");
        let errors = ConfigErrors(vec![d.clone(), Diagnostic::at_start(Path::new("x"), "bad")]);
        assert_eq!(
            errors.to_string(),
            "/etc/gw.toml:3:7: unknown key `nmae`\nx:1:1: bad"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["name", "state_dir", "history"];
        assert_eq!(did_you_mean("nmae", keys), Some("name"));
        assert_eq!(did_you_mean("histroy", keys), Some("history"));
        assert_eq!(did_you_mean("statedir", keys), Some("state_dir"));
        assert_eq!(did_you_mean("Name", keys), Some("name"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("x", keys), None);
        assert_eq!(did_you_mean("bsu", ["sim", "bus"]), Some("bus"));
        assert_eq!(did_you_mean("max", ["min"]), None);
        assert_eq!(
            did_you_mean("perod", ["min", "max", "period", "value"]),
            Some("period")
        );
        assert_eq!(
            suggestion("generater", ["generator"]),
            "; did you mean `generator`?"
        );
        assert_eq!(suggestion("zzz", ["generator"]), "");
    }

    #[test]
    fn report_sorts_and_dedups() {
        let src = "a\nb\nc\n";
        let mut report = Report::new(Path::new("f.toml"), src);
        report.error(&(4..5), "third");
        report.error(&(0..1), "first");
        report.error(&(4..5), "third");
        report.warn(&(2..3), "careful");
        assert!(report.has_errors());
        assert_eq!(report.line(&(2..3)), 2);
        let (errors, warnings) = report.finish();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["f.toml:1:1: first", "f.toml:3:1: third"]);
        assert_eq!(warnings[0].to_string(), "f.toml:2:1: careful");
    }

    #[test]
    fn lists_names_for_messages() {
        assert_eq!(list_names::<&str>(&[]), "");
        assert_eq!(list_names(&["a"]), "`a`");
        assert_eq!(list_names(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
