//! The vocabulary shared by the rule plan and the firewalld client: direct chains and rules
//! as firewalld's direct interface names them. Plain data, no I/O.

use std::fmt;

use serde::Serialize;

/// Address family of a direct rule, spelled as firewalld's `ipv` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// Whether traffic to this address is judged by rules of this family.
    pub fn matches(self, address: std::net::IpAddr) -> bool {
        match self {
            Family::Ipv4 => address.is_ipv4(),
            Family::Ipv6 => address.is_ipv6(),
        }
    }

    /// From firewalld's `ipv` argument; None for families dockgate does not manage ("eb").
    pub fn from_ipv(ipv: &str) -> Option<Self> {
        match ipv {
            "ipv4" => Some(Family::Ipv4),
            "ipv6" => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chain registered with firewalld's direct interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DirectChain {
    pub family: Family,
    pub table: String,
    pub chain: String,
}

impl DirectChain {
    pub fn new(family: Family, table: &str, chain: &str) -> Self {
        Self {
            family,
            table: table.to_owned(),
            chain: chain.to_owned(),
        }
    }
}

/// One direct rule: iptables arguments placed in a chain at a priority (lower goes first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DirectRule {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub priority: i32,
    pub args: Vec<String>,
}

impl DirectRule {
    /// The text of the rule's `-m comment --comment TEXT`, if it has one.
    pub fn comment(&self) -> Option<&str> {
        self.args
            .windows(2)
            .find(|pair| pair[0] == "--comment")
            .map(|pair| pair[1].as_str())
    }
}

impl fmt::Display for DirectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.family,
            self.table,
            self.chain,
            self.priority,
            self.args.join(" ")
        )
    }
}
