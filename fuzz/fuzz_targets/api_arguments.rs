//! The checks of Expose's arguments on anything a caller can send: they never panic, a refused
//! request names its field, and an accepted one is canonical (checked again as dockgate writes
//! it, it is the same) and reaches the rules as arguments without blanks or control characters,
//! so nothing a caller sends reaches firewalld unparsed.
#![no_main]

use dockgate::config::Config;
use dockgate::exposures::{Request, Stored};
use dockgate::plan::{self, DockerView, Inputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    |input: (String, Vec<String>, u64, Option<String>, Option<String>)| {
        let (port, sources, ttl_seconds, container, comment) = input;
        let request = Request {
            port: &port,
            sources: &sources,
            ttl_seconds,
            container: container.as_deref(),
            comment: comment.as_deref(),
        };
        let exposure = match request.check() {
            Ok(exposure) => exposure,
            Err(error) => {
                assert!(!error.field.is_empty());
                return;
            }
        };
        let canonical_sources: Vec<String> =
            exposure.from.iter().map(ToString::to_string).collect();
        let again = Request {
            port: &exposure.port.to_string(),
            sources: &canonical_sources,
            ttl_seconds,
            container: exposure.container.as_deref(),
            comment: exposure.comment.as_deref(),
        }
        .check()
        .expect("what was taken is taken again");
        assert_eq!(again, exposure);

        let config = Config {
            default: dockgate::config::DefaultPolicy::Deny,
            ..Config::default()
        };
        let (stored, _) = Stored::default().with(exposure, ttl_seconds, 1000, 1_800_000_000);
        let desired = plan::desired(&Inputs {
            config: &config,
            runtime: stored.all(),
            docker: &DockerView::default(),
            docker_up: true,
            rebuilding: false,
        });
        for rule in &desired.plan.rules {
            for arg in &rule.args {
                let is_comment_text = arg.starts_with("dockgate");
                assert!(
                    is_comment_text || !arg.chars().any(|c| c.is_whitespace() || c.is_control()),
                    "{rule}"
                );
            }
        }
    }
);
