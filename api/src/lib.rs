//! The users service: HTTP API, authentication, CLI and the wiring of domain and projections.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dto;
pub mod error;
pub mod idempotency;
pub mod limits;
pub mod log_writer;
pub mod observability;
pub mod openapi;
pub mod pagination;
pub mod policy;
pub mod request_id;
pub mod routes;
pub mod state;

pub use app::{app, Application, Limits, Settings};
