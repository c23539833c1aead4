//! Deliver: the queue runner ([`runner`]) and the relay client
//! ([`client`], [`tls`]).
pub mod client;
pub mod error;
mod pace;
mod relay;
pub mod runner;
pub mod tls;
