//! Keeps `docs/configuration.md` true to the loader: every table there must list exactly the
//! keys the loader accepts in its section, and every section must have its table.
//!
//! A table belongs to the heading above it; the heading's text without backticks names the
//! section (`[gateway]`, `[[adapter]] TYPE`, or `[[device.field]] TYPE1 and TYPE2` for two
//! adapter types with the same field keys). The
//! keys of a row are the backticked names in its first cell (`` `secret_file` / `secret` ``).
//! A new section, or an adapter type, is one line in [`sections`]; a new key in a key list
//! of `raw.rs` needs only its row in the document.

use std::collections::{BTreeMap, BTreeSet};

use super::alert::ALERT_KEYS;
use super::raw::{
    all_types, TypeKeys, ACCESS_KEYS, ADAPTER_COMMON, DEVICE_COMMON, FIELD_COMMON, GATEWAY_KEYS,
    LOG_KEYS, METRICS_KEYS, PUBLISH_KEYS, TOP_KEYS, XMPP_KEYS,
};

/// The keys one adapter type adds at one level (adapter, device or field).
type KeysOf = fn(&TypeKeys) -> &'static [&'static str];

/// Every section and the keys the loader accepts there, named as the document's headings name
/// them. Adapter types with the same keys at a level share a table ("TYPE1 and TYPE2", as two
/// transports of one adapter crate); a type without keys at a level has none.
fn sections() -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = vec![
        ("[gateway]".into(), GATEWAY_KEYS.to_vec()),
        ("[xmpp]".into(), XMPP_KEYS.to_vec()),
        ("[access]".into(), ACCESS_KEYS.to_vec()),
        ("[publish]".into(), PUBLISH_KEYS.to_vec()),
        ("[metrics]".into(), METRICS_KEYS.to_vec()),
        ("[log]".into(), LOG_KEYS.to_vec()),
        ("[[adapter]]".into(), ADAPTER_COMMON.to_vec()),
        ("[[device]]".into(), DEVICE_COMMON.to_vec()),
        ("[[device.field]]".into(), FIELD_COMMON.to_vec()),
        ("[[alert]]".into(), ALERT_KEYS.to_vec()),
    ];
    let levels: [(&str, KeysOf); 3] = [
        ("[[adapter]]", |t| t.adapter),
        ("[[device]]", |t| t.device),
        ("[[device.field]]", |t| t.field),
    ];
    for (level, keys_of) in levels {
        let mut groups: Vec<(Vec<&str>, &'static [&'static str])> = Vec::new();
        for t in &all_types() {
            let keys = keys_of(t);
            match groups.iter_mut().find(|(_, k)| *k == keys) {
                Some((names, _)) => names.push(t.name),
                None => groups.push((vec![t.name], keys)),
            }
        }
        for (names, keys) in groups.into_iter().filter(|(_, k)| !k.is_empty()) {
            out.push((format!("{level} {}", names.join(" and ")), keys.to_vec()));
        }
    }
    out
}

/// The document's tables: heading (backticks removed) -> the keys of its rows.
fn documented(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut heading = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            heading = h.trim_start_matches('#').trim().replace('`', "");
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        // The header row and the separator row have no backticked name.
        let keys = first.split('`').skip(1).step_by(2).map(str::to_owned);
        tables.entry(heading.clone()).or_default().extend(keys);
    }
    tables.retain(|_, keys| !keys.is_empty());
    tables
}

#[test]
fn every_section_has_its_table_with_exactly_its_keys() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let mut tables = documented(&text);
    let mut problems = Vec::new();
    for (section, keys) in sections() {
        let Some(rows) = tables.remove(&section) else {
            problems.push(format!("no table under a heading `{section}`"));
            continue;
        };
        let want: BTreeSet<&str> = keys.iter().copied().collect();
        let have: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
        for k in want.difference(&have) {
            problems.push(format!("{section}: `{k}` has no row"));
        }
        for k in have.difference(&want) {
            problems.push(format!("{section}: `{k}` is documented but not a key"));
        }
        if have.len() != rows.len() {
            problems.push(format!("{section}: a key has two rows"));
        }
    }
    for section in tables.keys() {
        problems.push(format!("a table under `{section}`, which is no section"));
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        path.display(),
        problems.join("\n")
    );
}

#[test]
fn every_top_level_section_is_in_the_reference() {
    let labels: Vec<String> = sections().into_iter().map(|(s, _)| s).collect();
    for top in TOP_KEYS {
        assert!(
            labels.contains(&format!("[{top}]")) || labels.contains(&format!("[[{top}]]")),
            "section `{top}` is missing from sections()"
        );
    }
}

#[test]
fn tables_are_read_from_their_headings() {
    let text =
        "# Title\n\n| key | meaning |\n|---|---|\n\n## `[log]`\n\n| key | meaning |\n|---|---|\n\
                | `level` | x |\n| `a` / `b` | y `not a key` |\n";
    let tables = documented(text);
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(tables["[log]"], ["level", "a", "b"]);
}
