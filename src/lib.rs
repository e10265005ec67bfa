//! dockgate: keeps Docker-published ports behind an explicit exposure policy on firewalld hosts.

pub mod docker;
pub mod firewalld;
pub mod inspect;
pub mod logging;
