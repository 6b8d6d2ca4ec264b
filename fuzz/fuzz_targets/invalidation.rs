//! The invalidation request body: what is accepted is 1 to 3,000 paths, each
//! starting with `/`, at most 4,096 bytes, with `*` only as its last byte.
#![no_main]

use keyfront::admin::parse_invalidation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(paths) = parse_invalidation(data) {
        assert!(!paths.is_empty() && paths.len() <= 3000);
        for path in paths {
            assert!(path.starts_with('/') && path.len() <= 4096, "{path:?}");
            assert!(!path.trim_end_matches('*').contains('*') && !path.ends_with("**"), "{path:?}");
        }
    }
});
