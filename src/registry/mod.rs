//! Talking to a registry: HTTP transport, authentication, and the requests of the distribution
//! API that dockersave makes, pulling (from the registry or its mirrors) and pushing.

pub mod auth;
pub mod certs;
pub mod client;
pub mod credentials;
pub mod http;
pub mod mirrors;
pub mod proxy;
#[cfg(feature = "push")]
pub mod upload;

pub use client::Registry;
