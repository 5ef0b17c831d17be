pub mod aggregate;
pub mod commands;
pub mod error;
pub mod events;
pub mod services;
pub mod upcasters;
pub mod values;
