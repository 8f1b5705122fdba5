//! The shared registry suite: every function runs against every backend (see `main.rs`).

use onex_core::{CompatibilityMode, Error, ErrorKind, SchemaRegistry, SchemaType, VersionSpec};
use serde_json::json;

use crate::support::{code, expect_kind};

const QTY_NUMBER: &str = r#"{"type": "object", "properties": {"qty": {"type": "number"}}, "required": ["qty"]}"#;
const QTY_INTEGER: &str = r#"{"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}"#;

fn max_len(n: u32) -> String {
    json!({"type": "string", "maxLength": n}).to_string()
}

pub(crate) async fn register_get_and_list(r: &dyn SchemaRegistry) {
    let info = r.register("orders-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    assert_eq!((info.subject.as_str(), info.version, info.schema_type), ("orders-value", 1, SchemaType::Json));
    assert!(info.id > 0);
    assert_eq!(r.get("orders-value", VersionSpec::Latest).await.unwrap(), info);
    assert_eq!(r.get("orders-value", VersionSpec::Number(1)).await.unwrap(), info);
    assert_eq!(r.versions("orders-value").await.unwrap(), vec![1]);
    assert_eq!(r.subjects().await.unwrap(), vec!["orders-value".to_string()]);
    let by_id = r.get_by_id(info.id).await.unwrap();
    assert_eq!((by_id.subject.as_str(), by_id.version, by_id.id), ("orders-value", 1, info.id));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&by_id.schema).unwrap(),
        serde_json::from_str::<serde_json::Value>(QTY_NUMBER).unwrap()
    );
}

pub(crate) async fn identical_schema_returns_existing_id_and_version(r: &dyn SchemaRegistry) {
    let first = r.register("s-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    let reordered = r#"{ "required": ["qty"], "properties": { "qty": { "type": "number" } }, "type": "object" }"#;
    let again = r.register("s-value", reordered, SchemaType::Json).await.unwrap();
    assert_eq!((again.id, again.version), (first.id, first.version));
    assert_eq!(r.versions("s-value").await.unwrap(), vec![1]);
    // Identical to an earlier (not latest) version: still that version, nothing new.
    r.set_compatibility(Some("s-value"), CompatibilityMode::None).await.unwrap();
    let second = r.register("s-value", QTY_INTEGER, SchemaType::Json).await.unwrap();
    assert_eq!(second.version, 2);
    let back = r.register("s-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    assert_eq!((back.id, back.version), (first.id, 1));
    assert_eq!(r.versions("s-value").await.unwrap(), vec![1, 2]);
}

pub(crate) async fn same_schema_under_two_subjects_has_one_id(r: &dyn SchemaRegistry) {
    let a = r.register("a-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    let b = r.register("b-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!((a.version, b.version), (1, 1));
    let c = r.register("c-value", QTY_INTEGER, SchemaType::Json).await.unwrap();
    assert_ne!(c.id, a.id);
    assert_eq!(r.subjects().await.unwrap(), vec!["a-value", "b-value", "c-value"]);
}

pub(crate) async fn incompatible_schema_is_rejected_with_reasons_and_nothing_registered(r: &dyn SchemaRegistry) {
    let v1 = r.register("qty-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    let err = expect_kind(r.register("qty-value", QTY_INTEGER, SchemaType::Json).await, ErrorKind::Rejected);
    let text = err.to_string();
    assert!(text.contains("#/properties/qty: type narrowed from number to integer (backward, version 1)"), "{text}");
    assert!(text.contains("BACKWARD"), "{text}");
    assert_eq!(code(&err), Some(409));
    assert_eq!(r.versions("qty-value").await.unwrap(), vec![1]);
    assert_eq!(r.get("qty-value", VersionSpec::Latest).await.unwrap(), v1);
    // A compatible change is the next version with a new id.
    let widened = r#"{"type": "object", "properties": {"qty": {"type": ["number", "string"]}}, "required": ["qty"]}"#;
    let v2 = r.register("qty-value", widened, SchemaType::Json).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.id, v1.id);
}

pub(crate) async fn check_compatibility_reports_without_registering(r: &dyn SchemaRegistry) {
    r.register("c-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    for version in [None, Some(VersionSpec::Latest), Some(VersionSpec::Number(1))] {
        let report = r.check_compatibility("c-value", QTY_INTEGER, version).await.unwrap();
        assert!(!report.compatible, "{version:?}");
        assert_eq!(report.messages, vec!["#/properties/qty: type narrowed from number to integer (backward, version 1)"]);
        assert!(r.check_compatibility("c-value", QTY_NUMBER, version).await.unwrap().compatible);
    }
    assert_eq!(r.versions("c-value").await.unwrap(), vec![1]);
    let err = expect_kind(r.check_compatibility("c-value", QTY_NUMBER, Some(VersionSpec::Number(7))).await, ErrorKind::NotFound);
    assert_eq!(code(&err), Some(40402));
    expect_kind(r.check_compatibility("c-value", "{nope", None).await, ErrorKind::Decode);
}

pub(crate) async fn transitive_mode_checks_every_live_version(r: &dyn SchemaRegistry) {
    r.set_compatibility(Some("t-value"), CompatibilityMode::None).await.unwrap();
    r.register("t-value", &max_len(20), SchemaType::Json).await.unwrap();
    r.register("t-value", &max_len(10), SchemaType::Json).await.unwrap();
    r.set_compatibility(Some("t-value"), CompatibilityMode::BackwardTransitive).await.unwrap();
    let err = expect_kind(r.register("t-value", &max_len(15), SchemaType::Json).await, ErrorKind::Rejected);
    assert!(err.to_string().contains("#: maxLength tightened from 20 to 15 (backward, version 1)"), "{err}");
    r.set_compatibility(Some("t-value"), CompatibilityMode::Backward).await.unwrap();
    assert_eq!(r.register("t-value", &max_len(15), SchemaType::Json).await.unwrap().version, 3);
}

pub(crate) async fn compatibility_config_global_and_per_subject(r: &dyn SchemaRegistry) {
    assert_eq!(r.get_compatibility(None).await.unwrap(), CompatibilityMode::Backward);
    assert_eq!(r.get_compatibility(Some("x-value")).await.unwrap(), CompatibilityMode::Backward);
    r.set_compatibility(None, CompatibilityMode::Full).await.unwrap();
    assert_eq!(r.get_compatibility(None).await.unwrap(), CompatibilityMode::Full);
    assert_eq!(r.get_compatibility(Some("x-value")).await.unwrap(), CompatibilityMode::Full);
    r.set_compatibility(Some("x-value"), CompatibilityMode::None).await.unwrap();
    assert_eq!(r.get_compatibility(Some("x-value")).await.unwrap(), CompatibilityMode::None);
    assert_eq!(r.get_compatibility(None).await.unwrap(), CompatibilityMode::Full);
    // FULL (global) refuses a backward-only change; NONE (subject) lets anything through.
    r.register("y-value", &max_len(5), SchemaType::Json).await.unwrap();
    let err = expect_kind(r.register("y-value", &max_len(10), SchemaType::Json).await, ErrorKind::Rejected);
    assert!(err.to_string().contains("(forward, version 1)") && err.to_string().contains("FULL"), "{err}");
    r.register("x-value", &max_len(5), SchemaType::Json).await.unwrap();
    assert_eq!(r.register("x-value", QTY_NUMBER, SchemaType::Json).await.unwrap().version, 2);
}

pub(crate) async fn soft_then_permanent_subject_delete(r: &dyn SchemaRegistry) {
    r.set_compatibility(Some("d-value"), CompatibilityMode::None).await.unwrap();
    let v1 = r.register("d-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    r.register("d-value", QTY_INTEGER, SchemaType::Json).await.unwrap();
    let err = expect_kind(r.delete_subject("d-value", true).await, ErrorKind::Rejected);
    assert!(err.to_string().contains("soft-delete it first"), "{err}");
    assert_eq!(code(&err), Some(40405));
    assert_eq!(r.versions("d-value").await.unwrap(), vec![1, 2]);

    assert_eq!(r.delete_subject("d-value", false).await.unwrap(), vec![1, 2]);
    assert!(r.subjects().await.unwrap().is_empty());
    assert_eq!(code(&expect_kind(r.get("d-value", VersionSpec::Latest).await, ErrorKind::NotFound)), Some(40401));
    expect_kind(r.versions("d-value").await, ErrorKind::NotFound);
    assert_eq!(code(&expect_kind(r.delete_subject("d-value", false).await, ErrorKind::NotFound)), Some(40404));
    // Soft-deleted versions still resolve by id.
    assert_eq!(r.get_by_id(v1.id).await.unwrap().id, v1.id);

    assert_eq!(r.delete_subject("d-value", true).await.unwrap(), vec![1, 2]);
    assert_eq!(code(&expect_kind(r.delete_subject("d-value", true).await, ErrorKind::NotFound)), Some(40401));
    assert_eq!(code(&expect_kind(r.get_by_id(v1.id).await, ErrorKind::NotFound)), Some(40403));
    // The subject starts over; an identical schema keeps its global id.
    let again = r.register("d-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    assert_eq!((again.version, again.id), (1, v1.id));
}

pub(crate) async fn soft_then_permanent_version_delete(r: &dyn SchemaRegistry) {
    r.set_compatibility(Some("v-value"), CompatibilityMode::None).await.unwrap();
    r.register("v-value", &max_len(5), SchemaType::Json).await.unwrap();
    r.register("v-value", &max_len(10), SchemaType::Json).await.unwrap();
    assert_eq!(code(&expect_kind(r.delete_version("v-value", 1, true).await, ErrorKind::Rejected)), Some(40407));
    assert_eq!(r.delete_version("v-value", 2, false).await.unwrap(), 2);
    assert_eq!(r.versions("v-value").await.unwrap(), vec![1]);
    assert_eq!(r.get("v-value", VersionSpec::Latest).await.unwrap().version, 1);
    assert_eq!(code(&expect_kind(r.get("v-value", VersionSpec::Number(2)).await, ErrorKind::NotFound)), Some(40402));
    assert_eq!(code(&expect_kind(r.delete_version("v-value", 2, false).await, ErrorKind::NotFound)), Some(40406));
    assert_eq!(code(&expect_kind(r.delete_version("v-value", 9, false).await, ErrorKind::NotFound)), Some(40402));
    assert_eq!(r.delete_version("v-value", 2, true).await.unwrap(), 2);
    // A soft-deleted version no longer takes part in compatibility checks.
    r.set_compatibility(Some("v-value"), CompatibilityMode::Backward).await.unwrap();
    // After the permanent delete of version 2 the subject's newest row is 1, so 2 is free again.
    assert_eq!(r.register("v-value", &max_len(10), SchemaType::Json).await.unwrap().version, 2);
    r.delete_version("v-value", 2, false).await.unwrap();
    // Checked against version 1 (<= 5) only: the soft-deleted version 2 (<= 10) would refuse it.
    let v3 = r.register("v-value", &max_len(7), SchemaType::Json).await.unwrap();
    assert_eq!(v3.version, 3, "a soft-deleted version number is not reused");
}

pub(crate) async fn bad_input_is_explained(r: &dyn SchemaRegistry) {
    let err = expect_kind(r.register("bad-value", "{\"type\": ", SchemaType::Json).await, ErrorKind::Decode);
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let err = expect_kind(r.register("bad-value", r#"{"type": "strnig"}"#, SchemaType::Json).await, ErrorKind::Rejected);
    assert!(err.to_string().contains("invalid JSON Schema"), "{err}");
    for t in [SchemaType::Avro, SchemaType::Protobuf] {
        let err = expect_kind(r.register("bad-value", r#"{"type": "record", "name": "x", "fields": []}"#, t).await, ErrorKind::Rejected);
        assert!(err.to_string().contains("unsupported schema type"), "{err}");
    }
    assert!(r.subjects().await.unwrap().is_empty(), "nothing was registered");
    assert_eq!(code(&expect_kind(r.get("nope-value", VersionSpec::Latest).await, ErrorKind::NotFound)), Some(40401));
    assert_eq!(code(&expect_kind(r.versions("nope-value").await, ErrorKind::NotFound)), Some(40401));
    assert_eq!(code(&expect_kind(r.get_by_id(424_242).await, ErrorKind::NotFound)), Some(40403));
    r.register("ok-value", QTY_NUMBER, SchemaType::Json).await.unwrap();
    assert_eq!(code(&expect_kind(r.get("ok-value", VersionSpec::Number(2)).await, ErrorKind::NotFound)), Some(40402));
    assert_eq!(code(&expect_kind(r.delete_subject("nope-value", false).await, ErrorKind::NotFound)), Some(40401));
}

pub(crate) async fn validate_reports_every_violation(r: &dyn SchemaRegistry) {
    let schema = json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}, "email": {"type": "string", "maxLength": 8}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["id", "email"],
        "additionalProperties": false
    });
    r.register("users-value", &schema.to_string(), SchemaType::Json).await.unwrap();
    r.validate("users-value", &json!({"id": 1, "email": "a@b.c", "tags": ["x"]})).await.unwrap();
    let err = expect_kind(
        r.validate("users-value", &json!({"id": "one", "email": "far-too-long@x", "tags": ["ok", 2], "extra": 1})).await,
        ErrorKind::Schema,
    );
    let Error::Schema { subject, violations } = err else { unreachable!() };
    assert_eq!(subject.as_deref(), Some("users-value"));
    let mut got: Vec<(String, String)> = violations.iter().map(|v| (v.instance_path.clone(), v.keyword.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("".to_string(), "additionalProperties".to_string()),
            ("/email".into(), "maxLength".into()),
            ("/id".into(), "type".into()),
            ("/tags/1".into(), "type".into()),
        ]
    );
    expect_kind(r.validate("missing-value", &json!({})).await, ErrorKind::NotFound);
}
