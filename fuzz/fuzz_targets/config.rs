//! The config file: any text is either a valid config or an error that
//! names the file; never a panic.
#![no_main]

use keyfront::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Config::parse(text, std::path::Path::new("/nonexistent/fuzz/keyfront.yaml")) {
        assert!(error.to_string().contains("keyfront.yaml"), "{error}");
    }
});
