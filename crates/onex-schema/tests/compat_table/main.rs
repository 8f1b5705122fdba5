//! The compatibility table, run under every mode, and the generated user documentation.
//!
//! Run: `cargo test -p onex-schema --test compat_table`. After changing the table, regenerate
//! `docs/schema-compatibility.md` with `ONEX_BLESS=1 cargo test -p onex-schema --test compat_table`.

mod cases;

use onex_core::CompatibilityMode;
use onex_schema::compat::{check_compatibility, PreviousVersion};
use serde_json::{json, Value};

use cases::{cases, Case};

const MODES: [CompatibilityMode; 7] = [
    CompatibilityMode::None,
    CompatibilityMode::Backward,
    CompatibilityMode::BackwardTransitive,
    CompatibilityMode::Forward,
    CompatibilityMode::ForwardTransitive,
    CompatibilityMode::Full,
    CompatibilityMode::FullTransitive,
];

fn expected(mode: CompatibilityMode, backward: bool, forward: bool) -> bool {
    match mode {
        CompatibilityMode::None => true,
        CompatibilityMode::Backward | CompatibilityMode::BackwardTransitive => backward,
        CompatibilityMode::Forward | CompatibilityMode::ForwardTransitive => forward,
        CompatibilityMode::Full | CompatibilityMode::FullTransitive => backward && forward,
    }
}

fn previous(schemas: &[&Value]) -> Vec<PreviousVersion> {
    schemas.iter().enumerate().map(|(i, s)| PreviousVersion { version: i as u32 + 1, schema: s.to_string() }).collect()
}

fn mode_name(mode: CompatibilityMode) -> String {
    serde_json::to_value(mode).unwrap().as_str().unwrap().to_string()
}

#[test]
fn the_table_has_at_least_thirty_pairs() {
    assert!(cases().len() >= 30, "only {} cases", cases().len());
}

#[test]
fn every_case_under_every_mode() {
    let mut failures = Vec::new();
    for case in cases() {
        let Case { change, old, new, backward, forward, reason } = &case;
        for mode in MODES {
            let report = check_compatibility(mode, &new.to_string(), &previous(&[old])).unwrap();
            let want = expected(mode, *backward, *forward);
            if report.compatible != want {
                failures.push(format!("{change} under {}: expected compatible={want}, got {:?}", mode_name(mode), report.messages));
            }
            if report.compatible != report.messages.is_empty() {
                failures.push(format!("{change} under {}: verdict and messages disagree: {:?}", mode_name(mode), report.messages));
            }
            for m in &report.messages {
                if !m.starts_with('#') || !m.contains(": ") {
                    failures.push(format!("{change}: message does not start with a schema path: {m}"));
                }
            }
        }
        let full = check_compatibility(CompatibilityMode::Full, &new.to_string(), &previous(&[old])).unwrap();
        if !reason.is_empty() && !full.messages.iter().any(|m| m.contains(reason)) {
            failures.push(format!("{change}: no reason contains {reason:?}: {:?}", full.messages));
        }
        if reason.is_empty() && !(*backward && *forward) {
            failures.push(format!("{change}: an incompatible case must name its expected reason"));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn messages_name_the_mode_direction_and_version() {
    let report = check_compatibility(
        CompatibilityMode::Full,
        &json!({"properties": {"qty": {"type": "integer"}}}).to_string(),
        &previous(&[&json!({"properties": {"qty": {"type": "number"}}})]),
    )
    .unwrap();
    assert_eq!(report.messages, vec!["#/properties/qty: type narrowed from number to integer (backward, version 1)".to_string()]);
}

/// Three versions where the latest-only check and the all-versions check disagree.
#[test]
fn transitive_modes_check_every_earlier_version() {
    let len = |n: u64| json!({"type": "string", "maxLength": n});
    // v1 ≤ 20, v2 ≤ 10, new ≤ 15: reads v2 data, not v1 data; v2 readers cannot read it.
    let (v1, v2, new) = (len(20), len(10), len(15));
    let expectations = [
        (CompatibilityMode::None, true),
        (CompatibilityMode::Backward, true),
        (CompatibilityMode::BackwardTransitive, false),
        (CompatibilityMode::Forward, false),
        (CompatibilityMode::ForwardTransitive, false),
        (CompatibilityMode::Full, false),
        (CompatibilityMode::FullTransitive, false),
    ];
    for (mode, want) in expectations {
        let report = check_compatibility(mode, &new.to_string(), &previous(&[&v1, &v2])).unwrap();
        assert_eq!(report.compatible, want, "{}: {:?}", mode_name(mode), report.messages);
    }
    let report = check_compatibility(CompatibilityMode::BackwardTransitive, &new.to_string(), &previous(&[&v1, &v2])).unwrap();
    assert_eq!(report.messages, vec!["#: maxLength tightened from 20 to 15 (backward, version 1)".to_string()]);

    // v1 ≤ 10, v2 ≤ 20, new ≤ 15: v2 readers read it, v1 readers do not.
    let (v1, v2) = (len(10), len(20));
    let expectations = [
        (CompatibilityMode::Forward, true),
        (CompatibilityMode::ForwardTransitive, false),
        (CompatibilityMode::Backward, false),
        (CompatibilityMode::FullTransitive, false),
    ];
    for (mode, want) in expectations {
        let report = check_compatibility(mode, &new.to_string(), &previous(&[&v1, &v2])).unwrap();
        assert_eq!(report.compatible, want, "{}: {:?}", mode_name(mode), report.messages);
    }
    let report = check_compatibility(CompatibilityMode::ForwardTransitive, &new.to_string(), &previous(&[&v1, &v2])).unwrap();
    assert_eq!(report.messages, vec!["#: maxLength loosened from 10 to 15 (forward, version 1)".to_string()]);

    // Widening step by step: each step is backward compatible, and so is the whole chain.
    let (a, b, c) = (json!({"type": "integer"}), json!({"type": "number"}), json!({"type": ["number", "string"]}));
    let report = check_compatibility(CompatibilityMode::BackwardTransitive, &c.to_string(), &previous(&[&a, &b])).unwrap();
    assert!(report.compatible, "{:?}", report.messages);
    let report = check_compatibility(CompatibilityMode::FullTransitive, &c.to_string(), &previous(&[&a, &b])).unwrap();
    assert_eq!(report.messages.len(), 2, "{:?}", report.messages);
}

#[test]
fn the_first_version_is_always_compatible_and_bad_new_schemas_are_errors() {
    for mode in MODES {
        assert!(check_compatibility(mode, r#"{"type": "string"}"#, &[]).unwrap().compatible);
    }
    let err = check_compatibility(CompatibilityMode::Backward, "{oops", &[]).unwrap_err();
    assert_eq!(err.kind(), onex_core::ErrorKind::Decode);
    let err = check_compatibility(CompatibilityMode::Backward, r#"{"minLength": "three"}"#, &[]).unwrap_err();
    assert_eq!(err.kind(), onex_core::ErrorKind::Rejected);
}

#[test]
fn undecidable_references_are_incompatible_with_a_reason() {
    let old = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let new = json!({"type": "object", "properties": {"a": {"$ref": "https://example.invalid/s.json"}}});
    // The remote reference cannot be compiled, so registration would fail first; the checker on
    // its own still answers "cannot decide" instead of guessing.
    let reasons = onex_schema::compat::incompatibilities(&new, &old, onex_schema::compat::Direction::Backward);
    assert!(reasons.iter().any(|r| r.starts_with("#/properties/a: cannot decide: `$ref`")), "{reasons:?}");
}

// ---- documentation -------------------------------------------------------------------------

const BEGIN: &str = "<!-- BEGIN GENERATED TABLE (crates/onex-schema/tests/compat_table) -->";
const END: &str = "<!-- END GENERATED TABLE -->";

fn verdict(ok: bool) -> &'static str {
    if ok {
        "compatible"
    } else {
        "**incompatible**"
    }
}

fn render_table() -> String {
    let mut out = String::new();
    out.push_str(BEGIN);
    out.push_str("\n\n| # | change | BACKWARD | FORWARD | FULL | reason reported (first) |\n|---|---|---|---|---|---|\n");
    for (i, case) in cases().iter().enumerate() {
        let full = check_compatibility(CompatibilityMode::Full, &case.new.to_string(), &previous(&[&case.old])).unwrap();
        let reason = full.messages.first().map(|m| format!("`` {} ``", m.replace('|', "\\|"))).unwrap_or_else(|| "—".to_string());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            case.change,
            verdict(case.backward),
            verdict(case.forward),
            verdict(case.backward && case.forward),
            reason
        ));
    }
    out.push_str("\nThe schemas of each row (old → new):\n\n");
    for (i, case) in cases().iter().enumerate() {
        out.push_str(&format!("{}. {}: `{}` → `{}`\n", i + 1, case.change, case.old, case.new));
    }
    out.push('\n');
    out.push_str(END);
    out
}

#[test]
fn docs_match_the_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema-compatibility.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let table = render_table();
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{} has no generated table between {BEGIN} and {END}", path.display());
    };
    let current = &doc[start..end + END.len()];
    if current != table {
        if std::env::var_os("ONEX_BLESS").is_some() {
            let updated = format!("{}{}{}", &doc[..start], table, &doc[end + END.len()..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "{} is out of date with the compatibility table; regenerate it with \
                 `ONEX_BLESS=1 cargo test -p onex-schema --test compat_table`",
                path.display()
            );
        }
    }
}
