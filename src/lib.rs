pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod edge;
pub mod origin;
pub mod range;
pub mod s3store;
