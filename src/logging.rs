//! Logs go to stderr: as plain lines with a time in a terminal or a file, and as journal lines
//! (a syslog priority first, no time) when systemd connects stderr to the journal.
//!
//! Not tracing-journald: it stores an event's fields as separate journal fields and only the
//! bare message as MESSAGE, so `journalctl -u dockgate` showed "reconciled" and "cannot serve
//! the D-Bus API" without the trigger, the rule count or the error (seen under systemd 252 in
//! tests/sandbox_systemd.rs). A line with its fields is what an admin reads there; the priority
//! prefix (sd-daemon(3)) keeps `journalctl -p warning` working.

use std::fmt;

use tracing::{Event, Level, Subscriber};

use crate::refused::Hit;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `RUST_LOG` overrides the default level (info).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if stderr_is_the_journal() {
        layer.with_ansi(false).event_format(JournalLine).init();
    } else {
        layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// The journal line for a source refused at a port for the first time. Under systemd it goes
/// to the journal directly, with the port and the source as fields of their own
/// (`journalctl -u dockgate DOCKGATE_PORT=8080`); elsewhere it is a log line like the others.
pub fn refused(hit: &Hit) {
    let verb = if hit.would_be {
        "would refuse (audit)"
    } else {
        "refused"
    };
    let message = format!(
        "{verb} {} at {}/{}: the first connection from this source to this port",
        hit.source, hit.port, hit.protocol
    );
    if stderr_is_the_journal() {
        let port = hit.port.to_string();
        let source = hit.source.to_string();
        let fields = [
            ("MESSAGE", message.as_str()),
            // notice
            ("PRIORITY", "5"),
            ("SYSLOG_IDENTIFIER", "dockgated"),
            ("DOCKGATE_PORT", port.as_str()),
            ("DOCKGATE_PROTOCOL", hit.protocol.as_str()),
            ("DOCKGATE_SOURCE", source.as_str()),
            ("DOCKGATE_AUDIT", if hit.would_be { "1" } else { "0" }),
        ];
        match journal_send(&fields) {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "cannot write to the journal's socket"),
        }
    }
    tracing::info!(port = hit.port, protocol = %hit.protocol, source = %hit.source, "{message}");
}

/// journald's native protocol (systemd.journal-fields(7), "Native Journal Protocol"): one
/// datagram of `KEY=value` lines. By hand: for a handful of fields without newlines this is a
/// line of code per field, where libsystemd's crate would bring its own nix and crypto crates.
fn journal_send(fields: &[(&str, &str)]) -> std::io::Result<()> {
    let mut datagram = String::new();
    for (key, value) in fields {
        // Values are ours: a port, an address, words; none has a newline.
        debug_assert!(!value.contains('\n'));
        datagram += &format!("{key}={value}\n");
    }
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.send_to(datagram.as_bytes(), "/run/systemd/journal/socket")?;
    Ok(())
}

/// systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connects stdout/stderr to
/// (systemd.exec(5)); stderr is the journal when it is still that stream.
fn stderr_is_the_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// `<6>reconciled trigger="start" rules=19`: the priority for the journal, then the message and
/// the fields as the plain format writes them. The journal adds time, unit and pid itself.
pub struct JournalLine;

impl<S, N> FormatEvent<S, N> for JournalLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What the subscriber writes, for reading back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_the_message_and_every_field() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(JournalLine)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let error = "firewalld is not running";
            tracing::error!(%error, "cannot apply");
            tracing::warn!(trigger = "start", retry_in_ms = 500u64, "reconcile failed");
            tracing::info!(rules = 19, "reconciled");
            tracing::debug!("step");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "<3>cannot apply error=firewalld is not running\n\
             <4>reconcile failed trigger=\"start\" retry_in_ms=500\n\
             <6>reconciled rules=19\n\
             <7>step\n"
        );
    }
}
