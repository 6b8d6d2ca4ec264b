pub mod auth;
pub mod cli;
