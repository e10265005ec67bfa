//! Reads the NFLOG group that dockgate's recording rules log to (`plan::Rules::record`), over
//! netlink, and turns each message into a [`Hit`].
//!
//! netlink-packet-netfilter (with netlink-sys for the socket), from the rust-netlink family:
//! pure Rust, maintained with the netlink crates much of the Rust networking world uses
//! (rtnetlink, netavark's), and the only crate that builds and parses nfnetlink_log's messages,
//! so no libnetfilter_log (C) and no hand-written netlink. Reading a group needs CAP_NET_ADMIN
//! in the daemon's network namespace (the unit grants exactly that, with AF_NETLINK).

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, Timeout, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket, protocols::NETLINK_NETFILTER};
use nix::errno::Errno;

use crate::refused::{Hit, parse_packet, parse_prefix};

/// Bytes of each packet the kernel copies: an IPv6 header (40) and the ports after it.
const COPY_BYTES: u32 = 64;

/// Why the group cannot be read; the daemon logs it and keeps enforcing.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error(
        "NFLOG group {0} is read by another program (ulogd?); choose another [refused] nflog_group"
    )]
    Busy(u16),
    #[error("reading NFLOG group {0} needs CAP_NET_ADMIN and AF_NETLINK")]
    NotPermitted(u16),
    #[error("NFLOG group {group}: {source}")]
    Io { group: u16, source: io::Error },
}

pub struct Listener {
    socket: TokioSocket,
    group: u16,
}

impl Listener {
    /// Binds the group: from now on the kernel hands its packets to this socket.
    pub async fn bind(group: u16) -> Result<Listener, NflogError> {
        let io_error = |source| NflogError::Io { group, source };
        let mut socket = TokioSocket::new(NETLINK_NETFILTER).map_err(io_error)?;
        socket.socket_mut().bind_auto().map_err(io_error)?;
        // Bursts beyond the buffer are lost (ENOBUFS), never blocking the kernel.
        let _ = socket.socket_ref().set_rx_buf_sz(1 << 20);
        let timeout: Timeout = Duration::from_millis(100).into();
        // nfnetlink_log's instances are per group, for every family.
        let mut request = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new_packet(COPY_BYTES).into(),
                timeout.into(),
            ],
        );
        request.finalize();
        let mut buffer = vec![0; request.buffer_len()];
        request.serialize(&mut buffer);
        socket.send(&buffer).await.map_err(io_error)?;
        let (answer, _) = socket.recv_from_full().await.map_err(io_error)?;
        let message = <NetlinkMessage<NetfilterMessage>>::deserialize(&answer)
            .map_err(|error| io_error(io::Error::new(io::ErrorKind::InvalidData, error)))?;
        if let NetlinkPayload::Error(error) = message.payload
            && error.code.is_some()
        {
            let error = error.to_io();
            return Err(match Errno::from_raw(error.raw_os_error().unwrap_or(0)) {
                Errno::EBUSY => NflogError::Busy(group),
                Errno::EPERM => NflogError::NotPermitted(group),
                _ => io_error(error),
            });
        }
        Ok(Listener { socket, group })
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The hits of the next datagram (several messages each, when the kernel batches). A
    /// datagram lost to a full buffer is only logged: the next one follows.
    pub async fn next(&mut self) -> Result<Vec<Hit>, NflogError> {
        let datagram = match self.socket.recv_from_full().await {
            Ok((datagram, _)) => datagram,
            Err(error) if error.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                tracing::warn!(
                    group = self.group,
                    "refused connections came faster than they could be read; some are not counted"
                );
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(NflogError::Io {
                    group: self.group,
                    source,
                });
            }
        };
        // When it arrived (the kernel stamps forwarded packets rarely): after the wait.
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        Ok(hits(&datagram, at))
    }
}

/// Every hit of a datagram of nfnetlink_log messages; what is not one of dockgate's is skipped.
pub fn hits(datagram: &[u8], at: u64) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let Ok(message) = <NetlinkMessage<NetfilterMessage>>::deserialize(&datagram[offset..])
        else {
            break;
        };
        let length = message.header.length as usize;
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
            ..
        }) = &message.payload
            && let Some(hit) = hit(nlas, at)
        {
            hits.push(hit);
        }
        // Messages are aligned to 4 bytes.
        let step = (length + 3) & !3;
        if step == 0 {
            break;
        }
        offset += step;
    }
    hits
}

fn hit(nlas: &[PacketNla], at: u64) -> Option<Hit> {
    let prefix = nlas.iter().find_map(|nla| match nla {
        PacketNla::Prefix(prefix) => prefix.to_str().ok(),
        _ => None,
    })?;
    let (would_be, port, protocol) = parse_prefix(prefix)?;
    let payload = nlas.iter().find_map(|nla| match nla {
        PacketNla::Payload(payload) => Some(payload),
        _ => None,
    })?;
    let (source, source_port) = parse_packet(payload)?;
    Some(Hit {
        port,
        protocol,
        source,
        source_port,
        would_be,
        at,
    })
}
