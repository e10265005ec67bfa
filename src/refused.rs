//! Who was refused: the connections from outside that dockgate's rules refused (or, with
//! `default = "audit"`, that "deny" would refuse), as the kernel logged them to the NFLOG group
//! (`crate::nflog` reads it), counted per host port, protocol and source in a bounded table.
//! Pure: what a log message says, and the table; the daemon persists it in the state dir.
//!
//! The table keeps one entry per (port, protocol, source, would_be) and minute, so that "in the
//! last hour" counts only the last hour's attempts (to the minute); past `max_entries` the
//! oldest minutes go first. A connection is counted once: a client's retransmitted SYNs (a
//! dropped TCP connection is retried for about two minutes) and further datagrams of one UDP
//! flow are the same connection while the source port stays the same.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::docker::Protocol;
use crate::plan::RECORD_PREFIX;

/// How long a client's source port names the same connection: Linux gives up on a SYN after
/// about 127 s (tcp_syn_retries 6).
pub const SAME_CONNECTION_SECONDS: u64 = 130;
/// Connections remembered for that (a flood of new source ports forgets the oldest).
const MAX_RECENT: usize = 4096;
/// The table file in the state dir.
pub const FILE: &str = "refused.json";

/// One logged packet: the first of a new connection that no grant let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The host port the client connected to (a routed container's own port).
    pub port: u16,
    pub protocol: Protocol,
    pub source: IpAddr,
    /// 0 where the packet has none (or it could not be read).
    pub source_port: u16,
    /// Logged in audit mode: let in, but "deny" would refuse it.
    pub would_be: bool,
    /// Unix seconds.
    pub at: u64,
}

/// What the rules' NFLOG prefix says: `dockgate:deny:8080/tcp` or `dockgate:audit:8080/tcp`.
/// None for anyone else's prefix on the same group.
pub fn parse_prefix(prefix: &str) -> Option<(bool, u16, Protocol)> {
    let rest = prefix.strip_prefix(RECORD_PREFIX)?.strip_prefix(':')?;
    let (mode, port) = rest.split_once(':')?;
    let would_be = match mode {
        "deny" => false,
        "audit" => true,
        _ => return None,
    };
    let (port, protocol) = port.split_once('/')?;
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some((would_be, port.parse().ok()?, protocol))
}

/// The source address and source port of an IPv4 or IPv6 packet (from its network header
/// on). By hand: two fixed offsets per family, where a packet-parsing crate would bring a
/// whole protocol stack's types for them. IPv6 extension headers are not walked: behind one,
/// the source port reads as 0 (the connection is then counted per packet, never lost).
pub fn parse_packet(payload: &[u8]) -> Option<(IpAddr, u16)> {
    let version = payload.first()? >> 4;
    let (source, protocol, transport): (IpAddr, u8, usize) = match version {
        4 => {
            let header = usize::from(payload.first()? & 0x0f) * 4;
            let octets: [u8; 4] = payload.get(12..16)?.try_into().ok()?;
            (Ipv4Addr::from(octets).into(), *payload.get(9)?, header)
        }
        6 => {
            let octets: [u8; 16] = payload.get(8..24)?.try_into().ok()?;
            (Ipv6Addr::from(octets).into(), *payload.get(6)?, 40)
        }
        _ => return None,
    };
    // TCP, UDP and SCTP all start with the source port.
    let source_port = match protocol {
        6 | 17 | 132 => payload
            .get(transport..transport + 2)
            .map_or(0, |port| u16::from_be_bytes([port[0], port[1]])),
        _ => 0,
    };
    Some((source, source_port))
}

/// One row of [`Table::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub port: u16,
    pub protocol: Protocol,
    pub source: IpAddr,
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub would_be: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    port: u16,
    protocol: Protocol,
    source: IpAddr,
    would_be: bool,
    minute: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    count: u64,
    first_seen: u64,
    last_seen: u64,
}

impl Key {
    fn entry(&self, counts: &Counts) -> Entry {
        Entry {
            port: self.port,
            protocol: self.protocol,
            source: self.source,
            count: counts.count,
            first_seen: counts.first_seen,
            last_seen: counts.last_seen,
            would_be: self.would_be,
        }
    }
}

/// What recording one hit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// A new connection (not a retransmission of one counted already).
    pub counted: bool,
    /// The first connection of this source to this port the table knows of.
    pub new_pair: bool,
}

/// The bounded table. Serialized as its entries, one per minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    entries: BTreeMap<Key, Counts>,
    /// The connections counted lately: (source, source port, port, protocol) -> when.
    recent: HashMap<(IpAddr, u16, u16, Protocol), u64>,
    max_entries: usize,
}

impl Table {
    pub fn new(max_entries: u32) -> Table {
        Table {
            max_entries: max_entries as usize,
            ..Table::default()
        }
    }

    /// A new bound; the oldest entries go when it is lower than what is kept.
    pub fn set_max_entries(&mut self, max_entries: u32) {
        self.max_entries = max_entries as usize;
        self.evict();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn record(&mut self, hit: Hit) -> Recorded {
        let flow = (hit.source, hit.source_port, hit.port, hit.protocol);
        if hit.source_port != 0 {
            if let Some(at) = self.recent.get(&flow)
                && hit.at.saturating_sub(*at) < SAME_CONNECTION_SECONDS
            {
                return Recorded {
                    counted: false,
                    new_pair: false,
                };
            }
            if self.recent.len() >= MAX_RECENT {
                let horizon = hit.at.saturating_sub(SAME_CONNECTION_SECONDS);
                self.recent.retain(|_, at| *at >= horizon);
                if self.recent.len() >= MAX_RECENT {
                    self.recent.clear();
                }
            }
            self.recent.insert(flow, hit.at);
        }
        let new_pair = !self.knows_pair(hit.port, hit.protocol, hit.source);
        let key = Key {
            port: hit.port,
            protocol: hit.protocol,
            source: hit.source,
            would_be: hit.would_be,
            minute: hit.at / 60,
        };
        let counts = self.entries.entry(key).or_insert(Counts {
            count: 0,
            first_seen: hit.at,
            last_seen: hit.at,
        });
        counts.count = counts.count.saturating_add(1);
        counts.first_seen = counts.first_seen.min(hit.at);
        counts.last_seen = counts.last_seen.max(hit.at);
        self.evict();
        Recorded {
            counted: true,
            new_pair,
        }
    }

    fn knows_pair(&self, port: u16, protocol: Protocol, source: IpAddr) -> bool {
        let from = Key {
            port,
            protocol,
            source,
            would_be: false,
            minute: 0,
        };
        let to = Key {
            would_be: true,
            minute: u64::MAX,
            ..from
        };
        self.entries.range(from..=to).next().is_some()
    }

    /// Past the bound, the oldest minutes go (a tenth of the bound at once, so that a full
    /// table does not sort on every new entry).
    fn evict(&mut self) {
        if self.entries.len() <= self.max_entries {
            return;
        }
        let target = self.max_entries - self.max_entries / 10;
        let mut by_age: Vec<(u64, Key)> = self
            .entries
            .iter()
            .map(|(key, counts)| (counts.last_seen, *key))
            .collect();
        by_age.sort();
        let excess = self.entries.len() - target;
        for (_, key) in by_age.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }

    /// Every (port, protocol, source, would_be) seen at or after `since`, with the attempts
    /// of the minutes seen since then (a minute that began before `since` counts whole), by
    /// port, then source.
    pub fn list(&self, since: u64) -> Vec<Entry> {
        let mut merged: BTreeMap<(u16, Protocol, IpAddr, bool), Entry> = BTreeMap::new();
        for (key, counts) in self
            .entries
            .iter()
            .filter(|(_, counts)| counts.last_seen >= since)
        {
            merged
                .entry((key.port, key.protocol, key.source, key.would_be))
                .and_modify(|entry| {
                    entry.count = entry.count.saturating_add(counts.count);
                    entry.first_seen = entry.first_seen.min(counts.first_seen);
                    entry.last_seen = entry.last_seen.max(counts.last_seen);
                })
                .or_insert(key.entry(counts));
        }
        merged.into_values().collect()
    }

    /// The entries as stored: one per minute.
    pub fn saved(&self) -> Saved {
        Saved {
            entries: self
                .entries
                .iter()
                .map(|(key, counts)| key.entry(counts))
                .collect(),
        }
    }

    pub fn restore(saved: Saved, max_entries: u32) -> Table {
        let mut table = Table::new(max_entries);
        for entry in saved.entries {
            let key = Key {
                port: entry.port,
                protocol: entry.protocol,
                source: entry.source,
                would_be: entry.would_be,
                minute: entry.last_seen / 60,
            };
            table.entries.insert(
                key,
                Counts {
                    count: entry.count,
                    first_seen: entry.first_seen,
                    last_seen: entry.last_seen,
                },
            );
        }
        table.evict();
        table
    }
}

/// The table file: its entries, one per minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub entries: Vec<Entry>,
}

#[cfg(test)]
mod tests;
