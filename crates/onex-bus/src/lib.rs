//! # onex-bus — the onex event bus
//!
//! One consumer engine implements the delivery rules of DESIGN §3 for every backend;
//! backends are transports ([`transport::Transport`]).

pub mod transport;
