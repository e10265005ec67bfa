//! dockgate: keeps Docker-published ports behind an explicit exposure policy on firewalld hosts.

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diff;
pub mod docker;
pub mod exposures;
pub mod firewalld;
pub mod inspect;
pub mod logging;
pub mod metrics;
#[cfg(test)]
mod netfilter;
pub mod nflog;
pub mod plan;
pub mod policy;
pub mod rebuild;
pub mod reconcile;
pub mod refused;
pub mod rules;
pub mod scheduler;
pub mod state;
pub mod suggest;
#[cfg(test)]
mod testing;
pub mod zones;
