//! librdkafka errors → [`onex_core::Error`] kinds, with messages that say what to do.

use onex_core::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::config::{is_secret_key, OWN_OPTIONS};

/// Maps a librdkafka error code met while doing `what` (e.g. `publishing to "orders"`).
pub(crate) fn from_code(code: RDKafkaErrorCode, what: &str, brokers: &str) -> Error {
    use RDKafkaErrorCode as C;
    let err = match code {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => {
            return Error::too_large(format!("{what}: the broker refused the record as too large ({code}); raise max_message_bytes / the topic's max.message.bytes or send smaller records"), 0, 0)
        }
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => {
            Error::not_found(format!("{what}: topic or partition does not exist ({code}); create it first (onex topics create) or turn auto_create_topics on"))
        }
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => {
            return Error::timeout(format!("{what}: no answer from the Kafka brokers {brokers} in time ({code}); check that they are up and reachable"), std::time::Duration::ZERO)
        }
        C::Resolve => Error::connection(format!("{what}: cannot resolve a Kafka broker host in {brokers} ({code}); check the host names in the URL")),
        C::AllBrokersDown | C::BrokerTransportFailure | C::NetworkException => {
            Error::connection(format!("{what}: cannot reach the Kafka brokers {brokers} ({code}); check host, port and that the broker runs"))
        }
        C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::BrokerNotAvailable
        | C::ReplicaNotAvailable
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::KafkaStorageError
        | C::NotController
        | C::RebalanceInProgress
        | C::WaitingForCoordinator
        | C::ThrottlingQuotaExceeded => Error::unavailable(format!("{what}: the Kafka cluster cannot serve the request now ({code}); it is retried, or retry later")),
        C::Authentication | C::SaslAuthenticationFailed | C::UnsupportedSASLMechanism | C::IllegalSASLState | C::SSL => {
            Error::authentication(format!("{what}: the brokers refused our credentials or TLS handshake ({code}); check security.protocol, sasl.* and ssl.* settings"))
        }
        C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed => {
            Error::authentication(format!("{what}: not authorized ({code}); grant the principal access (ACLs) or use other credentials"))
        }
        C::TopicAlreadyExists => Error::rejected(format!("{what}: the topic already exists")).with("exists", "true"),
        C::InvalidConfig | C::InvalidPartitions | C::InvalidReplicationFactor | C::InvalidReplicaAssignment | C::InvalidTopic | C::PolicyViolation => {
            Error::config(format!("{what}: the broker refused the settings ({code}); fix the partition count, replication factor or topic config"))
        }
        C::UnsupportedVersion | C::UnsupportedFeature | C::NotImplemented | C::UnsupportedForMessageFormat | C::UnsupportedCompressionType => {
            Error::rejected(format!("{what}: the broker does not support this request ({code})"))
        }
        C::QueueFull => Error::rate_limited(format!("{what}: the local producer queue is full ({code}); slow down or raise queue.buffering.max.messages"), None),
        C::IllegalGeneration | C::UnknownMemberId | C::AssignmentLost | C::FencedInstanceId | C::StaleMemberEpoch => {
            Error::unavailable(format!("{what}: this consumer is no longer in the group's current generation ({code}); the group rebalances and the records are redelivered"))
        }
        C::PurgeQueue | C::PurgeInflight => Error::unavailable(format!(
            "{what}: the producer was closed or replaced before the broker acknowledged the record ({code}); it was not acknowledged: publish it again"
        )),
        C::Fatal | C::ProducerFenced | C::InvalidProducerEpoch | C::OutOfOrderSequenceNumber | C::UnknownProducerId => Error::unavailable(format!(
            "{what}: the idempotent producer lost its broker session ({code}), typically after delivery timeouts; the record was not acknowledged: publish it again (the transport starts a new producer)"
        )),
        _ => Error::protocol(format!("{what}: Kafka error {code}")),
    };
    err.with("kafka_code", format!("{code:?}")).with("brokers", brokers)
}

/// Maps any [`KafkaError`]. Configuration errors are rebuilt from their parts so a secret
/// value never reaches the message.
pub(crate) fn from_kafka(e: KafkaError, what: &str, brokers: &str) -> Error {
    match e {
        KafkaError::ClientConfig(_, desc, key, _value) => config_error(&desc, &key),
        KafkaError::ClientCreation(msg) => Error::config(format!("{what}: librdkafka refused the client settings: {msg}")),
        KafkaError::Canceled => Error::shutdown(format!("{what}: the Kafka client was closed before the operation finished")),
        other => match other.rdkafka_error_code() {
            Some(code) => from_code(code, what, brokers),
            None => Error::protocol(format!("{what}: {other}")).with("brokers", brokers),
        },
    }
}

/// A clear error for a refused client setting.
pub(crate) fn config_error(desc: &str, key: &str) -> Error {
    // librdkafka's description may quote the value; drop it for secret keys.
    let desc = if is_secret_key(key) { "invalid value".to_string() } else { desc.to_string() };
    if desc.contains("No such configuration property") {
        Error::config(format!(
            "unknown Kafka client setting {key:?}: librdkafka has no such property; check the spelling against librdkafka's CONFIGURATION.md (onex's own options: {})",
            OWN_OPTIONS.join(", ")
        ))
        .with("setting", key)
    } else {
        Error::config(format!("Kafka client setting {key:?} was refused by librdkafka: {desc}")).with("setting", key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onex_core::ErrorKind;

    #[test]
    fn codes_map_to_kinds() {
        let b = "h:1";
        assert_eq!(from_code(RDKafkaErrorCode::MessageSizeTooLarge, "x", b).kind(), ErrorKind::TooLarge);
        assert_eq!(from_code(RDKafkaErrorCode::UnknownTopicOrPartition, "x", b).kind(), ErrorKind::NotFound);
        assert_eq!(from_code(RDKafkaErrorCode::MessageTimedOut, "x", b).kind(), ErrorKind::Timeout);
        assert_eq!(from_code(RDKafkaErrorCode::AllBrokersDown, "x", b).kind(), ErrorKind::Connection);
        assert_eq!(from_code(RDKafkaErrorCode::Resolve, "x", b).kind(), ErrorKind::Connection);
        assert_eq!(from_code(RDKafkaErrorCode::NotLeaderForPartition, "x", b).kind(), ErrorKind::Unavailable);
        assert_eq!(from_code(RDKafkaErrorCode::SaslAuthenticationFailed, "x", b).kind(), ErrorKind::Authentication);
        assert_eq!(from_code(RDKafkaErrorCode::InvalidConfig, "x", b).kind(), ErrorKind::Config);
        assert_eq!(from_code(RDKafkaErrorCode::PurgeInflight, "x", b).kind(), ErrorKind::Unavailable, "a purged record is published again");
        let exists = from_code(RDKafkaErrorCode::TopicAlreadyExists, "x", b);
        assert_eq!(exists.context().unwrap()["exists"], "true");
    }

    #[test]
    fn secret_values_never_reach_config_errors() {
        let e = from_kafka(
            KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                "Invalid value \"hunter2\"".into(),
                "sasl.password".into(),
                "hunter2".into(),
            ),
            "x",
            "h:1",
        );
        assert!(!e.report().contains("hunter2"), "{}", e.report());
        let e = config_error("No such configuration property: \"lingr.ms\"", "lingr.ms");
        assert!(e.to_string().contains("unknown Kafka client setting \"lingr.ms\""), "{e}");
    }
}
