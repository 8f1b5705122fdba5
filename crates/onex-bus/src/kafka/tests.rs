//! Unit tests that need no broker.

use onex_core::ErrorKind;

use super::*;

#[tokio::test]
async fn unreachable_broker_fails_clearly_and_quickly() {
    // Port 1 on localhost: nothing listens, the connection is refused at once.
    let err = KafkaTransport::from_url_str("kafka://127.0.0.1:1?connect_timeout_ms=3000").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1") && text.contains("check the host and port"), "{text}");
}

#[tokio::test]
async fn unknown_setting_fails_before_connecting() {
    let err = KafkaTransport::from_url_str("kafka://127.0.0.1:1?no.such.setting=1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("\"no.such.setting\""), "{err}");
}
