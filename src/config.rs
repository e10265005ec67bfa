//! The admin's policy file, `/etc/dockgate/dockgate.toml` (SPEC §3).
//!
//! Every value is checked while the file is deserialized, so a `Config` that exists is valid.
//! A mistake is reported with the file, the line of the offending value and its key path
//! (`expose[1].from[0]`, indexes counting from 0), because the admin has to find it in a file
//! that may list hundreds of sources.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use toml::de::{DeTable, DeValue};

use crate::docker::Protocol;

pub const DEFAULT_PATH: &str = "/etc/dockgate/dockgate.toml";

/// More sources than this in one list is almost certainly a generated file gone wrong, and each
/// source becomes firewall rules.
pub(crate) const MAX_SOURCES: usize = 1000;
/// iptables keeps at most 255 bytes of a rule comment.
const MAX_COMMENT_BYTES: usize = 200;
/// The kernel's IFNAMSIZ minus the terminating NUL.
const MAX_INTERFACE_BYTES: usize = 15;
/// firewalld's limit: its longest chain name for a zone must fit netfilter's 28 characters.
const MAX_ZONE_NAME_CHARS: usize = 17;

const SOURCE_EXPECTED: &str = "an IPv4/IPv6 address, a CIDR like \"10.0.0.0/8\", a range like \
     \"10.0.0.5-10.0.0.9\", or \"any\"";
const PORT_EXPECTED: &str =
    "a port or range with a protocol, like \"443/tcp\" or \"8000-8010/tcp\"";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Who may open connections: everyone, a network (a single address is a /32 or /128), or an
/// inclusive address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Any,
    Net(IpNet),
    Range(IpAddr, IpAddr),
}

impl Source {
    /// Whether rules for this source belong in the IPv6 (`true`) or IPv4 (`false`) table.
    pub fn family_matches(&self, v6: bool) -> bool {
        match self {
            Source::Any => true,
            Source::Net(net) => matches!(net, IpNet::V6(_)) == v6,
            Source::Range(start, _) => start.is_ipv6() == v6,
        }
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "any" {
            return Ok(Source::Any);
        }
        if let Some((start, end)) = text.split_once('-') {
            let (Ok(start), Ok(end)) = (start.parse::<IpAddr>(), end.parse::<IpAddr>()) else {
                return Err(format!("expected {SOURCE_EXPECTED}; got \"{text}\""));
            };
            if start.is_ipv6() != end.is_ipv6() {
                return Err(format!(
                    "range \"{text}\" mixes IPv4 and IPv6; both ends must be the same family"
                ));
            }
            if start > end {
                return Err(format!(
                    "range \"{text}\" starts after it ends; write it as \"{end}-{start}\""
                ));
            }
            return Ok(Source::Range(start, end));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Source::Net(IpNet::from(address)));
        }
        let net = text
            .parse::<IpNet>()
            .map_err(|_| format!("expected {SOURCE_EXPECTED}; got \"{text}\""))?;
        if net.addr() != net.network() {
            return Err(format!(
                "\"{text}\" has host bits set; did you mean the network \"{}\"?",
                net.trunc()
            ));
        }
        Ok(Source::Net(net))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Any => f.write_str("any"),
            Source::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            Source::Net(net) => write!(f, "{net}"),
            Source::Range(start, end) => write!(f, "{start}-{end}"),
        }
    }
}

/// Host ports `first..=last` of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
    pub protocol: Protocol,
}

impl PortRange {
    pub fn contains(&self, port: u16, protocol: Protocol) -> bool {
        self.protocol == protocol && (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((ports, protocol)) = text.split_once('/') else {
            return Err(format!("expected {PORT_EXPECTED}; got \"{text}\""));
        };
        let protocol = protocol
            .parse::<Protocol>()
            .map_err(|err| format!("\"{text}\": {err}"))?;
        let (first, last) = match ports.split_once('-') {
            Some((first, last)) => (parse_port(first)?, parse_port(last)?),
            None => {
                let port = parse_port(ports)?;
                (port, port)
            }
        };
        if first > last {
            return Err(format!(
                "port range \"{text}\" starts after it ends; write it as \"{last}-{first}/{protocol}\""
            ));
        }
        Ok(PortRange {
            first,
            last,
            protocol,
        })
    }
}

/// Digits only: `u16::from_str` would also take "+443".
fn parse_port(text: &str) -> Result<u16, String> {
    let port = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u16>().ok()
    } else {
        None
    };
    match port {
        Some(0) => Err("port 0 is not a valid port; ports are 1-65535".to_owned()),
        Some(port) => Ok(port),
        None => Err(format!(
            "\"{text}\" is not a port number; ports are 1-65535"
        )),
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.protocol)
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.protocol)
        }
    }
}

/// What happens to published ports nobody exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    #[default]
    Deny,
    /// Docker's own behaviour; dockgate only reports.
    Allow,
    /// What `allow` admits, and every new connection from outside that `deny` would refuse is
    /// recorded (`[refused]`): the safe step from `allow` to `deny` on a running host.
    Audit,
}

impl DefaultPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Deny => "deny",
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Audit => "audit",
        }
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a denied packet ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    #[default]
    Drop,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What removing or expiring an exposure does to the connections it admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRevoke {
    /// Established connections live on; only new ones are judged.
    #[default]
    Keep,
    /// Every packet from outside is judged, so a connection ends with its grant.
    Cut,
}

impl OnRevoke {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRevoke::Keep => "keep",
            OnRevoke::Cut => "cut",
        }
    }
}

impl fmt::Display for OnRevoke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A firewalld zone target, spelled as firewalld spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneTarget {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "ACCEPT")]
    Accept,
    #[serde(rename = "DROP")]
    Drop,
    #[serde(rename = "%%REJECT%%")]
    Reject,
}

impl ZoneTarget {
    pub fn as_firewalld(&self) -> &'static str {
        match self {
            ZoneTarget::Default => "default",
            ZoneTarget::Accept => "ACCEPT",
            ZoneTarget::Drop => "DROP",
            ZoneTarget::Reject => "%%REJECT%%",
        }
    }
}

/// Host-access settings of zone `docker`; `None` leaves what Docker made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    #[serde(default)]
    pub target: Option<ZoneTarget>,
    #[serde(default, deserialize_with = "service_names")]
    pub services: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Option<Vec<PortRange>>,
    #[serde(default, deserialize_with = "zone_name")]
    pub bind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposure {
    pub port: PortRange,
    #[serde(deserialize_with = "exposure_sources")]
    pub from: Vec<Source>,
    #[serde(default, deserialize_with = "container_name")]
    pub container: Option<String>,
    #[serde(default, deserialize_with = "comment")]
    pub comment: Option<String>,
}

/// Bounds on what callers of the API may make (SPEC §3): a user allowed to expose cannot make
/// firewalld hold an unbounded number of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Runtime exposures one uid may hold (root is bounded only by the total).
    #[serde(deserialize_with = "at_least_one")]
    pub exposures_per_uid: u32,
    /// Runtime exposures of everyone together.
    #[serde(deserialize_with = "at_least_one")]
    pub exposures_total: u32,
    /// Sources one runtime exposure may list (root's too are bounded only by the argument
    /// check's 1000).
    #[serde(deserialize_with = "sources_limit")]
    pub sources_per_exposure: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            exposures_per_uid: 64,
            exposures_total: 1024,
            sources_per_exposure: 256,
        }
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(deserializer)?;
    if value == 0 {
        return Err(de::Error::custom(
            "must be at least 1 (a bound of 0 would refuse every exposure)",
        ));
    }
    Ok(value)
}

fn sources_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = at_least_one(deserializer)?;
    if value as usize > MAX_SOURCES {
        return Err(de::Error::custom(format!(
            "at most {MAX_SOURCES}: no exposure may list more sources than that"
        )));
    }
    Ok(value)
}

/// Recording refused connections (and, with `default = "audit"`, those `deny` would refuse):
/// the kernel logs them to an NFLOG group, rate-limited in the rule itself, and dockgated keeps
/// a bounded table of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Refused {
    /// The NFLOG group dockgated reads. ulogd's shipped configurations use groups 0, 1 and 2
    /// (and examples up to 11); no other program may read the same group.
    #[serde(deserialize_with = "nflog_group")]
    pub nflog_group: u16,
    /// Connections recorded per second and published port (each family), after a burst of as
    /// many: a flood costs the kernel and dockgated bounded work; past it, attempts are refused
    /// all the same but not counted.
    #[serde(deserialize_with = "per_second")]
    pub per_second: u32,
    /// Entries the table keeps (one per port, source and minute); the oldest go first.
    #[serde(deserialize_with = "max_entries")]
    pub max_entries: u32,
}

impl Default for Refused {
    fn default() -> Self {
        Refused {
            nflog_group: 2717,
            per_second: 20,
            max_entries: 10_000,
        }
    }
}

fn nflog_group<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = u16::deserialize(deserializer)?;
    if value == 0 {
        return Err(de::Error::custom(
            "group 0 is ulogd's and the kernel's default; choose another (1-65535)",
        ));
    }
    Ok(value)
}

fn per_second<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(deserializer)?;
    if !(1..=10_000).contains(&value) {
        return Err(de::Error::custom("must be 1-10000"));
    }
    Ok(value)
}

fn max_entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(deserializer)?;
    if !(100..=1_000_000).contains(&value) {
        return Err(de::Error::custom("must be 100-1000000"));
    }
    Ok(value)
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "interface_names")]
    pub external_interfaces: Vec<String>,
    pub default: DefaultPolicy,
    pub verdict: Verdict,
    pub on_revoke: OnRevoke,
    #[serde(deserialize_with = "trusted_sources")]
    pub trusted: Vec<Source>,
    pub zone: ZoneSettings,
    pub limits: Limits,
    pub refused: Refused,
    pub expose: Vec<Exposure>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            ConfigError::Invalid {
                path: path.to_owned(),
                line: line_at(text, span.start),
                key: key_path_at(text, &span),
                message: err.message().to_owned(),
            }
        })
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.matches('\n').count() + 1
}

/// The key path of the innermost key or value at `span`. toml's errors carry only a byte
/// span, so this re-reads the document (with recovery, as it may be broken) to name the key.
fn key_path_at(text: &str, span: &Range<usize>) -> String {
    let (document, _) = DeTable::parse_recoverable(text);
    let mut places = Vec::new();
    collect_places(text, document.get_ref(), "", &mut places);

    let inside =
        |place: &&Place| place.span.contains(&span.start) || place.span.start == span.start;
    // Ties go to the deeper path: an array of tables and its first element share a span.
    if let Some(place) = places
        .iter()
        .filter(inside)
        .min_by_key(|place| (place.span.len(), std::cmp::Reverse(place.path.len())))
    {
        return place.path.clone();
    }

    // Nothing there: a key the parser refused, such as a duplicate. Name it within the
    // [table] whose header comes last before it.
    let section = places
        .iter()
        .filter(|place| place.is_header && place.span.start <= span.start)
        .max_by_key(|place| place.span.start)
        .map_or("", |place| place.path.as_str());
    let word = text.get(span.clone()).unwrap_or("").trim();
    let is_bare_key = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (section, is_bare_key) {
        ("", true) => word.to_owned(),
        ("", false) => "(top level)".to_owned(),
        (section, true) => format!("{section}.{word}"),
        (section, false) => section.to_owned(),
    }
}

struct Place {
    span: Range<usize>,
    path: String,
    /// A `[table]` or `[[array]]` header, which starts the section of the keys below it.
    is_header: bool,
}

fn collect_places(text: &str, table: &DeTable<'_>, prefix: &str, places: &mut Vec<Place>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        places.push(Place {
            span: key.span(),
            path: path.clone(),
            is_header: false,
        });
        collect_value(text, value, path, places);
    }
}

fn collect_value(
    text: &str,
    value: &toml::Spanned<DeValue<'_>>,
    path: String,
    places: &mut Vec<Place>,
) {
    match value.get_ref() {
        DeValue::Table(table) => collect_places(text, table, &path, places),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                collect_value(text, element, format!("{path}[{index}]"), places);
            }
        }
        _ => {}
    }
    // A table's span is its header line; an inline table's starts with '{' instead.
    let is_header = matches!(value.get_ref(), DeValue::Table(_))
        && text.get(value.span()).is_some_and(|s| s.starts_with('['));
    places.push(Place {
        span: value.span(),
        path,
        is_header,
    });
}

/// Deserializes any `FromStr<Err = String>` from a string, so that the grammar's own message
/// becomes the error and a non-string says what was expected.
struct ParseVisitor<T> {
    expected: &'static str,
    parsed: PhantomData<T>,
}

impl<T: FromStr<Err = String>> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor {
            expected: SOURCE_EXPECTED,
            parsed: PhantomData,
        })
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor {
            expected: PORT_EXPECTED,
            parsed: PhantomData,
        })
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn trusted_sources<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Source>, D::Error> {
    let sources = Vec::<Source>::deserialize(deserializer)?;
    check_source_count(&sources)?;
    Ok(sources)
}

pub(crate) fn exposure_sources<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Source>, D::Error> {
    let sources = Vec::<Source>::deserialize(deserializer)?;
    if sources.is_empty() {
        return Err(de::Error::custom(
            "must list at least one source, like [\"any\"] or [\"192.168.1.0/24\"]",
        ));
    }
    check_source_count(&sources)?;
    Ok(sources)
}

fn check_source_count<E: de::Error>(sources: &[Source]) -> Result<(), E> {
    if sources.len() > MAX_SOURCES {
        return Err(E::custom(format!(
            "lists {} sources; at most {MAX_SOURCES} are allowed (use CIDRs or ranges)",
            sources.len()
        )));
    }
    Ok(())
}

/// A string that must pass `check`. The check runs inside the visitor, while toml still knows
/// where the string is, so the error carries the span (and line) of that string rather than of
/// the list or table around it.
struct Checked(fn(&str) -> Result<(), String>);

impl Visitor<'_> for Checked {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        (self.0)(text).map_err(E::custom)?;
        Ok(text.to_owned())
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

struct CheckedList(fn(&str) -> Result<(), String>);

impl<'de> Visitor<'de> for CheckedList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Checked(self.0))? {
            items.push(item);
        }
        Ok(items)
    }
}

fn interface_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_seq(CheckedList(check_interface))
}

fn service_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    deserializer
        .deserialize_seq(CheckedList(check_service))
        .map(Some)
}

fn zone_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Checked(check_zone).deserialize(deserializer).map(Some)
}

pub(crate) fn container_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Checked(check_container).deserialize(deserializer).map(Some)
}

pub(crate) fn comment<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Checked(check_comment).deserialize(deserializer).map(Some)
}

/// The kernel's rule for interface names (`dev_valid_name`).
fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("\"{name}\" is not an interface name"));
    }
    if name.len() > MAX_INTERFACE_BYTES {
        return Err(format!(
            "interface name \"{name}\" is longer than {MAX_INTERFACE_BYTES} bytes"
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name \"{}\" contains '/', ':', whitespace or a control character",
            name.escape_default()
        ));
    }
    Ok(())
}

/// firewalld's rule for service names.
fn check_service(name: &str) -> Result<(), String> {
    if is_firewalld_name(name) {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a firewalld service name (letters, digits, '_' and '-')",
            name.escape_default()
        ))
    }
}

/// firewalld's rule for zone names.
fn check_zone(name: &str) -> Result<(), String> {
    if !is_firewalld_name(name) {
        return Err(format!(
            "\"{}\" is not a firewalld zone name (letters, digits, '_' and '-')",
            name.escape_default()
        ));
    }
    if name.len() > MAX_ZONE_NAME_CHARS {
        return Err(format!(
            "zone name \"{name}\" is longer than firewalld's {MAX_ZONE_NAME_CHARS} characters"
        ));
    }
    Ok(())
}

fn is_firewalld_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Docker's rule for container names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn check_container(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a Docker container name (a letter or digit, then letters, digits, \
             '_', '.' or '-'; at least 2 characters)",
            name.escape_default()
        ))
    }
}

/// Comments end up in iptables rule comments, which are quoted on the command line and in
/// `iptables-save` output and keep at most 255 bytes.
pub(crate) fn check_comment(text: &str) -> Result<(), String> {
    if text.len() > MAX_COMMENT_BYTES {
        return Err(format!(
            "comment is {} bytes long; at most {MAX_COMMENT_BYTES} are allowed",
            text.len()
        ));
    }
    if text.chars().any(|c| c == '"' || c.is_control()) {
        return Err(
            "comment must not contain a double quote, a newline or other control characters"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn net(text: &str) -> Source {
        Source::Net(text.parse().unwrap())
    }

    fn ports(text: &str) -> PortRange {
        text.parse().unwrap()
    }

    /// The error of `text` as (line, key, message).
    fn invalid(text: &str) -> (usize, String, String) {
        match Config::parse(text, Path::new("/etc/dockgate/dockgate.toml")) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn sources_parse_and_display_round_trip() {
        for (text, parsed) in [
            ("any", Source::Any),
            ("203.0.113.7", net("203.0.113.7/32")),
            ("10.0.0.0/8", net("10.0.0.0/8")),
            ("0.0.0.0/0", net("0.0.0.0/0")),
            ("fd00::/8", net("fd00::/8")),
            ("2001:db8::1", net("2001:db8::1/128")),
            (
                "10.0.0.5-10.0.0.9",
                Source::Range(
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
                ),
            ),
            (
                "fd00::1-fd00::1",
                Source::Range(
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                ),
            ),
        ] {
            assert_eq!(text.parse::<Source>(), Ok(parsed), "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(net("203.0.113.7/32").to_string(), "203.0.113.7");
    }

    #[test]
    fn bad_sources_say_what_is_wrong() {
        for (text, expected) in [
            ("", "expected an IPv4/IPv6 address"),
            ("ANY", "expected an IPv4/IPv6 address"),
            ("10.0.0.0/33", "expected an IPv4/IPv6 address"),
            ("10.0.0", "expected an IPv4/IPv6 address"),
            (" 10.0.0.1", "expected an IPv4/IPv6 address"),
            ("10.0.0.1-", "expected an IPv4/IPv6 address"),
            (
                "10.0.0.1-10.0.0.2-10.0.0.3",
                "expected an IPv4/IPv6 address",
            ),
            ("example.com", "expected an IPv4/IPv6 address"),
            (
                "10.0.0.1/8",
                "has host bits set; did you mean the network \"10.0.0.0/8\"?",
            ),
            ("fd00::1/8", "did you mean the network \"fd00::/8\"?"),
            (
                "10.0.0.9-10.0.0.5",
                "starts after it ends; write it as \"10.0.0.5-10.0.0.9\"",
            ),
            ("10.0.0.1-::1", "mixes IPv4 and IPv6"),
        ] {
            let err = text.parse::<Source>().unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn source_families() {
        assert!(Source::Any.family_matches(false));
        assert!(Source::Any.family_matches(true));
        assert!(net("10.0.0.0/8").family_matches(false));
        assert!(!net("10.0.0.0/8").family_matches(true));
        let range: Source = "fd00::1-fd00::9".parse().unwrap();
        assert!(range.family_matches(true));
        assert!(!range.family_matches(false));
    }

    #[test]
    fn port_ranges_parse_and_display_round_trip() {
        for (text, first, last, protocol) in [
            ("443/tcp", 443, 443, Protocol::Tcp),
            ("1/udp", 1, 1, Protocol::Udp),
            ("65535/sctp", 65535, 65535, Protocol::Sctp),
            ("8000-8010/udp", 8000, 8010, Protocol::Udp),
        ] {
            let parsed = PortRange {
                first,
                last,
                protocol,
            };
            assert_eq!(text.parse::<PortRange>(), Ok(parsed), "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(ports("80-80/tcp").to_string(), "80/tcp");
    }

    #[test]
    fn bad_port_ranges_say_what_is_wrong() {
        for (text, expected) in [
            ("443", "expected a port or range with a protocol"),
            ("", "expected a port or range with a protocol"),
            ("443/TCP", "unknown protocol 'TCP'"),
            ("443/icmp", "unknown protocol 'icmp'"),
            ("443/", "unknown protocol ''"),
            ("0/tcp", "port 0 is not a valid port"),
            ("0-10/tcp", "port 0 is not a valid port"),
            ("65536/tcp", "\"65536\" is not a port number"),
            ("+443/tcp", "\"+443\" is not a port number"),
            ("-443/tcp", "\"\" is not a port number"),
            ("http/tcp", "\"http\" is not a port number"),
            ("8010-8000/tcp", "write it as \"8000-8010/tcp\""),
            ("1-2-3/tcp", "\"2-3\" is not a port number"),
            ("443/tcp/udp", "unknown protocol 'tcp/udp'"),
        ] {
            let err = text.parse::<PortRange>().unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn port_range_contains() {
        let range = ports("8000-8010/tcp");
        assert!(range.contains(8000, Protocol::Tcp));
        assert!(range.contains(8010, Protocol::Tcp));
        assert!(!range.contains(7999, Protocol::Tcp));
        assert!(!range.contains(8011, Protocol::Tcp));
        assert!(!range.contains(8005, Protocol::Udp));
    }

    #[test]
    fn empty_file_is_the_default() {
        let config = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.default, DefaultPolicy::Deny);
        assert_eq!(config.verdict, Verdict::Drop);
        assert!(config.external_interfaces.is_empty());
        assert!(config.trusted.is_empty());
        assert!(config.expose.is_empty());
        assert_eq!(config.zone, ZoneSettings::default());
        assert_eq!(config.zone.target, None);
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
external_interfaces = ["eth0"]
default = "deny"
verdict = "drop"
on_revoke = "cut"
trusted = ["192.168.1.0/24", "203.0.113.7", "fd00::/8", "10.0.0.5-10.0.0.9", "any"]
[zone]
target = "default"
services = ["dns"]
ports = ["5000/tcp", "6000-6010/udp"]
bind = "internal"
[limits]
exposures_per_uid = 16
exposures_total = 256
sources_per_exposure = 64
[refused]
nflog_group = 42
per_second = 5
max_entries = 500
[[expose]]
port = "443/tcp"
from = ["any"]
container = "www-nginx"
comment = "public web"
"#;
        let expected = Config {
            external_interfaces: vec!["eth0".to_owned()],
            default: DefaultPolicy::Deny,
            verdict: Verdict::Drop,
            on_revoke: OnRevoke::Cut,
            trusted: vec![
                net("192.168.1.0/24"),
                net("203.0.113.7/32"),
                net("fd00::/8"),
                "10.0.0.5-10.0.0.9".parse().unwrap(),
                Source::Any,
            ],
            zone: ZoneSettings {
                target: Some(ZoneTarget::Default),
                services: Some(vec!["dns".to_owned()]),
                ports: Some(vec![ports("5000/tcp"), ports("6000-6010/udp")]),
                bind: Some("internal".to_owned()),
            },
            limits: Limits {
                exposures_per_uid: 16,
                exposures_total: 256,
                sources_per_exposure: 64,
            },
            refused: Refused {
                nflog_group: 42,
                per_second: 5,
                max_entries: 500,
            },
            expose: vec![Exposure {
                port: ports("443/tcp"),
                from: vec![Source::Any],
                container: Some("www-nginx".to_owned()),
                comment: Some("public web".to_owned()),
            }],
        };
        assert_eq!(Config::parse(text, Path::new("x.toml")).unwrap(), expected);
    }

    #[test]
    fn other_spellings_parse() {
        let config = Config::parse(
            r#"
default = "allow"
verdict = "reject"
zone = { target = "%%REJECT%%", services = [], ports = [] }
expose = [
  { port = "8000-8010/udp", from = ["2001:db8::/32", "10.0.0.1"] },
]
"#,
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(config.default, DefaultPolicy::Allow);
        assert_eq!(config.verdict, Verdict::Reject);
        assert_eq!(config.zone.target, Some(ZoneTarget::Reject));
        assert_eq!(config.zone.services, Some(vec![]));
        assert_eq!(config.zone.bind, None);
        assert_eq!(config.expose[0].container, None);
        assert_eq!(config.expose[0].port, ports("8000-8010/udp"));
        for (target, spelled) in [
            (ZoneTarget::Default, "default"),
            (ZoneTarget::Accept, "ACCEPT"),
            (ZoneTarget::Drop, "DROP"),
            (ZoneTarget::Reject, "%%REJECT%%"),
        ] {
            assert_eq!(target.as_firewalld(), spelled);
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let err = Config::parse(
            "verdict = \"drop\"\n\n[[expose]]\nport = \"80/tcp\"\nfrom = [\"any\"]\n\n\
             [[expose]]\nport = \"443\"\nfrom = [\"any\"]\n",
            Path::new("/etc/dockgate/dockgate.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/dockgate/dockgate.toml:8: expose[1].port: expected a port or range with a \
             protocol, like \"443/tcp\" or \"8000-8010/tcp\"; got \"443\""
        );
    }

    #[test]
    fn element_errors_point_at_the_element() {
        let (line, key, message) =
            invalid("trusted = [\n  \"10.0.0.0/8\",\n  \"any\",\n  \"10.0.0.1/8\",\n]\n");
        assert_eq!((line, key.as_str()), (4, "trusted[2]"));
        assert!(message.contains("host bits"), "{message}");

        let (line, key, _) = invalid("[zone]\nservices = [\"dns\", \"bad name\"]\n");
        assert_eq!((line, key.as_str()), (2, "zone.services[1]"));

        let (line, key, _) = invalid("[[expose]]\nport = \"80/tcp\"\nfrom = [\"any\", \"nope\"]\n");
        assert_eq!((line, key.as_str()), (3, "expose[0].from[1]"));
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let (line, key, message) = invalid("\n[[expose]]\nport = 443\nfrom = [\"any\"]\n");
        assert_eq!((line, key.as_str()), (3, "expose[0].port"));
        assert!(message.contains("expected a port or range"), "{message}");

        let (_, key, message) = invalid("trusted = \"any\"\n");
        assert_eq!(key, "trusted");
        assert!(message.contains("expected a sequence"), "{message}");
    }

    #[test]
    fn missing_keys_name_the_table() {
        let (line, key, message) = invalid("[[expose]]\nport = \"80/tcp\"\n");
        assert_eq!((line, key.as_str()), (1, "expose[0]"));
        assert!(message.contains("missing field `from`"), "{message}");
    }

    #[test]
    fn duplicate_keys_are_named() {
        let (line, key, message) = invalid("verdict = \"drop\"\nverdict = \"reject\"\n");
        assert_eq!((line, key.as_str()), (2, "verdict"));
        assert!(message.contains("duplicate key"), "{message}");

        let (line, key, _) = invalid("expose = []\n[zone]\nbind = \"a\"\nbind = \"b\"\n");
        assert_eq!((line, key.as_str()), (4, "zone.bind"));
    }

    #[test]
    fn source_lists_have_a_limit() {
        let many = vec!["\"10.0.0.1\""; MAX_SOURCES + 1].join(", ");
        let (line, key, message) = invalid(&format!("\ntrusted = [{many}]\n"));
        assert_eq!((line, key.as_str()), (2, "trusted"));
        assert!(message.contains("at most 1000"), "{message}");

        let enough = vec!["\"10.0.0.1\""; MAX_SOURCES].join(", ");
        assert!(Config::parse(&format!("trusted = [{enough}]"), Path::new("x")).is_ok());
    }

    #[test]
    fn names_follow_their_owners_rules() {
        for name in ["eth0", "br-1a2b3c4d5e6f", "enp0s31f6.100", "wg_0@x"] {
            assert_eq!(check_interface(name), Ok(()), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            "eth0/1",
            "eth0:1",
            "eth 0",
            "abcdefghijklmnop",
        ] {
            assert!(check_interface(name).is_err(), "{name:?}");
        }
        for name in ["dns", "ms-wbt", "freeipa_4"] {
            assert_eq!(check_service(name), Ok(()), "{name}");
        }
        for name in ["", "dns,ssh", "a b", "dns.x"] {
            assert!(check_service(name).is_err(), "{name:?}");
        }
        assert_eq!(check_zone("internal"), Ok(()));
        assert!(check_zone("a-zone-name-too-long").is_err());
        assert!(check_zone("work/1").is_err());
        for name in ["www-nginx", "a1", "web_1.blue-2"] {
            assert_eq!(check_container(name), Ok(()), "{name}");
        }
        for name in ["", "a", "-web", "_web", "/web", "web/1", "wéb"] {
            assert!(check_container(name).is_err(), "{name:?}");
        }
        assert_eq!(check_comment("public web, ticket #42"), Ok(()));
        for text in ["say \"hi\"", "two\nlines", "tab\there"] {
            assert!(check_comment(text).is_err(), "{text:?}");
        }
        assert_eq!(check_comment(&"x".repeat(MAX_COMMENT_BYTES)), Ok(()));
        assert!(check_comment(&"x".repeat(MAX_COMMENT_BYTES + 1)).is_err());
    }

    #[test]
    fn unreadable_file_names_it() {
        let err = Config::load(Path::new("/nonexistent/dockgate.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/dockgate.toml: "),
            "{err}"
        );
    }
}
