//! Talking to a registry: HTTP transport, authentication, and the requests of the distribution
//! API that dockersave makes.

pub mod auth;
pub mod client;
pub mod http;

pub use client::Registry;
