use bytes::Bytes;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_text() -> impl Strategy<Value = String> {
    // Any printable text, including non-ASCII.
    "\\PC{0,24}"
}

fn arb_user_header_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9-]{1,12}"
}

prop_compose! {
    fn arb_envelope()(
        id in arb_uuid(),
        event_type in "[a-z0-9._-]{1,40}",
        source in arb_text(),
        secs in 0i64..4_102_444_800,
        nanos in 0u32..1_000_000_000,
        correlation in arb_uuid(),
        causation in proptest::option::of(arb_uuid()),
        partition_key in proptest::option::of(arb_text()),
        schema_version in proptest::option::of(arb_text()),
        content_type in prop_oneof![Just("application/json".to_string()), Just("application/octet-stream".to_string()), "[a-z]+/[a-z+.-]+"],
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        headers in proptest::collection::btree_map(arb_user_header_name(), arb_text(), 0..4),
        tags in proptest::collection::btree_map(arb_text(), arb_text(), 0..4),
        traceparent in proptest::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]"),
        tracestate in proptest::option::of("[a-z]{1,8}=[a-z0-9]{1,8}"),
        retry_count in 0u32..100,
    ) -> Envelope {
        Envelope {
            envelope_id: id,
            event_type,
            source,
            timestamp: Utc.timestamp_opt(secs, nanos).unwrap(),
            correlation_id: correlation,
            causation_id: causation,
            partition_key,
            schema_version,
            content_type,
            payload: Bytes::from(payload),
            metadata: Metadata { headers, tags, traceparent, tracestate },
            retry_count,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_mode_round_trips_every_field(env in arb_envelope()) {
        let rec = encode_record(&env);
        let back = decode_record(&rec, "any-topic").unwrap();
        prop_assert_eq!(back, env);
    }

    #[test]
    fn encoded_len_is_the_encoded_records_byte_len(env in arb_envelope(), secs in -60_000_000_000i64..400_000_000_000, nanos in prop_oneof![Just(0u32), Just(5_000_000), Just(7_000), 0u32..1_000_000_000]) {
        prop_assert_eq!(encoded_len(&env), encode_record(&env).byte_len());
        let mut wide = env;
        wide.timestamp = Utc.timestamp_opt(secs, nanos).unwrap();
        prop_assert_eq!(encoded_len(&wide), encode_record(&wide).byte_len());
    }

    #[test]
    fn an_envelope_said_to_encode_losslessly_decodes_to_itself(
        env in arb_envelope(),
        event_type in prop_oneof![Just(String::new()), "[a-z.]{1,8}"],
        reserved in proptest::option::of(proptest::sample::select(h::RESERVED.to_vec())),
        secs in prop_oneof![Just(-70_000_000_000i64), Just(260_000_000_000i64), 0i64..4_102_444_800],
    ) {
        let mut env = env;
        env.event_type = event_type;
        if let Some(name) = reserved {
            env.metadata.headers.insert(name.to_string(), "x".into());
        }
        env.timestamp = Utc.timestamp_opt(secs, env.timestamp.timestamp_subsec_nanos()).unwrap();
        if encodes_losslessly(&env) {
            let back = decode_record(&encode_record(&env), "any-topic").unwrap();
            prop_assert_eq!(back, env);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        value in proptest::collection::vec(any::<u8>(), 0..200),
        headers in proptest::collection::vec((prop_oneof![
            Just(h::SPECVERSION.to_string()), Just(h::ID.to_string()), Just(h::TYPE.to_string()), Just(h::TIME.to_string()),
            Just(h::CONTENT_TYPE.to_string()), Just(h::CORRELATION_ID.to_string()), Just(h::RETRY_COUNT.to_string()),
            Just(h::TAGS.to_string()), "[a-z_-]{1,10}"
        ], proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
    ) {
        let mut hs = Headers::new();
        for (k, v) in headers {
            hs.push(k, Bytes::from(v));
        }
        let rec = Record { key: key.map(Bytes::from), value: Bytes::from(value), headers: hs };
        let _ = decode_record(&rec, "fuzz");
    }

    #[test]
    fn decoding_borrowed_pairs_agrees_with_decode_record(
        env in arb_envelope(),
        value in proptest::collection::vec(any::<u8>(), 0..60),
        headers in proptest::collection::vec((prop_oneof![
            Just(h::SPECVERSION.to_string()), Just(h::ID.to_string()), Just(h::TYPE.to_string()), Just(h::TIME.to_string()),
            Just(h::CORRELATION_ID.to_string()), Just(h::RETRY_COUNT.to_string()), "[a-z_-]{1,10}"
        ], prop_oneof![Just(b"1.0".to_vec()), Just(Uuid::nil().to_string().into_bytes()), proptest::collection::vec(any::<u8>(), 0..40)]), 0..8),
    ) {
        let rec = encode_record(&env);
        let pairs: Vec<(&str, &[u8])> = rec.headers.iter().map(|(k, v)| (k, &v[..])).collect();
        prop_assert_eq!(decode_binary_pairs(pairs.iter().copied(), rec.value.clone()).unwrap().unwrap(), env);

        let mut hs = Headers::new();
        for (k, v) in headers {
            hs.push(k, Bytes::from(v));
        }
        let rec = Record { key: None, value: Bytes::from(value), headers: hs };
        let pairs: Vec<(&str, &[u8])> = rec.headers.iter().map(|(k, v)| (k, &v[..])).collect();
        let binary = rec.headers.get(h::SPECVERSION).is_some() || rec.headers.get(h::ID).is_some();
        match decode_binary_pairs(pairs.iter().copied(), rec.value.clone()) {
            None => prop_assert!(!binary, "binary-mode headers must not be left to decode_record"),
            Some(Ok(mut from_pairs)) => {
                let full = decode_record(&rec, "fuzz").unwrap();
                if rec.headers.get(h::TIME).is_none() {
                    from_pairs.timestamp = full.timestamp; // both read the clock
                }
                prop_assert_eq!(from_pairs, full);
            }
            Some(Err(_)) => prop_assert!(decode_record(&rec, "fuzz").is_err()),
        }
    }

    #[test]
    fn structured_mode_with_arbitrary_json_never_panics(v in any::<Option<i64>>(), s in arb_text()) {
        let body = serde_json::json!({"specversion": "1.0", "id": s, "type": "t", "data": v, "retrycount": s});
        let mut hs = Headers::new();
        hs.push(h::CONTENT_TYPE, Bytes::from_static(STRUCTURED_CONTENT_TYPE.as_bytes()));
        let _ = decode_record(&Record { key: None, value: Bytes::from(body.to_string()), headers: hs }, "fuzz");
    }
}

#[test]
fn binary_mode_headers_are_exactly_the_documented_ones() {
    let parent = Envelope::new("a.b", &1).unwrap();
    let mut env = Envelope::new("orders.created.v1", &serde_json::json!({"id": 1})).unwrap().caused_by(&parent).with_partition_key("k1");
    env.metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let rec = encode_record(&env);
    let names: Vec<&str> = rec.headers.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        vec![
            "ce_specversion",
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_time",
            "content-type",
            "ce_correlationid",
            "ce_causationid",
            "ce_partitionkey",
            "traceparent"
        ]
    );
    assert_eq!(rec.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(rec.value, env.payload);
    assert_eq!(rec.headers.get_str("ce_specversion"), Some("1.0"));
}

#[test]
fn structured_mode_decodes_with_base64_data_and_extensions() {
    let body = serde_json::json!({
        "specversion": "1.0", "id": "not-a-uuid", "source": "s", "type": "t.v1",
        "data_base64": "AAEC", "datacontenttype": "application/octet-stream", "tenant": "acme", "retrycount": "2"
    });
    let mut hs = Headers::new();
    hs.push(h::CONTENT_TYPE, Bytes::from_static(b"application/cloudevents+json; charset=utf-8"));
    let env = decode_record(&Record { key: None, value: Bytes::from(body.to_string()), headers: hs }, "topic").unwrap();
    assert_eq!(env.payload.as_ref(), &[0u8, 1, 2]);
    assert_eq!(env.retry_count, 2);
    assert_eq!(env.metadata.headers.get("tenant").map(String::as_str), Some("acme"));
    // A non-UUID id maps to a stable UUID so dedup still works.
    let again = decode_record(&Record { key: None, value: Bytes::from(body.to_string()), headers: env_headers() }, "topic").unwrap();
    assert_eq!(env.envelope_id, again.envelope_id);
}

fn env_headers() -> Headers {
    let mut hs = Headers::new();
    hs.push(h::CONTENT_TYPE, Bytes::from_static(b"application/cloudevents+json"));
    hs
}

#[test]
fn plain_json_is_wrapped_and_garbage_is_a_decode_error() {
    let mut hs = Headers::new();
    hs.push("x-correlation-id", Bytes::from(Uuid::nil().to_string()));
    let env = decode_record(
        &Record { key: Some(Bytes::from_static(b"k")), value: Bytes::from_static(b"{\"a\":1}"), headers: hs },
        "legacy.topic",
    )
    .unwrap();
    assert_eq!(env.event_type, "legacy.topic");
    assert_eq!(env.correlation_id, Uuid::nil());
    assert_eq!(env.partition_key.as_deref(), Some("k"));
    let err = decode_record(&Record { key: None, value: Bytes::from_static(b"\xff\x00"), headers: Headers::new() }, "t").unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Decode);
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn binary_mode_errors_name_the_header() {
    let env = Envelope::new("t.v1", &1).unwrap();
    let mut rec = encode_record(&env);
    rec.headers.set(h::ID, Bytes::from_static(b"nope"));
    let err = decode_record(&rec, "t").unwrap_err().to_string();
    assert!(err.contains("ce_id"), "{err}");
    let mut rec = encode_record(&env);
    rec.headers.set(h::SPECVERSION, Bytes::from_static(b"0.3"));
    assert!(decode_record(&rec, "t").unwrap_err().to_string().contains("specversion"));
}
