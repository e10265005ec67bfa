//! Logs go to journald when it is there (a systemd host), to stderr otherwise.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// `RUST_LOG` overrides the default level (info).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let journald = std::path::Path::new(JOURNALD_SOCKET)
        .exists()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
