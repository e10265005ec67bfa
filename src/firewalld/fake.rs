//! An in-memory firewalld for unit tests of the applier: both direct layers, CleanupOnExit,
//! zone docker and the bridges' zones, with firewalld's own rules for them (a reload puts the
//! permanent layer into the runtime one; adding what is there, or removing what is not, is
//! refused). It also knows firewalld 2.x's trap: the first runtime direct call while it holds
//! no direct configuration flushes Docker's rules. After every call that changes something,
//! the test's check runs on the new state, so an order of calls that opens a window for a
//! single call is caught. It adds speed to the sandbox tests; it does not replace them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::policy::HostZones;

use super::{
    ActiveZone, DirectChain, DirectRule, ErrorCode, Family, Firewall, FirewalldError, ForwardPort,
    Layer, PermanentDirect, Result, ZoneAccess, ZoneSettings,
};

#[derive(Debug, Clone, Default)]
pub struct State {
    pub major: u32,
    pub running: bool,
    pub runtime_chains: Vec<DirectChain>,
    /// In the order they were added, as firewalld keeps them.
    pub runtime_rules: Vec<DirectRule>,
    pub permanent_chains: Vec<DirectChain>,
    pub permanent_rules: Vec<DirectRule>,
    pub cleanup_on_exit: String,
    /// Zone docker, permanent and runtime, when it exists.
    pub docker_zone: Option<(ZoneSettings, ZoneSettings)>,
    pub policies: BTreeSet<String>,
    pub active: BTreeMap<String, ActiveZone>,
    /// Every call that changed something, in order.
    pub calls: Vec<String>,
    pub reloads: usize,
    /// firewalld 2.x flushed every iptables table, Docker's rules included.
    pub flushed_docker: bool,
    /// firewalld >= 2.3's StrictForwardPorts.
    pub strict_forward_ports: bool,
    /// Forward-ports of zone public, runtime and permanent.
    pub forward_ports: (Vec<ForwardPort>, Vec<ForwardPort>),
    /// What `iptables -S` prints of a chain, by "family table chain" (none: it is empty).
    pub kernel: BTreeMap<String, String>,
}

type Check = Box<dyn Fn(&State)>;

pub struct Fake {
    pub state: RefCell<State>,
    check: RefCell<Option<Check>>,
}

impl Fake {
    /// A running firewalld of this major version with zone docker as Docker makes it (target
    /// ACCEPT, docker0 in it) and CleanupOnExit=yes.
    pub fn new(major: u32) -> Fake {
        let docker = ZoneSettings {
            target: "ACCEPT".to_owned(),
            services: vec![],
            ports: vec![],
            interfaces: vec!["docker0".to_owned()],
        };
        Fake {
            state: RefCell::new(State {
                major,
                running: true,
                cleanup_on_exit: "yes".to_owned(),
                docker_zone: Some((docker.clone(), docker)),
                active: BTreeMap::from([(
                    "docker".to_owned(),
                    ActiveZone {
                        interfaces: vec!["docker0".to_owned()],
                        sources: vec![],
                    },
                )]),
                ..State::default()
            }),
            check: RefCell::new(None),
        }
    }

    /// Runs `check` after every call that changes something, from now on.
    pub fn check_each_call(&self, check: impl Fn(&State) + 'static) {
        *self.check.borrow_mut() = Some(Box::new(check));
    }

    fn changed(&self, call: String, change: impl FnOnce(&mut State) -> Result<()>) -> Result<()> {
        let mut state = self.state.borrow_mut();
        change(&mut state)?;
        state.calls.push(call);
        let state = state.clone();
        if let Some(check) = self.check.borrow().as_ref() {
            check(&state);
        }
        Ok(())
    }
}

fn refused(code: ErrorCode) -> FirewalldError {
    FirewalldError::Refused {
        code,
        detail: String::new(),
    }
}

/// firewalld 2.x: a runtime direct add while no direct configuration exists flushes every
/// iptables table.
fn trap(state: &mut State) {
    if state.major >= 2 && state.runtime_chains.is_empty() && state.runtime_rules.is_empty() {
        state.flushed_docker = true;
    }
}

impl Firewall for Fake {
    async fn is_running(&self) -> Result<bool> {
        Ok(self.state.borrow().running)
    }

    async fn major_version(&self) -> Result<u32> {
        Ok(self.state.borrow().major)
    }

    async fn chains(&self, layer: Layer) -> Result<Vec<DirectChain>> {
        let state = self.state.borrow();
        Ok(match layer {
            Layer::Runtime => state.runtime_chains.clone(),
            Layer::Permanent => state.permanent_chains.clone(),
        })
    }

    async fn rules(&self, layer: Layer) -> Result<Vec<DirectRule>> {
        let state = self.state.borrow();
        Ok(match layer {
            Layer::Runtime => state.runtime_rules.clone(),
            Layer::Permanent => state.permanent_rules.clone(),
        })
    }

    async fn add_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()> {
        self.changed(format!("add chain {layer:?} {}", chain.chain), |state| {
            if layer == Layer::Runtime {
                trap(state);
            }
            let chains = match layer {
                Layer::Runtime => &mut state.runtime_chains,
                Layer::Permanent => &mut state.permanent_chains,
            };
            if chains.contains(chain) {
                return Err(refused(ErrorCode::AlreadyEnabled));
            }
            chains.push(chain.clone());
            Ok(())
        })
    }

    async fn remove_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()> {
        self.changed(format!("remove chain {layer:?} {}", chain.chain), |state| {
            let chains = match layer {
                Layer::Runtime => &mut state.runtime_chains,
                Layer::Permanent => &mut state.permanent_chains,
            };
            let before = chains.len();
            chains.retain(|existing| existing != chain);
            if chains.len() == before {
                return Err(refused(ErrorCode::NotEnabled));
            }
            Ok(())
        })
    }

    async fn add_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()> {
        self.changed(format!("add rule {layer:?} {rule}"), |state| {
            if layer == Layer::Runtime {
                trap(state);
            }
            let rules = match layer {
                Layer::Runtime => &mut state.runtime_rules,
                Layer::Permanent => &mut state.permanent_rules,
            };
            if rules.contains(rule) {
                return Err(refused(ErrorCode::AlreadyEnabled));
            }
            rules.push(rule.clone());
            Ok(())
        })
    }

    async fn remove_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()> {
        self.changed(format!("remove rule {layer:?} {rule}"), |state| {
            let rules = match layer {
                Layer::Runtime => &mut state.runtime_rules,
                Layer::Permanent => &mut state.permanent_rules,
            };
            let before = rules.len();
            rules.retain(|existing| existing != rule);
            if rules.len() == before {
                return Err(refused(ErrorCode::NotEnabled));
            }
            Ok(())
        })
    }

    async fn permanent_direct(&self) -> Result<PermanentDirect> {
        let state = self.state.borrow();
        Ok(PermanentDirect::for_tests(
            state.permanent_chains.clone(),
            state.permanent_rules.clone(),
        ))
    }

    async fn set_permanent_direct(&self, settings: &PermanentDirect) -> Result<()> {
        self.changed("set permanent direct".to_owned(), |state| {
            state.permanent_chains = settings.chains.clone();
            state.permanent_rules = settings.rules.clone();
            Ok(())
        })
    }

    async fn reload_and_wait(&self) -> Result<()> {
        self.changed("reload".to_owned(), |state| {
            state.runtime_chains = state.permanent_chains.clone();
            state.runtime_rules = state.permanent_rules.clone();
            state.forward_ports.0 = state.forward_ports.1.clone();
            if let Some((permanent, runtime)) = &mut state.docker_zone {
                *runtime = permanent.clone();
            }
            state.reloads += 1;
            Ok(())
        })
    }

    async fn cleanup_on_exit(&self) -> Result<String> {
        Ok(self.state.borrow().cleanup_on_exit.clone())
    }

    async fn set_cleanup_on_exit(&self, value: &str) -> Result<()> {
        self.changed(format!("CleanupOnExit={value}"), |state| {
            state.cleanup_on_exit = value.to_owned();
            Ok(())
        })
    }

    async fn zone_exists(&self, zone: &str) -> Result<bool> {
        Ok(zone == "docker" && self.state.borrow().docker_zone.is_some())
    }

    async fn zone_settings(&self, layer: Layer, _zone: &str) -> Result<ZoneSettings> {
        let state = self.state.borrow();
        let (permanent, runtime) = state
            .docker_zone
            .as_ref()
            .ok_or_else(|| refused(ErrorCode::InvalidZone))?;
        Ok(match layer {
            Layer::Runtime => runtime.clone(),
            Layer::Permanent => permanent.clone(),
        })
    }

    async fn set_zone_access(&self, layer: Layer, zone: &str, access: &ZoneAccess) -> Result<()> {
        self.changed(format!("set zone {zone} {layer:?} {access:?}"), |state| {
            let (permanent, runtime) = state
                .docker_zone
                .as_mut()
                .ok_or_else(|| refused(ErrorCode::InvalidZone))?;
            let settings = match layer {
                Layer::Runtime => runtime,
                Layer::Permanent => permanent,
            };
            if let (Some(target), Layer::Permanent) = (&access.target, layer) {
                settings.target = target.clone();
            }
            if let Some(services) = &access.services {
                settings.services = services.clone();
            }
            if let Some(ports) = &access.ports {
                settings.ports = ports.clone();
            }
            Ok(())
        })
    }

    async fn policy_exists(&self, name: &str) -> Result<bool> {
        Ok(self.state.borrow().policies.contains(name))
    }

    async fn add_accept_policy(
        &self,
        name: &str,
        _description: &str,
        _ingress: &str,
        _egress: &str,
    ) -> Result<()> {
        self.changed(format!("add policy {name}"), |state| {
            state.policies.insert(name.to_owned());
            Ok(())
        })
    }

    async fn remove_policy(&self, name: &str) -> Result<()> {
        self.changed(format!("remove policy {name}"), |state| {
            state.policies.remove(name);
            Ok(())
        })
    }

    async fn active_zones(&self) -> Result<BTreeMap<String, ActiveZone>> {
        Ok(self.state.borrow().active.clone())
    }

    async fn strict_forward_ports(&self) -> Result<bool> {
        Ok(self.state.borrow().strict_forward_ports)
    }

    async fn outside_zone(&self, _external_interfaces: &[String]) -> Result<String> {
        Ok("public".to_owned())
    }

    async fn forward_ports(&self, layer: Layer, _zone: &str) -> Result<Vec<ForwardPort>> {
        let state = self.state.borrow();
        Ok(match layer {
            Layer::Runtime => state.forward_ports.0.clone(),
            Layer::Permanent => state.forward_ports.1.clone(),
        })
    }

    async fn add_forward_port(&self, layer: Layer, zone: &str, port: &ForwardPort) -> Result<()> {
        self.changed(
            format!("add forward-port {layer:?} {zone} {port:?}"),
            |state| {
                let ports = match layer {
                    Layer::Runtime => &mut state.forward_ports.0,
                    Layer::Permanent => &mut state.forward_ports.1,
                };
                if ports.contains(port) {
                    return Err(refused(ErrorCode::AlreadyEnabled));
                }
                ports.push(port.clone());
                Ok(())
            },
        )
    }

    async fn remove_forward_port(
        &self,
        layer: Layer,
        zone: &str,
        port: &ForwardPort,
    ) -> Result<()> {
        self.changed(
            format!("remove forward-port {layer:?} {zone} {port:?}"),
            |state| {
                let ports = match layer {
                    Layer::Runtime => &mut state.forward_ports.0,
                    Layer::Permanent => &mut state.forward_ports.1,
                };
                let before = ports.len();
                ports.retain(|existing| existing != port);
                if ports.len() == before {
                    return Err(refused(ErrorCode::NotEnabled));
                }
                Ok(())
            },
        )
    }

    async fn kernel_chain(&self, family: Family, table: &str, chain: &str) -> Result<String> {
        let state = self.state.borrow();
        if !state.running {
            return Err(FirewalldError::NotRunning);
        }
        Ok(state
            .kernel
            .get(&format!("{family} {table} {chain}"))
            .cloned()
            .unwrap_or_default())
    }

    async fn host_zones(&self) -> Result<HostZones> {
        let state = self.state.borrow();
        if !state.running {
            return Err(FirewalldError::NotRunning);
        }
        Ok(HostZones {
            default_zone: "public".to_owned(),
            ..HostZones::default()
        })
    }

    async fn change_zone_of_interface(&self, zone: &str, interface: &str) -> Result<()> {
        self.changed(format!("move {interface} to {zone}"), |state| {
            for bindings in state.active.values_mut() {
                bindings.interfaces.retain(|existing| existing != interface);
            }
            state
                .active
                .entry(zone.to_owned())
                .or_default()
                .interfaces
                .push(interface.to_owned());
            Ok(())
        })
    }
}
