//! The schema registry suite, run against the embedded registry and against the REST client
//! talking to `rest_api::router` (real HTTP on 127.0.0.1, real sqlite storage).
//!
//! Run: `cargo test -p onex-schema --all-features --test registry`.

mod embedded_only;
mod rest_only;
mod suite;
mod support;
mod validator;

macro_rules! shared_suite {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = crate::support::embedded().await;
                    crate::suite::$name(&*backend.registry).await;
                }
            )*
        }
        mod rest {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = crate::support::rest().await;
                    crate::suite::$name(&*backend.registry).await;
                }
            )*
        }
    };
}

shared_suite!(
    register_get_and_list,
    identical_schema_returns_existing_id_and_version,
    same_schema_under_two_subjects_has_one_id,
    incompatible_schema_is_rejected_with_reasons_and_nothing_registered,
    check_compatibility_reports_without_registering,
    transitive_mode_checks_every_live_version,
    compatibility_config_global_and_per_subject,
    soft_then_permanent_subject_delete,
    soft_then_permanent_version_delete,
    bad_input_is_explained,
    validate_reports_every_violation,
);
