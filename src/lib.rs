pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod edge;
pub mod emulator;
pub mod fleet;
pub mod functions;
pub mod metrics;
pub mod origin;
pub mod plain_http;
pub mod private_fs;
pub mod range;
pub mod request;
pub mod routing;
pub mod s3store;
pub mod server;

/// mimalloc rather than glibc's malloc: a cache hit allocates a few dozen
/// small buffers (headers, keys, futures), and glibc's allocator took 16% of
/// the CPU on the hot-hit benchmark (bench/RESULTS.md). Declared in the
/// library so the binary, the tests and the benchmarks' pingora ceiling all
/// run on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
