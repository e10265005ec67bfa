//! Runtime exposures: the ones callers add over D-Bus, next to the config's. Each is checked
//! field by field before anything else sees it (nothing a caller sends reaches firewalld
//! unparsed), persisted in the state dir with an atomic write, owned by the uid that added it,
//! and optionally limited in time; an expiry that passed while dockgated was down is applied
//! when it starts.

use serde::{Deserialize, Serialize};

use crate::config::{self, Config, Exposure, PortRange, Source};
use crate::state::{StateDir, StateError};

/// The state file that holds the runtime exposures.
pub const FILE: &str = "exposures.json";
/// The longest time an exposure may be given (SPEC §4: TTL beyond 30 days is refused).
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 60 * 60;
/// Longer strings are refused before they are parsed: no address, port or name comes close.
const MAX_FIELD_BYTES: usize = 256;
/// Prefix of runtime exposure ids ("runtime-1").
const ID_PREFIX: &str = "runtime-";
/// Prefix of the config's exposure ids: "config-1" is its first `[[expose]]`.
const CONFIG_ID_PREFIX: &str = "config-";

/// A caller's argument that cannot be used; `field` names it as the D-Bus API does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidArgument {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidArgument {
    InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no runtime exposure with id \"{0}\"")]
    NotFound(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a caller asks for, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub port: &'a str,
    pub sources: &'a [String],
    pub ttl_seconds: u64,
    pub container: Option<&'a str>,
    pub comment: Option<&'a str>,
}

impl Request<'_> {
    /// Checks every field; the first bad one is named in the error.
    pub fn check(&self) -> Result<Exposure, InvalidArgument> {
        check_length("port", self.port)?;
        let port: PortRange = self.port.parse().map_err(|error| invalid("port", error))?;
        if self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "must list at least one source, like \"any\" or \"192.168.1.0/24\"",
            ));
        }
        if self.sources.len() > config::MAX_SOURCES {
            return Err(invalid(
                "sources",
                format!(
                    "lists {} sources; at most {} are allowed (use CIDRs or ranges)",
                    self.sources.len(),
                    config::MAX_SOURCES
                ),
            ));
        }
        let mut from = Vec::with_capacity(self.sources.len());
        for (index, text) in self.sources.iter().enumerate() {
            let field = format!("sources[{index}]");
            check_length(&field, text)?;
            from.push(
                text.parse::<Source>()
                    .map_err(|error| invalid(field, error))?,
            );
        }
        if self.ttl_seconds > MAX_TTL_SECONDS {
            return Err(invalid(
                "ttl_seconds",
                format!(
                    "{} s is longer than 30 days ({MAX_TTL_SECONDS} s); 0 means until removed",
                    self.ttl_seconds
                ),
            ));
        }
        let container = optional("container", self.container, config::check_container)?;
        let comment = optional("comment", self.comment, config::check_comment)?;
        Ok(Exposure {
            port,
            from,
            container,
            comment,
        })
    }
}

/// An optional string field: absent, or within length and passing `check`.
fn optional(
    field: &str,
    text: Option<&str>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, InvalidArgument> {
    let Some(text) = text else { return Ok(None) };
    check_length(field, text)?;
    check(text).map_err(|error| invalid(field, error))?;
    Ok(Some(text.to_owned()))
}

fn check_length(field: &str, text: &str) -> Result<(), InvalidArgument> {
    if text.len() > MAX_FIELD_BYTES {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long; at most {MAX_FIELD_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// One runtime exposure as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeExposure {
    pub id: String,
    pub port: PortRange,
    // The state file is checked like the config: a hand-edited file cannot smuggle in what
    // a caller could not.
    #[serde(deserialize_with = "config::exposure_sources")]
    pub from: Vec<Source>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "config::container_name"
    )]
    pub container: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "config::comment"
    )]
    pub comment: Option<String>,
    pub owner_uid: u32,
    /// Unix seconds; 0 = until removed.
    #[serde(deserialize_with = "expiry")]
    pub expires_at: u64,
}

/// The latest end a rule can carry: the kernel's time match keeps its dates in 32 bits
/// (`xt_time_info`), 2106-02-07. dockgate writes at most 30 days ahead; a later end in the
/// file is refused like any other value a caller could not have sent.
const MAX_EXPIRES_AT: u64 = u32::MAX as u64;

fn expiry<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let expires_at = u64::deserialize(deserializer)?;
    if expires_at > MAX_EXPIRES_AT {
        return Err(serde::de::Error::custom(format!(
            "expires_at {expires_at} is after 2106-02-07, the last date a rule can carry"
        )));
    }
    Ok(expires_at)
}

impl RuntimeExposure {
    pub fn exposure(&self) -> Exposure {
        Exposure {
            port: self.port,
            from: self.from.clone(),
            container: self.container.clone(),
            comment: self.comment.clone(),
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// The runtime exposures as the state file holds them. Pure: a change returns the next value,
/// which the daemon writes to the state file before it takes it, so that memory never runs
/// ahead of the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The number of the last id handed out; ids are never reused.
    last_id: u64,
    exposures: Vec<RuntimeExposure>,
}

impl Stored {
    /// Reads the state file (none yet: no exposures). A file that does not parse, or holds an
    /// exposure that would not pass [`Request::check`] today, is an error rather than ignored.
    pub fn load(state: &StateDir) -> Result<Self, StoreError> {
        Ok(state.load(FILE)?.unwrap_or_default())
    }

    /// Writes the state file atomically.
    pub fn save(&self, state: &StateDir) -> Result<(), StoreError> {
        Ok(state.store(FILE, self)?)
    }

    pub fn all(&self) -> &[RuntimeExposure] {
        &self.exposures
    }

    pub fn get(&self, id: &str) -> Option<&RuntimeExposure> {
        self.exposures.iter().find(|exposure| exposure.id == id)
    }

    /// With a checked exposure added, and its new id.
    pub fn with(
        &self,
        exposure: Exposure,
        ttl_seconds: u64,
        owner_uid: u32,
        now: u64,
    ) -> (Stored, String) {
        let mut next = self.clone();
        next.last_id += 1;
        let id = format!("{ID_PREFIX}{}", next.last_id);
        next.exposures.push(RuntimeExposure {
            id: id.clone(),
            port: exposure.port,
            from: exposure.from,
            container: exposure.container,
            comment: exposure.comment,
            owner_uid,
            expires_at: if ttl_seconds == 0 {
                0
            } else {
                now + ttl_seconds
            },
        });
        (next, id)
    }

    /// Without the exposure `id`, and that exposure.
    pub fn without(&self, id: &str) -> Result<(Stored, RuntimeExposure), StoreError> {
        let mut next = self.clone();
        let index = next
            .exposures
            .iter()
            .position(|exposure| exposure.id == id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let removed = next.exposures.remove(index);
        Ok((next, removed))
    }

    /// Without the exposures whose time is up at `now`, and those.
    pub fn expire(&self, now: u64) -> (Stored, Vec<RuntimeExposure>) {
        let (expired, kept): (Vec<_>, Vec<_>) = self
            .exposures
            .iter()
            .cloned()
            .partition(|exposure| exposure.expired(now));
        (
            Stored {
                last_id: self.last_id,
                exposures: kept,
            },
            expired,
        )
    }

    /// When the next exposure expires after `after` (Unix seconds), if any does.
    pub fn next_expiry(&self, after: u64) -> Option<u64> {
        self.exposures
            .iter()
            .map(|exposure| exposure.expires_at)
            .filter(|&at| at != 0 && at > after)
            .min()
    }
}

/// Where an exposure comes from, with what only runtime exposures have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Runtime { owner_uid: u32, expires_at: u64 },
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime { .. } => "runtime",
        }
    }
}

/// An exposure with the id callers know it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub exposure: Exposure,
    pub origin: Origin,
}

/// Every exposure, the config's first ("config-1" is its first `[[expose]]`), then the
/// runtime ones: the one list the plan, the API and `inspect` number exposures by.
pub fn listed(config: &Config, runtime: &[RuntimeExposure]) -> Vec<Listed> {
    let from_config = config
        .expose
        .iter()
        .enumerate()
        .map(|(index, exposure)| Listed {
            id: format!("{CONFIG_ID_PREFIX}{}", index + 1),
            exposure: exposure.clone(),
            origin: Origin::Config,
        });
    let at_run_time = runtime.iter().map(|entry| Listed {
        id: entry.id.clone(),
        exposure: entry.exposure(),
        origin: Origin::Runtime {
            owner_uid: entry.owner_uid,
            expires_at: entry.expires_at,
        },
    });
    from_config.chain(at_run_time).collect()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests;
