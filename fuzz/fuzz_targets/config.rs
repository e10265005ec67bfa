//! The config parser on any text: it never panics, a config it takes is one whose every value
//! passed its checks, and one it refuses names a line inside the file.
#![no_main]

use std::path::Path;

use dockgate::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            // What was taken plans without a panic, and means the same written out again.
            let again = toml::to_string(&config).expect("a config serializes");
            let reparsed = Config::parse(&again, Path::new("again.toml"))
                .unwrap_or_else(|error| panic!("{again}\n{error}"));
            assert_eq!(reparsed, config);
        }
        Err(ConfigError::Invalid { line, .. }) => {
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "line {line}"
            );
        }
        Err(ConfigError::Read { .. }) => unreachable!("nothing is read"),
    }
});
