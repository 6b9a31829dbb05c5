//! Every metric the workspace records is in the catalogue (`offline_access_http::METRICS`), described on
//! `/metrics` (`# HELP`, `# TYPE`), and documented in docs/metrics.md with its labels.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use metrics_exporter_prometheus::PrometheusBuilder;
use offline_access_http::{METRICS, MetricKind, describe_metrics};

use crate::helpers::{read, repo_root};

/// One `counter!`/`histogram!`/`gauge!` call found in the sources.
#[derive(Debug)]
struct Recorded {
    kind: MetricKind,
    name: String,
    labels: BTreeSet<String>,
    at: String,
}

/// The text of a macro call's arguments: from after `(` to its matching `)`.
fn arguments(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    text
}

/// The string literals of `text` each followed by `=>` (a metric macro's label keys).
fn label_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let parts: Vec<&str> = text.split('"').collect();
    // Odd parts are inside quotes (metric macro arguments hold no escaped quotes).
    for i in (1..parts.len()).step_by(2) {
        if parts
            .get(i + 1)
            .is_some_and(|after| after.trim_start().starts_with("=>"))
        {
            keys.insert(parts[i].to_owned());
        }
    }
    keys
}

/// Every metric recorded in `source` (the file's text; `at` names it in messages).
fn recorded_in(source: &str, at: &str) -> Vec<Recorded> {
    let mut found = Vec::new();
    for (kind, needle) in [
        (MetricKind::Counter, "counter!("),
        (MetricKind::Histogram, "histogram!("),
        (MetricKind::Gauge, "gauge!("),
    ] {
        for (start, _) in source.match_indices(needle) {
            // `describe_counter!(` and friends describe, they do not record.
            if source[..start].ends_with('_') {
                continue;
            }
            let args = arguments(&source[start + needle.len()..]);
            let name = args
                .trim_start()
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .map(|(name, _)| name.to_owned())
                .unwrap_or_else(|| {
                    panic!("{at}: a metric whose name is not a string literal: {args}")
                });
            found.push(Recorded {
                kind,
                name,
                labels: label_keys(args),
                at: at.to_owned(),
            });
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every metric recorded by the workspace's code: the `src` of every crate and of fake-google (tests and
/// benchmarks record none of their own).
fn recorded_in_the_workspace() -> Vec<Recorded> {
    let root = repo_root();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("src"), &mut sources);
    }
    rust_files(&root.join("fake-google/src"), &mut sources);
    assert!(sources.len() > 50, "{sources:?}");
    sources
        .iter()
        .flat_map(|path| {
            let at = path
                .strip_prefix(&root)
                .unwrap_or(path)
                .display()
                .to_string();
            recorded_in(&std::fs::read_to_string(path).unwrap(), &at)
        })
        .collect()
}

#[test]
fn the_scan_finds_names_kinds_and_labels_and_skips_descriptions() {
    let source = r#"
        metrics::counter!("a_total", "route" => route.clone(), "status" => s.as_str().to_owned()).increment(1);
        metrics::histogram!(
            "b_seconds",
            "endpoint" => endpoint
        )
        .record(1.0);
        gauge!("c", "state" => state).set(f(1, (2, 3)));
        metrics::describe_counter!(m.name, m.help);
    "#;
    let found = recorded_in(source, "x.rs");
    let summary: Vec<_> = found
        .iter()
        .map(|r| {
            (
                r.kind,
                r.name.as_str(),
                r.labels.iter().cloned().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                MetricKind::Counter,
                "a_total",
                vec!["route".to_owned(), "status".to_owned()]
            ),
            (
                MetricKind::Histogram,
                "b_seconds",
                vec!["endpoint".to_owned()]
            ),
            (MetricKind::Gauge, "c", vec!["state".to_owned()]),
        ]
    );
}

#[test]
fn every_recorded_metric_is_in_the_catalogue_with_its_kind_and_labels() {
    let recorded = recorded_in_the_workspace();
    let mut labels_used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in &recorded {
        let entry = METRICS
            .iter()
            .find(|m| m.name == r.name)
            .unwrap_or_else(|| {
                panic!(
                    "{} records {} but offline_access_http::METRICS (crates/http/src/catalogue.rs) lacks it",
                    r.at, r.name
                )
            });
        assert_eq!(entry.kind, r.kind, "{}: {}", r.at, r.name);
        let declared: BTreeSet<String> = entry.labels.iter().map(|l| (*l).to_owned()).collect();
        assert!(
            r.labels.is_subset(&declared),
            "{}: {} records labels {:?}, the catalogue says {:?}",
            r.at,
            r.name,
            r.labels,
            declared
        );
        labels_used
            .entry(entry.name)
            .or_default()
            .extend(r.labels.iter().cloned());
    }
    // And nothing in the catalogue that no code records, or with a label no code sets.
    for m in METRICS {
        let used = labels_used
            .get(m.name)
            .unwrap_or_else(|| panic!("{} is catalogued but recorded nowhere", m.name));
        let declared: BTreeSet<String> = m.labels.iter().map(|l| (*l).to_owned()).collect();
        assert_eq!(used, &declared, "{}", m.name);
        assert!(m.name.starts_with("offline_access_"), "{}", m.name);
        assert!(m.help.ends_with('.'), "{}", m.name);
    }
    let names: BTreeSet<_> = METRICS.iter().map(|m| m.name).collect();
    assert_eq!(names.len(), METRICS.len(), "a metric is catalogued twice");
}

#[test]
fn every_catalogued_metric_gets_its_help_and_type_line() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        // A described metric shows once it has a value.
        for m in METRICS {
            let labels: Vec<(String, String)> = m
                .labels
                .iter()
                .map(|l| ((*l).to_owned(), "x".to_owned()))
                .collect();
            match m.kind {
                MetricKind::Counter => metrics::counter!(m.name, &labels).increment(1),
                MetricKind::Histogram => metrics::histogram!(m.name, &labels).record(0.5),
                MetricKind::Gauge => metrics::gauge!(m.name, &labels).set(1.0),
            }
        }
    });
    let text = handle.render();
    for m in METRICS {
        assert!(
            text.contains(&format!("# HELP {} {}\n", m.name, m.help)),
            "no HELP for {} in:\n{text}",
            m.name
        );
        // Without buckets configured (the default, as `serve` installs it) a histogram renders as a summary.
        let types: &[&str] = match m.kind {
            MetricKind::Histogram => &["histogram", "summary"],
            other => &[other.prometheus_type()],
        };
        assert!(
            types
                .iter()
                .any(|t| text.contains(&format!("# TYPE {} {t}\n", m.name))),
            "no TYPE for {} in:\n{text}",
            m.name
        );
    }
}

/// The rows of docs/metrics.md's tables: the metric (first cell, in backticks) → the whole row.
fn catalogue_rows(markdown: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in markdown.lines() {
        let Some(first) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((name, _)) = first.split_once('`') else {
            continue;
        };
        if name.starts_with("offline_access_") {
            rows.insert(name.to_owned(), line.to_owned());
        }
    }
    rows
}

#[test]
fn docs_metrics_md_documents_every_metric_with_its_type_and_labels_and_nothing_else() {
    let rows = catalogue_rows(&read("docs/metrics.md"));
    for m in METRICS {
        let row = rows
            .get(m.name)
            .unwrap_or_else(|| panic!("docs/metrics.md has no row for {}", m.name));
        assert!(
            row.contains(&format!("| {} |", m.kind.prometheus_type())),
            "{}: the row does not say {}: {row}",
            m.name,
            m.kind.prometheus_type()
        );
        for label in m.labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "{}: label {label} not in {row}",
                m.name
            );
        }
    }
    let catalogued: BTreeSet<_> = METRICS.iter().map(|m| m.name.to_owned()).collect();
    let documented: BTreeSet<_> = rows.keys().cloned().collect();
    assert_eq!(documented, catalogued, "docs/metrics.md and METRICS differ");
}
