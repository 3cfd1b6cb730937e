//! CodeCourier: launch AI coding agents into isolated sandboxes from Discord or the terminal.
//!
//! The core (`catalog`, `pipeline`, `store`) speaks only its own types; front ends (`cli`, later
//! `discord`) translate to and from them.

pub mod agent;
pub mod caches;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod discord;
pub mod gateway;
pub mod github;
pub mod ids;
pub mod model;
pub mod pipeline;
pub mod redact;
pub mod retention;
pub mod sandbox;
pub mod secret;
pub mod store;
