//! Hostile input for the lazily parsed JSON records and the field-path extractor: arbitrary
//! bytes as records, arbitrary text as paths, generated JSON with paths into it, the corpus
//! (`tests/corpus/json/`, `tests/corpus/path/`) and explicit cases (deep nesting, huge
//! indices, duplicate keys). Nothing may panic, overflow a 2 MiB stack or allocate out of
//! proportion; a path either parses or is an error naming it.
//!
//! Longer run: `PROPTEST_CASES=100000 cargo test --release -p streamwatch-core --test hostile_json`.

mod common;

use common::{bounded, cases, corpus, on_small_stack};
use proptest::prelude::*;
use serde_json::Value;
use streamwatch_core::path::Segment;
use streamwatch_core::{FieldPath, Fields, JsonObject};

#[global_allocator]
static ALLOC: common::Tracking = common::Tracking;

const PATHS: &[&str] = &[
    "Severity",
    "City",
    "a",
    "a.b",
    "a[0]",
    "a[0][1].b",
    "items[3].name",
    "Start_Time",
];

/// The target: validate `data` as a record, then read every path from it, lazily and from
/// the fully parsed value, and check both readings agree.
fn target(data: &[u8], extra: Option<&FieldPath>) {
    let mut paths: Vec<FieldPath> = PATHS.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
    paths.extend(extra.cloned());
    bounded("json record", data, |d| {
        let Ok(object) = JsonObject::parse(d) else {
            return;
        };
        let full: Option<Value> = serde_json::from_slice(d).ok();
        for p in &paths {
            let lazy = object.field(p).map(|v| v.into_owned());
            if let Some(full) = &full {
                let eager = full.field(p).map(|v| v.into_owned());
                // Numbers keep their text lazily; compare what a rule reads from them (to
                // a rounding step: serde_json's float parser is not always correctly rounded).
                let read = |v: &Option<streamwatch_core::FieldValue<'_>>| {
                    v.as_ref()
                        .map(|v| (v.as_f64(), v.as_str().map(str::to_owned)))
                };
                let (l, e) = (read(&lazy), read(&eager));
                let same = match (&l, &e) {
                    (Some((Some(a), _)), Some((Some(b), _))) => {
                        a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
                    }
                    _ => l == e,
                };
                assert!(
                    same,
                    "path {p}: {l:?} vs {e:?} on {}",
                    String::from_utf8_lossy(d)
                );
            }
            if let Some(v) = lazy {
                let _ = v.to_text();
            }
        }
    });
}

fn path_target(text: &str) {
    match bounded("path", text.as_bytes(), |_| FieldPath::parse(text)) {
        Ok(path) => {
            assert_eq!(path.as_str(), text);
            assert!(!path.segments().is_empty());
            for s in path.segments() {
                if let Segment::Key(k) = s {
                    assert!(!k.is_empty() && !k.contains('.') && !k.contains('['));
                }
            }
        }
        Err(e) => assert_eq!(e.path, text),
    }
}

#[test]
fn corpus_replays_clean() {
    for (name, bytes) in corpus("json") {
        eprintln!("json corpus {name}");
        on_small_stack(move || target(&bytes, None));
    }
    for (name, bytes) in corpus("path") {
        eprintln!("path corpus {name}");
        path_target(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn deep_nesting_under_any_path_is_safe() {
    for depth in [100, 127, 128, 129, 1_000, 200_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let record = format!(
                "{{\"a\":{}1{},\"Severity\":4}}",
                open.repeat(depth),
                close.repeat(depth)
            );
            on_small_stack(move || {
                target(record.as_bytes(), FieldPath::parse("a.a.a.a").ok().as_ref());
                if let Ok(o) = JsonObject::parse(record.as_bytes()) {
                    assert_eq!(
                        o.field(&FieldPath::parse("Severity").unwrap())
                            .and_then(|v| v.as_f64()),
                        Some(4.0)
                    );
                }
            });
        }
    }
}

#[test]
fn adversarial_paths() {
    for p in [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "[0]",
        "a[",
        "a]",
        "a[]",
        "a[-1]",
        "a[18446744073709551616]",
        "a[0]b",
        "a[0][",
        "a[ 1]",
        "a[+1]",
        "é[0].ü",
        "a[0]]",
        "[[",
    ] {
        path_target(p);
    }
    let long = vec!["a"; 100_000].join(".");
    path_target(&long);
    let long_index = format!("a{}", "[0]".repeat(100_000));
    path_target(&long_index);
    assert!(FieldPath::parse("a[18446744073709551616]").is_err());
}

#[test]
fn many_members_and_duplicate_keys() {
    let many: String = (0..100_000).map(|i| format!("\"k{i}\":{i},")).collect();
    let record = format!("{{{many}\"Severity\":3}}");
    target(record.as_bytes(), None);
    let dups = format!("{{{}\"Severity\":4}}", "\"Severity\":1,".repeat(100_000));
    let o = JsonObject::parse(dups.as_bytes()).unwrap();
    assert_eq!(
        o.field(&FieldPath::parse("Severity").unwrap())
            .and_then(|v| v.as_f64()),
        Some(4.0)
    );
    // Numbers a rule must not read as finite.
    for n in ["1e400", "-1e400", "123456789012345678901234567890e300"] {
        let text = format!("{{\"Severity\":{n}}}");
        if let Ok(o) = JsonObject::parse(text.as_bytes()) {
            let v = o.field(&FieldPath::parse("Severity").unwrap());
            assert_eq!(v.and_then(|v| v.as_f64()), None, "{n}");
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}|items|name|Severity", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn path_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-c]{1,2}|items|name|Severity",
            "\\[[0-9]{1,2}\\]",
            Just(".".to_owned())
        ],
        1..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        target(&data, None);
    }

    #[test]
    fn arbitrary_text_paths(text in ".{0,40}", shaped in path_text()) {
        path_target(&text);
        path_target(&shaped);
    }

    #[test]
    fn generated_records_and_paths(
        members in prop::collection::btree_map("[a-c]{1,2}|items|Severity", json_value(), 0..6),
        path in path_text(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = serde_json::to_vec(&members).unwrap();
        let path = FieldPath::parse(&path).ok();
        target(&bytes, path.as_ref());
        target(&bytes[..cut.index(bytes.len())], path.as_ref());
    }
}

/// Errors about a record are logged, so they describe it without quoting it: serde_json's
/// own message quotes the offending value, the redacted one does not, and a rule names the
/// kind of a wrong value, not the value.
#[test]
fn errors_never_echo_the_payload() {
    use streamwatch_core::Condition;
    use streamwatch_core::json::redacted_error;
    let e = JsonObject::parse(b"\"jane.doe@example.com\"").unwrap_err();
    assert!(
        e.to_string().contains("jane.doe"),
        "serde_json quotes it: {e}"
    );
    assert!(
        !redacted_error(&e).contains("jane.doe"),
        "{}",
        redacted_error(&e)
    );
    let syntax = JsonObject::parse(b"{\"a\": jane.doe@example.com}").unwrap_err();
    assert!(!redacted_error(&syntax).contains("jane.doe"));
    let missing = serde_json::from_str::<streamwatch_core::ChangeRecord>("{}").unwrap_err();
    assert!(redacted_error(&missing).starts_with("missing field"));
    let rule = Condition::parse("Severity > 2").unwrap();
    let o = JsonObject::parse(br#"{"Severity":"jane.doe@example.com"}"#).unwrap();
    let err = rule.eval(&o).unwrap_err().to_string();
    assert_eq!(err, "field Severity is a string, expected a number");
}
