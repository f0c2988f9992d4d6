//! Entry points of the fuzz targets in `fuzz/` (one per line format), kept in the crate so that
//! the normal test suite runs them too: on the seed corpus and on generated inputs.
//!
//! Each takes arbitrary bytes, runs one parser on them as a line, looks values up in whatever
//! record comes out and converts them to every field type, then pushes the same bytes through
//! the whole read pipeline (framing in two reads, UTF-8 check, parsing, routing to devices with
//! and without `match`). It asserts what must hold for any input; a panic anywhere is a bug.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use gateway_api::{DeviceId, FieldSpec, FieldType, Value};
use tokio::time::Instant;

use crate::config::{
    Format, SerialAdapterConfig, SerialDevice, SerialDeviceConfig, SerialField, SerialFieldConfig,
};
use crate::input::Input;
use crate::parse::csv::{CsvParser, CsvSyntax};
use crate::parse::kv::KvSyntax;
use crate::parse::{self, Parser};
use crate::record::{Record, Selector};
use crate::stats::SerialStats;
use crate::time;

const TYPES: [FieldType; 4] = [
    FieldType::Numeric,
    FieldType::Integer,
    FieldType::Boolean,
    FieldType::String,
];

/// The patterns the regex target parses with (the first is the serial adapter README's example).
pub const PATTERNS: [&str; 3] = [
    r"^(?P<id>\w+) (?P<temp>[-\d.]+)$",
    r"(?P<key>\w+)=(?P<value>\S+)",
    r"^T(?P<temp>-?\d+(?:\.\d+)?)(?:;H(?P<hum>\d+))?(?:;(?P<TimeDate>.*))?$",
];

/// Format `json`.
pub fn json(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(v) = parse::json::parse(line) {
            let record = Record::Json(v);
            let mut selectors = vec![Selector::Whole];
            for p in ["", "/id", "/t", "/0", "/a/b", "/~0~1", "/-"] {
                selectors.push(Selector::Pointer(p.into()));
            }
            for k in ["id", "ID", "temp", "time"] {
                selectors.push(Selector::Key(k.into()));
            }
            lookups(&record, &selectors);
        }
    }
    pipeline(Format::Json, data);
}

/// Format `kv`; the first byte picks the separators.
pub fn kv(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let separators = [None, Some(","), Some(";"), Some(" | ")];
    let kv_separators = ["=", ":", "->"];
    let syntax = KvSyntax {
        separator: separators[usize::from(pick) % separators.len()].map(str::to_owned),
        kv_separator: kv_separators[usize::from(pick / 4) % kv_separators.len()].to_owned(),
    };
    if let Ok(line) = std::str::from_utf8(rest) {
        if let Ok(pairs) = parse::kv::parse(line, &syntax) {
            assert!(!pairs.is_empty());
            for (k, v) in &pairs {
                assert!(
                    !k.is_empty() && k.trim() == k && !k.contains('"'),
                    "key {k:?}"
                );
                assert!(line.contains(k.as_str()));
                let _ = v;
            }
            let record = Record::Pairs(pairs);
            lookups(
                &record,
                &[Selector::Key("temp".into()), Selector::Key("ID".into())],
            );
        }
    }
    pipeline(Format::Kv(syntax), rest);
}

/// Format `xml`.
pub fn xml(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(pairs) = parse::xml::parse(line) {
            let record = Record::Pairs(pairs);
            lookups(
                &record,
                &[
                    Selector::Key("SensorTemp".into()),
                    Selector::Key("id".into()),
                    Selector::Key("TimeDate".into()),
                ],
            );
        }
    }
    pipeline(Format::Xml, data);
}

/// [`PATTERNS`], compiled once: compiling per input would make the target a regex-compiler
/// benchmark.
fn patterns() -> &'static [::regex::Regex] {
    static COMPILED: OnceLock<Vec<::regex::Regex>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        PATTERNS
            .iter()
            .filter_map(|p| ::regex::Regex::new(p).ok())
            .collect()
    })
}

/// Format `regex`; the first byte picks one of [`PATTERNS`].
pub fn regex(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    // The patterns are constants that compile (the tests check them).
    let compiled = patterns();
    let index = usize::from(pick) % compiled.len().max(1);
    let Some(re) = compiled.get(index) else {
        return;
    };
    if let Ok(line) = std::str::from_utf8(rest) {
        if let Ok(pairs) = parse::regex::parse(line, re) {
            let names = parse::regex::group_names(re);
            for (k, v) in &pairs {
                assert!(names.contains(k), "{k} is a group");
                assert!(line.contains(v.as_str()), "{v:?} is part of the line");
            }
            lookups(&Record::Pairs(pairs), &[Selector::Key("temp".into())]);
        }
    }
    // One pipeline per pattern for the whole run: a fresh clone of a regex starts with empty
    // search caches, and rebuilding them for every input would dominate the run.
    thread_local! {
        static INPUTS: RefCell<Vec<Option<Input>>> = const { RefCell::new(Vec::new()) };
    }
    INPUTS.with(|inputs| {
        let mut inputs = inputs.borrow_mut();
        if inputs.len() <= index {
            inputs.resize_with(index + 1, || None);
        }
        let input = inputs[index].get_or_insert_with(|| input_for(Format::Regex(re.clone())));
        input.reset();
        pipeline_with(input, rest);
    });
}

/// Format `csv`: the data is split into lines and fed in order (the parser learns headers).
pub fn csv(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let syntax = CsvSyntax {
        separator: if pick % 2 == 0 {
            ",".into()
        } else {
            ";".into()
        },
        columns: (pick % 3 == 0).then(|| vec!["id".into(), "temp".into()]),
    };
    let mut parser = CsvParser::new(syntax.clone());
    for line in rest.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(Some(pairs)) = parser.parse(line) {
            assert_eq!(Some(pairs.len()), parser.header().map(<[String]>::len));
            lookups(&Record::Pairs(pairs), &[Selector::Key("temp".into())]);
        }
    }
    pipeline(Format::Csv(syntax), rest);
}

/// Looks every selector up and converts what is found to every type and to a time.
fn lookups(record: &Record, selectors: &[Selector]) {
    for s in selectors {
        if let Some(found) = record.get(s) {
            let _ = found.text();
            let _ = time::from_found(found);
            for kind in TYPES {
                if let Ok(Value::Float(f)) = found.to_value(kind) {
                    assert!(f.is_finite(), "numbers are finite");
                }
            }
        }
    }
}

fn device(id: &str, matcher: &[(&str, &str)]) -> SerialDevice {
    let field = |name: &str, kind| SerialField {
        spec: FieldSpec {
            name: name.into(),
            unit: "".into(),
            kind,
            writable: false,
        },
        config: SerialFieldConfig {
            source: Selector::Key(name.into()),
            command: None,
        },
    };
    SerialDevice {
        // Constant ids that are valid.
        id: DeviceId::new(id).unwrap_or_else(|_| unreachable!("valid id")),
        config: SerialDeviceConfig {
            matcher: matcher
                .iter()
                .map(|(k, v)| (Selector::key_or_pointer(k), (*v).to_owned()))
                .collect(),
        },
        fields: vec![
            field("temp", FieldType::Numeric),
            field("id", FieldType::Integer),
            field("on", FieldType::Boolean),
            field("label", FieldType::String),
            SerialField {
                config: SerialFieldConfig {
                    source: Selector::Whole,
                    command: None,
                },
                ..field("whole", FieldType::String)
            },
        ],
    }
}

/// The whole read side on `data`, in two reads split where the first byte says.
/// The longest line of the fuzzed pipelines.
const MAX_LINE: usize = 256;

/// The read side of a port in `format`, with devices with and without `match`.
fn input_for(format: Format) -> Input {
    let mut config = SerialAdapterConfig::new("/dev/fuzz", format);
    config.max_line = MAX_LINE;
    let devices = [
        device("all", &[]),
        device("one", &[("id", "1")]),
        device("ptr", &[("/a", "x")]),
    ];
    Input::new(
        Arc::from("fuzz"),
        &config,
        &devices,
        Arc::new(SerialStats::default()),
    )
}

fn pipeline(format: Format, data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        // The same bytes as one line, straight to the parser.
        let _ = Parser::new(&format).parse(line);
    }
    pipeline_with(&mut input_for(format), data);
}

fn pipeline_with(input: &mut Input, data: &[u8]) {
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let now = Instant::now();
    let mut lines = Vec::new();
    let mut readings = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        input.lines(chunk, now, &mut lines);
        for line in lines.drain(..) {
            assert!(line.len() <= MAX_LINE, "lines are bounded");
            input.record(&line, Utc::now(), now, &mut readings);
        }
    }
    for r in readings {
        if let Value::Text(t) = &r.value {
            assert!(
                t.chars()
                    .all(|c| !c.is_control()
                        || matches!(c, '\t' | '\n' | '\r' | '\u{7f}'..='\u{9f}')),
                "text values carry no control characters XML forbids: {t:?}"
            );
        }
        if let Value::Float(f) = r.value {
            assert!(f.is_finite());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    type Target = fn(&[u8]);
    const TARGETS: [(&str, Target); 5] = [
        ("json", json),
        ("kv", kv),
        ("xml", xml),
        ("regex", regex),
        ("csv", csv),
    ];

    /// The seed corpus of a target (`fuzz/seeds/<target>/`), at least one file each.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds")
            .join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(!out.is_empty(), "{} has seeds", dir.display());
        out
    }

    /// xorshift64*: a fixed, dependency-free stream of pseudo-random numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Flips, inserts, deletes and splices bytes of `seed`.
    fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
        const TOKENS: [&[u8]; 12] = [
            b"\n", b"\r\n", b"=", b"\"", b"<", b"/>", b"&amp;", b"&#", b"{", b"\\u", b",", b"\xff",
        ];
        let mut v = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(v.len() + 1);
            match rng.below(5) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                1 => v.insert(at, rng.next() as u8),
                2 if at < v.len() => {
                    v.remove(at);
                }
                3 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    v.splice(at..at, t.iter().copied());
                }
                _ => {
                    let from = rng.below(other.len() + 1);
                    v.splice(at..at, other[from..].iter().copied().take(16));
                }
            }
        }
        v
    }

    #[test]
    fn the_patterns_compile() {
        assert_eq!(patterns().len(), PATTERNS.len());
    }

    #[test]
    fn every_seed_and_thousands_of_mutations_pass() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (name, target) in TARGETS {
            let seeds = seeds(name);
            for s in &seeds {
                target(s);
            }
            for _ in 0..1000 {
                let a = &seeds[rng.below(seeds.len())];
                let b = &seeds[rng.below(seeds.len())];
                target(&mutate(&mut rng, a, b));
            }
        }
    }

    #[test]
    fn edge_inputs() {
        for (_, target) in TARGETS {
            for input in [
                &b""[..],
                b"\n",
                b"\x00",
                b"\xff\xfe",
                &[b'\n'; 600],
                &[b'{'; 600],
                &[b'<'; 600],
            ] {
                target(input);
            }
        }
    }
}
