//! dockgate's own D-Bus API (SPEC §4), `org.dockgate.Dockgate1` on the system bus. Handlers
//! check who is calling (uid 0 passes; everyone else is asked of polkit, with the caller's bus
//! name as the subject), check the arguments, and hand every change to the daemon's one task;
//! a call that changes something returns once the change is in the kernel, or with an error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use zbus::message::{Flags, Header};
use zbus::object_server::SignalEmitter;
use zbus::{OwnedVariant as OwnedValue, Variant as Value};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use crate::config::{Exposure, OnRevoke, PortRange};
use crate::daemon::status::{ExposureRow, Status};
use crate::daemon::{self, Answer, Call, Message};
use crate::exposures::{InvalidArgument, Origin, Request};
use crate::policy::{self, Grant, Reason};

pub const BUS_NAME: &str = "org.dockgate.Dockgate1";
pub const OBJECT_PATH: &str = "/org/dockgate/Dockgate1";
pub const ACTION_READ: &str = "org.dockgate.Dockgate1.read";
pub const ACTION_EXPOSE: &str = "org.dockgate.Dockgate1.expose";
pub const ACTION_ADMIN: &str = "org.dockgate.Dockgate1.admin";
/// Option keys Expose takes.
const OPTION_KEYS: [&str; 2] = ["container", "comment"];

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.dockgate.Dockgate1.Error")]
pub enum ApiError {
    #[zbus(error)]
    ZBus(zbus::Error),
    InvalidArgument(String),
    NotFound(String),
    ReadOnly(String),
    NotAuthorized(String),
    LimitExceeded(String),
    FirewallUnavailable(String),
    DockerUnavailable(String),
    Failed(String),
}

impl From<InvalidArgument> for ApiError {
    fn from(error: InvalidArgument) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}

impl From<daemon::Error> for ApiError {
    fn from(error: daemon::Error) -> Self {
        match error {
            daemon::Error::NotFound(message) => ApiError::NotFound(message),
            daemon::Error::ReadOnly(message) => ApiError::ReadOnly(message),
            daemon::Error::NotAuthorized(message) => ApiError::NotAuthorized(message),
            daemon::Error::LimitExceeded(message) => ApiError::LimitExceeded(message),
            daemon::Error::FirewallUnavailable(message) => ApiError::FirewallUnavailable(message),
            daemon::Error::Failed(message) => ApiError::Failed(message),
        }
    }
}

pub struct Api {
    /// To the daemon's task, which decides every change.
    pub calls: mpsc::Sender<Message>,
    pub status: Arc<Mutex<Status>>,
}

impl Api {
    /// One look at the status without copying all of it (the properties need one field each).
    fn read<T>(&self, look: impl FnOnce(&Status) -> T) -> T {
        look(&self.status.lock().expect("status lock"))
    }

    async fn call(&self, call: Call) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Message::Call(call, reply))
            .await
            .map_err(|_| ApiError::Failed("dockgated is shutting down".to_owned()))?;
        Ok(answer
            .await
            .map_err(|_| ApiError::Failed("dockgated is shutting down".to_owned()))??)
    }

    async fn expose_checked(
        &self,
        port: String,
        sources: Vec<String>,
        ttl_seconds: u64,
        options: HashMap<String, OwnedValue>,
        header: &Header<'_>,
        connection: &zbus::Connection,
    ) -> Result<String, ApiError> {
        // The arguments are checked first, so that polkit rules see them as dockgate
        // understands them ("8080/tcp", sources written canonically).
        if let Some(key) = options
            .keys()
            .find(|key| !OPTION_KEYS.contains(&key.as_str()))
        {
            return Err(ApiError::InvalidArgument(format!(
                "options: unknown key \"{}\" (known: container, comment)",
                key.escape_default().take(64).collect::<String>()
            )));
        }
        let container = option_string(&options, "container")?;
        let comment = option_string(&options, "comment")?;
        let exposure = Request {
            port: &port,
            sources: &sources,
            ttl_seconds,
            container: container.as_deref(),
            comment: comment.as_deref(),
        }
        .check()?;
        let mut details = exposure_details(&exposure);
        details.push(("ttl", ttl_seconds.to_string()));
        // A caller at its own bound is refused before polkit is asked (see Call::Admit).
        let caller = caller_of(connection, header, ACTION_EXPOSE).await?;
        self.call(Call::Admit { uid: caller.uid }).await?;
        let caller = allowed(connection, header, caller, ACTION_EXPOSE, &details).await?;
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            caller = ?header.sender(),
            method = "Expose",
            port = %exposure.port,
            sources = ?sources,
            ttl_seconds,
            container,
            comment,
            "D-Bus call"
        );
        match self
            .call(Call::Expose {
                exposure,
                ttl_seconds,
                uid: caller.uid,
            })
            .await?
        {
            Answer::Id(id) => Ok(id),
            other => Err(ApiError::Failed(format!(
                "dockgated answered {other:?} instead of the new exposure's id"
            ))),
        }
    }

    async fn unexpose_checked(
        &self,
        id: String,
        header: &Header<'_>,
        connection: &zbus::Connection,
    ) -> Result<(), ApiError> {
        if id.len() > 64 {
            return Err(ApiError::InvalidArgument(
                "id: longer than any exposure id".to_owned(),
            ));
        }
        // The exposure as the daemon's task has it: the store decides who owns it and what
        // polkit is told, not a published copy that may be a reconcile behind.
        let found = match self.call(Call::Describe { id: id.clone() }).await {
            Ok(Answer::Exposure(listed)) => Some(listed),
            Ok(_) => None,
            Err(ApiError::NotFound(_)) => None,
            Err(error) => return Err(error),
        };
        let mut details = vec![("id", id.clone())];
        if let Some(listed) = &found {
            details.extend(exposure_details(&listed.exposure));
        }
        // Asked before "no such exposure" is said, so that ids cannot be probed without it.
        let caller = authorize(connection, header, ACTION_EXPOSE, &details).await?;
        let Some(listed) = found else {
            return Err(ApiError::NotFound(format!("no exposure {id}")));
        };
        // Removing someone else's exposure is an admin's call; the owner may always.
        let admin = match listed.origin {
            Origin::Runtime { owner_uid, .. } if owner_uid != caller.uid && caller.uid != 0 => {
                authorize(connection, header, ACTION_ADMIN, &details)
                    .await
                    .map_err(|error| match error {
                        ApiError::NotAuthorized(_) => ApiError::NotAuthorized(format!(
                            "{id} belongs to uid {owner_uid}; removing another user's exposure needs {ACTION_ADMIN}"
                        )),
                        other => other,
                    })?;
                true
            }
            _ => false,
        };
        tracing::info!(uid = caller.uid, pid = caller.pid, caller = ?header.sender(), method = "Unexpose", id, "D-Bus call");
        self.call(Call::Unexpose {
            id,
            uid: caller.uid,
            admin,
        })
        .await
        .map(|_| ())
    }
}

/// How long a refused change (NotAuthorized, LimitExceeded) waits before it is answered: a
/// person refused once hardly notices, and a user flooding the API with calls that cannot
/// succeed gets no faster than that (measured: 1000 refused Expose calls from one connection
/// took 0.5 s of both cores without it).
const REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

async fn refused_slowly<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    if matches!(
        result,
        Err(ApiError::NotAuthorized(_) | ApiError::LimitExceeded(_))
    ) {
        tokio::time::sleep(REFUSAL_PAUSE).await;
    }
    result
}

/// Who called, as the bus daemon vouches for it: for the log of every change.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: u32,
    /// None on a bus that does not know the peer's process (not the system bus).
    pid: Option<u32>,
}

/// Who is calling, as the bus daemon vouches for it.
async fn caller_of(
    connection: &zbus::Connection,
    header: &Header<'_>,
    action: &str,
) -> Result<Caller, ApiError> {
    let sender = header
        .sender()
        .ok_or_else(|| ApiError::NotAuthorized(format!("{action}: a call without a sender")))?;
    let dbus = zbus::fdo::DBusProxy::new(connection).await?;
    let credentials = dbus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(zbus::Error::from)?;
    let uid = credentials.unix_user_id().ok_or_else(|| {
        ApiError::NotAuthorized(format!("{action}: the bus does not know the caller's uid"))
    })?;
    Ok(Caller {
        uid,
        pid: credentials.process_id(),
    })
}

/// What polkit says of `action` for the caller: the caller's bus name is the subject (never
/// dockgated's own pid), interactive only when asked for.
async fn ask_polkit(
    connection: &zbus::Connection,
    header: &Header<'_>,
    action: &str,
    details: &Details,
    interactive: bool,
) -> Result<zbus_polkit::policykit1::AuthorizationResult, ApiError> {
    let subject = Subject::new_for_message_header(header)
        .map_err(|error| ApiError::NotAuthorized(format!("{action}: {error}")))?;
    let flags = if interactive {
        CheckAuthorizationFlags::ALLOW_USER_INTERACTION
    } else {
        CheckAuthorizationFlags::empty()
    };
    let authority = AuthorityProxy::new(connection).await?;
    let details: HashMap<&str, &str> = details
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    authority
        .check_authorization(&subject, action, &details, flags, "")
        .await
        .map_err(|error| ApiError::NotAuthorized(format!("{action}: polkit: {error}")))
}

/// What a call asks for, as polkit details (`action.lookup("port")` in a rule): `port`,
/// `sources` (comma-joined), `ttl` (seconds, "0" = until removed), `container`, `id`.
type Details = Vec<(&'static str, String)>;

/// The details of an exposure: what Expose asks for, and what Unexpose would take away.
fn exposure_details(exposure: &Exposure) -> Details {
    let mut details = vec![
        ("port", exposure.port.to_string()),
        (
            "sources",
            exposure
                .from
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    if let Some(container) = &exposure.container {
        details.push(("container", container.clone()));
    }
    details
}

/// The caller, once it may do `action`: uid 0 always may; anyone else is asked of polkit,
/// with the call's details, interactively when the call allows it.
async fn authorize(
    connection: &zbus::Connection,
    header: &Header<'_>,
    action: &str,
    details: &Details,
) -> Result<Caller, ApiError> {
    let caller = caller_of(connection, header, action).await?;
    allowed(connection, header, caller, action, details).await
}

/// `caller`, once polkit says it may do `action` (uid 0 always may).
async fn allowed(
    connection: &zbus::Connection,
    header: &Header<'_>,
    caller: Caller,
    action: &str,
    details: &Details,
) -> Result<Caller, ApiError> {
    if caller.uid == 0 {
        return Ok(caller);
    }
    let interactive = header
        .primary()
        .flags()
        .contains(Flags::ALLOW_INTERACTIVE_AUTH);
    if ask_polkit(connection, header, action, details, interactive)
        .await?
        .is_authorized
    {
        Ok(caller)
    } else {
        Err(ApiError::NotAuthorized(format!(
            "uid {} is not authorized for {action}",
            caller.uid
        )))
    }
}

/// The name of a runtime exposure's owner as the host's user database has it ("" for the
/// config's, "uid N" for a uid without a name).
fn owner_name(origin: &Origin) -> String {
    match origin {
        Origin::Config => String::new(),
        Origin::Runtime { owner_uid, .. } => {
            match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*owner_uid)) {
                Ok(Some(user)) => user.name,
                _ => format!("uid {owner_uid}"),
            }
        }
    }
}

fn value<'a>(value: impl Into<Value<'a>>) -> OwnedValue {
    value
        .into()
        .try_to_owned()
        .expect("plain values have no file descriptors")
}

fn option_string(
    options: &HashMap<String, OwnedValue>,
    key: &str,
) -> Result<Option<String>, ApiError> {
    match options.get(key) {
        None => Ok(None),
        Some(found) => String::try_from(found.clone()).map(Some).map_err(|_| {
            ApiError::InvalidArgument(format!(
                "options.{key}: must be a string (s), got {}",
                found.value_signature()
            ))
        }),
    }
}

#[zbus::interface(name = "org.dockgate.Dockgate1")]
impl Api {
    /// Every port Docker publishes, with what dockgate lets through to it.
    #[zbus(out_args("ports"))]
    async fn list_ports(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<HashMap<String, OwnedValue>>, ApiError> {
        authorize(connection, &header, ACTION_READ, &Details::new()).await?;
        Ok(self
            .read(Status::port_rows)
            .into_iter()
            .map(|row| {
                let port = row.port;
                HashMap::from([
                    ("container".to_owned(), value(port.container.clone())),
                    ("container_id".to_owned(), value(port.container_id.clone())),
                    ("host_ip".to_owned(), value(port.host_ip.to_string())),
                    ("host_port".to_owned(), value(port.host_port)),
                    ("protocol".to_owned(), value(port.protocol.to_string())),
                    ("container_port".to_owned(), value(port.container_port)),
                    ("state".to_owned(), value(row.access.state.as_str())),
                    ("sources".to_owned(), value(row.access.sources)),
                    ("loopback_only".to_owned(), value(port.is_loopback_only())),
                    ("judged_by".to_owned(), value(row.access.judged_by)),
                    ("audited".to_owned(), value(row.access.audited)),
                ])
            })
            .collect())
    }

    /// The connections from outside refused (or, auditing, that "deny" would refuse) since
    /// `since` (unix seconds), per host port, protocol and source.
    #[zbus(out_args("refused"))]
    async fn list_refused(
        &self,
        since: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<HashMap<String, OwnedValue>>, ApiError> {
        authorize(connection, &header, ACTION_READ, &Details::new()).await?;
        let Answer::Refused(entries) = self.call(Call::ListRefused { since }).await? else {
            return Err(ApiError::Failed("unexpected answer".to_owned()));
        };
        Ok(entries
            .into_iter()
            .map(|entry| {
                HashMap::from([
                    ("port".to_owned(), value(entry.port)),
                    ("protocol".to_owned(), value(entry.protocol.to_string())),
                    ("source".to_owned(), value(entry.source.to_string())),
                    ("count".to_owned(), value(entry.count)),
                    ("first_seen".to_owned(), value(entry.first_seen)),
                    ("last_seen".to_owned(), value(entry.last_seen)),
                    ("would_be".to_owned(), value(entry.would_be)),
                ])
            })
            .collect())
    }

    #[zbus(out_args("exposures"))]
    async fn list_exposures(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<HashMap<String, OwnedValue>>, ApiError> {
        authorize(connection, &header, ACTION_READ, &Details::new()).await?;
        Ok(self
            .read(Status::exposure_rows)
            .into_iter()
            .map(|ExposureRow { listed, active }| {
                let exposure = listed.exposure;
                let sources: Vec<String> = exposure.from.iter().map(|s| s.to_string()).collect();
                let (owner_uid, expires_at) = match listed.origin {
                    Origin::Config => (0, 0),
                    Origin::Runtime {
                        owner_uid,
                        expires_at,
                    } => (owner_uid, expires_at),
                };
                HashMap::from([
                    ("id".to_owned(), value(listed.id)),
                    ("port".to_owned(), value(exposure.port.to_string())),
                    (
                        "protocol".to_owned(),
                        value(exposure.port.protocol.to_string()),
                    ),
                    (
                        "container".to_owned(),
                        value(exposure.container.unwrap_or_default()),
                    ),
                    ("sources".to_owned(), value(sources)),
                    ("origin".to_owned(), value(listed.origin.as_str())),
                    ("expires_at".to_owned(), value(expires_at)),
                    (
                        "comment".to_owned(),
                        value(exposure.comment.unwrap_or_default()),
                    ),
                    ("owner_uid".to_owned(), value(owner_uid)),
                    ("owner".to_owned(), value(owner_name(&listed.origin))),
                    ("active".to_owned(), value(active)),
                ])
            })
            .collect())
    }

    #[zbus(out_args("id"))]
    async fn expose(
        &self,
        port: String,
        sources: Vec<String>,
        ttl_seconds: u64,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<String, ApiError> {
        refused_slowly(
            self.expose_checked(port, sources, ttl_seconds, options, &header, connection)
                .await,
        )
        .await
    }

    async fn unexpose(
        &self,
        id: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(), ApiError> {
        refused_slowly(self.unexpose_checked(id, &header, connection).await).await
    }

    /// Would a new connection from `source` to host port `port` ("8080/tcp") get through?
    #[zbus(out_args("allowed", "reason"))]
    async fn explain(
        &self,
        source: String,
        port: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(bool, String), ApiError> {
        authorize(connection, &header, ACTION_READ, &Details::new()).await?;
        let address: IpAddr = source.parse().map_err(|_| {
            ApiError::InvalidArgument(format!(
                "source: \"{}\" is not an IPv4 or IPv6 address",
                source.escape_default().take(64).collect::<String>()
            ))
        })?;
        let port: PortRange = Request {
            port: &port,
            sources: &["any".to_owned()],
            ..Request::default()
        }
        .check()?
        .port;
        let judgement = self.read(|status| {
            policy::explain(
                &status.policy(),
                status.host_zones.as_ref(),
                &status.ports,
                address,
                port,
            )
        });
        let (cut, strict) = self.read(|status| {
            (
                status.config.on_revoke == OnRevoke::Cut,
                status
                    .host_zones
                    .as_ref()
                    .is_some_and(|zones| zones.strict_forward_ports),
            )
        });
        let mut reason = judgement.reason.to_string();
        if cut
            && let Reason::Granted {
                grant: Grant::Exposure(_),
                ..
            } = judgement.reason
        {
            reason += "; on_revoke = cut: its connections end when it is removed or expires";
        }
        if strict
            && matches!(
                judgement.reason,
                Reason::Granted { .. } | Reason::DefaultAllow | Reason::Audited { .. }
            )
        {
            reason += "; firewalld's StrictForwardPorts=yes lets Docker's forwarding of it \
                       through by a forward-port";
        }
        Ok((judgement.allowed, reason))
    }

    async fn reconcile(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(), ApiError> {
        let caller = authorize(connection, &header, ACTION_ADMIN, &Details::new()).await?;
        tracing::info!(uid = caller.uid, pid = caller.pid, caller = ?header.sender(), method = "Reconcile", "D-Bus call");
        self.call(Call::Reconcile { uid: caller.uid })
            .await
            .map(|_| ())
    }

    async fn reload_config(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(), ApiError> {
        let caller = authorize(connection, &header, ACTION_ADMIN, &Details::new()).await?;
        tracing::info!(uid = caller.uid, pid = caller.pid, caller = ?header.sender(), method = "ReloadConfig", "D-Bus call");
        self.call(Call::ReloadConfig { uid: caller.uid })
            .await
            .map(|_| ())
    }

    /// What the caller may do, for each action ("read", "expose", "admin"): "yes", "auth"
    /// (polkit would ask for a password) or "no". Asks polkit without interaction, so a GUI
    /// can show its buttons honestly; anyone may ask.
    #[zbus(out_args("permissions"))]
    async fn permissions(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<HashMap<String, String>, ApiError> {
        let caller = caller_of(connection, &header, "Permissions").await?;
        let mut answers = HashMap::new();
        for (name, action) in [
            ("read", ACTION_READ),
            ("expose", ACTION_EXPOSE),
            ("admin", ACTION_ADMIN),
        ] {
            let answer = if caller.uid == 0 {
                "yes"
            } else {
                let result =
                    ask_polkit(connection, &header, action, &Details::new(), false).await?;
                if result.is_authorized {
                    "yes"
                } else if result.is_challenge {
                    "auth"
                } else {
                    "no"
                }
            };
            answers.insert(name.to_owned(), answer.to_owned());
        }
        Ok(answers)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn firewalld_connected(&self) -> bool {
        self.read(|status| status.firewalld_connected)
    }

    #[zbus(property)]
    fn docker_connected(&self) -> bool {
        self.read(|status| status.docker_connected)
    }

    #[zbus(property)]
    fn default(&self) -> String {
        self.read(|status| status.config.default.to_string())
    }

    #[zbus(property)]
    fn verdict(&self) -> String {
        self.read(|status| status.config.verdict.to_string())
    }

    /// "keep" or "cut": whether removing or expiring an exposure ends the connections it
    /// admitted.
    #[zbus(property)]
    fn on_revoke(&self) -> String {
        self.read(|status| status.config.on_revoke.to_string())
    }

    /// firewalld's StrictForwardPorts (2.3 and later): where it is on, dockgate keeps a
    /// forward-port for each published port its policy lets some source reach.
    #[zbus(property)]
    fn strict_forward_ports(&self) -> bool {
        self.read(|status| {
            status
                .host_zones
                .as_ref()
                .is_some_and(|zones| zones.strict_forward_ports)
        })
    }

    #[zbus(property)]
    fn bridge_zone(&self) -> String {
        self.read(|status| status.bridge_zone.clone())
    }

    #[zbus(property)]
    fn rule_count(&self) -> u32 {
        self.read(|status| status.rule_count)
    }

    #[zbus(property)]
    fn last_reconcile(&self) -> u64 {
        self.read(|status| status.last_reconcile)
    }

    /// How long the last reconcile took, in microseconds, for those who poll (`dockgatectl
    /// metrics`). Not announced: the Reconciled signal carries each duration to listeners.
    #[zbus(property(emits_changed_signal = "false"))]
    fn last_reconcile_duration(&self) -> u64 {
        self.read(|status| status.last_reconcile_duration_us)
    }

    #[zbus(signal)]
    pub async fn exposures_changed(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The published ports, or who may reach them, changed: ListPorts answers differently.
    #[zbus(signal)]
    pub async fn ports_changed(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The refused-connections table changed (at most once a second); no addresses in it.
    #[zbus(signal)]
    pub async fn refused_changed(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn reconciled(
        emitter: &SignalEmitter<'_>,
        trigger: &str,
        rules: u32,
        duration_us: u64,
    ) -> zbus::Result<()>;
}

/// The client side of the API, for dockgatectl. Changing calls may ask for interactive
/// authorization (a polkit agent prompt).
#[zbus::proxy(
    interface = "org.dockgate.Dockgate1",
    default_service = "org.dockgate.Dockgate1",
    default_path = "/org/dockgate/Dockgate1"
)]
pub trait Dockgate1 {
    #[zbus(allow_interactive_auth)]
    fn list_ports(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    #[zbus(allow_interactive_auth)]
    fn list_exposures(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    #[zbus(allow_interactive_auth)]
    fn list_refused(&self, since: u64) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    #[zbus(allow_interactive_auth)]
    fn expose(
        &self,
        port: &str,
        sources: &[&str],
        ttl_seconds: u64,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<String>;

    #[zbus(allow_interactive_auth)]
    fn unexpose(&self, id: &str) -> zbus::Result<()>;

    #[zbus(allow_interactive_auth)]
    fn explain(&self, source: &str, port: &str) -> zbus::Result<(bool, String)>;

    #[zbus(allow_interactive_auth)]
    fn reconcile(&self) -> zbus::Result<()>;

    #[zbus(allow_interactive_auth)]
    fn reload_config(&self) -> zbus::Result<()>;

    fn permissions(&self) -> zbus::Result<HashMap<String, String>>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn firewalld_connected(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn docker_connected(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn default(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn verdict(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn on_revoke(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn strict_forward_ports(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn bridge_zone(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn rule_count(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn last_reconcile(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn last_reconcile_duration(&self) -> zbus::Result<u64>;
}
