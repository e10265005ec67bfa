//! The end of Docker's rebuild after a firewalld reload or start, observed rather than guessed.
//!
//! Docker re-creates its rules on firewalld's `Reloaded` (and when firewalld appears on the
//! bus), and its bridges go back into zone docker. Until it is done, two things must wait:
//! binding the bridges to another zone (binding in the middle made Docker 20.10 leave its DNAT
//! out) and putting dockgate's resets back in front of Docker's rules in filter FORWARD
//! (Docker inserts ahead of them). A fixed pause was right for a quick Docker only.
//!
//! Docker 28.1 and later (API 1.49) say when they are done: `FirewallBackend` `ReloadedAt` in
//! `docker info`, set after the last rule (read from moby's source: firewall_linux.go). Older
//! Dockers (20.10, 26) say nothing, and nothing on the bus marks the end: Docker sends its rules
//! through firewalld's untracked passthrough, which emits no signal, and re-adds each bridge to
//! zone docker before that network's rules. There, the kernel is read instead (firewalld's
//! passthrough again): the rebuild is over once Docker's jump to DOCKER-USER is back in
//! FORWARD, a DNAT rule is back for every published IPv4 port, and neither has changed since
//! the look before. Either way, after [`MAX_WAIT`] dockgated goes on without the answer.

use std::time::Duration;

use crate::docker::{DockerApi, PublishedPort};
use crate::firewalld::{Family, Firewall};
use crate::policy::{self, Serving};

/// How often to look while Docker rebuilds.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How long to wait for Docker's rebuild at most: a Docker that is stopped, hung or gone
/// rebuilds nothing.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What can be seen of Docker's rebuild at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Docker's `ReloadedAt` (Unix seconds), where Docker reports it.
    pub reloaded_at: Option<u64>,
    /// filter FORWARD and nat DOCKER (IPv4) as `iptables -S` prints them, where Docker does
    /// not report `ReloadedAt`; None when they could not be read.
    pub rules: Option<String>,
}

/// Whether Docker's rebuild after a reload seen at `since` (Unix seconds) is over, given what
/// is seen now, what the look before saw of the rules, and the ports Docker publishes.
pub fn over(
    observed: &Observed,
    since: u64,
    before: Option<&str>,
    ports: &[PublishedPort],
) -> bool {
    if let Some(at) = observed.reloaded_at {
        // Whole seconds: a rebuild that ended in the second the reload was seen counts, and
        // only one ending in that very second before it could be taken for this one.
        return at >= since;
    }
    let Some(rules) = observed.rules.as_deref() else {
        return false;
    };
    let dnat_back = ports
        .iter()
        .filter(|port| port.host_ip.is_ipv4() && policy::serving(port) == Serving::Dnat)
        .all(|port| {
            rules.lines().any(|line| {
                line.contains("-j DNAT") && line.contains(&format!("--dport {} ", port.host_port))
            })
        });
    rules.contains("-A FORWARD -j DOCKER-USER") && dnat_back && before == Some(rules)
}

/// One look at Docker's rebuild.
pub async fn observe(firewall: &impl Firewall, docker: &impl DockerApi) -> Observed {
    if let Ok(Some(at)) = docker.reloaded_at().await {
        return Observed {
            reloaded_at: Some(at),
            rules: None,
        };
    }
    let rules = async {
        let forward = firewall
            .kernel_chain(Family::Ipv4, "filter", "FORWARD")
            .await?;
        let dnat = firewall.kernel_chain(Family::Ipv4, "nat", "DOCKER").await?;
        Ok::<_, crate::firewalld::FirewalldError>(forward + &dnat)
    }
    .await
    .ok();
    Observed {
        reloaded_at: None,
        rules,
    }
}

/// Waits until Docker's rebuild after a reload at `since` (Unix seconds) is over, or
/// [`MAX_WAIT`]; whether it was seen to end. For `dockgated --once`; the daemon looks between
/// other work (see the scheduler).
pub async fn wait_until_over(
    firewall: &impl Firewall,
    docker: &impl DockerApi,
    since: u64,
    ports: &[PublishedPort],
) -> bool {
    let started = std::time::Instant::now();
    let mut before: Option<String> = None;
    while started.elapsed() < MAX_WAIT {
        tokio::time::sleep(LOOK_EVERY).await;
        let observed = observe(firewall, docker).await;
        if over(&observed, since, before.as_deref(), ports) {
            return true;
        }
        before = observed.rules;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Protocol;
    use crate::testing::published;

    const FORWARD: &str =
        "-P FORWARD ACCEPT\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";
    const DNAT_8080: &str = "-N DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n";

    fn seen(rules: &str) -> Observed {
        Observed {
            reloaded_at: None,
            rules: Some(rules.to_owned()),
        }
    }

    #[test]
    fn docker_that_reports_it_is_over_once_it_reloaded_after_the_reload_was_seen() {
        let done = |at| Observed {
            reloaded_at: Some(at),
            rules: None,
        };
        assert!(!over(&done(99), 100, None, &[]));
        assert!(over(&done(100), 100, None, &[]));
        assert!(over(&done(104), 100, None, &[]));
    }

    #[test]
    fn without_a_report_the_jump_every_dnat_and_a_second_equal_look_are_needed() {
        let ports = [
            published("web", "0.0.0.0", 8080, Protocol::Tcp),
            published("web", "::", 8080, Protocol::Tcp),
        ];
        let all = format!("{FORWARD}{DNAT_8080}");
        assert!(
            !over(&seen(&all), 0, None, &ports),
            "one look is not enough"
        );
        assert!(over(&seen(&all), 0, Some(&all), &ports));
        let changing = format!("{FORWARD}-A FORWARD -o docker0 -j DOCKER\n{DNAT_8080}");
        assert!(!over(&seen(&changing), 0, Some(&all), &ports));
        let no_jump = DNAT_8080.to_owned();
        assert!(!over(&seen(&no_jump), 0, Some(&no_jump), &ports));
        let no_dnat = FORWARD.to_owned();
        assert!(!over(&seen(&no_dnat), 0, Some(&no_dnat), &ports));
        // A port DNATed on another number does not count for 8080 (8080 vs 80800).
        let other = format!("{FORWARD}{}", DNAT_8080.replace("8080 ", "80800 "));
        assert!(!over(&seen(&other), 0, Some(&other), &ports));
        assert!(!over(&Observed::default(), 0, None, &ports), "nothing read");
    }
}
