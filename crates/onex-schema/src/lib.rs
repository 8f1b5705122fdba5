//! # onex-schema — the onex schema registry
//!
//! Work in progress: validation and compatibility.

pub mod canonical;
pub mod compat;
pub mod validation;
