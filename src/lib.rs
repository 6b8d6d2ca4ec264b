pub mod auth;
pub mod cli;
pub mod config;
pub mod edge;
pub mod origin;
pub mod s3store;
