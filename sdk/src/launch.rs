//! The launch config: what the host hands the guest agent at boot.
//!
//! Everything here comes from the untrusted host. The agent parses it
//! strictly ([`LaunchConfig::parse`]: size cap, unknown fields rejected,
//! [`LaunchConfig::validate`]), measures it into RTMR3 as the first event of
//! the event log ([`crate::eventlog::Event::Config`]) and only then acts on
//! it, so a verifier sees exactly which repo, endpoint and network the agent
//! was told to use.
//!
//! There is deliberately no simulation switch: whether a platform is simulated
//! is a build-time property of the guest, never something the host chooses.
//!
//! Example (the optional fields show their defaults):
//!
//! ```json
//! {"version": 1, "repo": "owner/name", "endpoint": "https://app.example.com",
//!  "github_api_url": "https://api.github.com", "network": {"mode": "dhcp"},
//!  "agent_port": 8443, "forwarded_ports": [], "tsm": {"legacy_extend_ioctl": false},
//!  "oidc": {"issuer": "https://token.actions.githubusercontent.com",
//!           "allowed_refs": [], "allowed_environments": []}}
//! ```
//!
//! `oidc` is left out of the canonical JSON while it has its default value,
//! so configs written before it existed keep their measurement.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The launch config format version this build reads and writes.
pub const LAUNCH_CONFIG_VERSION: u32 = 1;

/// The channel: QEMU's fw_cfg file of this name
/// (`-fw_cfg name=opt/easyenclave/launch.json,file=...`). Not the kernel
/// command line, which RTMR2 measures: the image's measurements must not
/// depend on per-host configuration.
pub const FW_CFG_NAME: &str = "opt/easyenclave/launch.json";

/// Where the guest kernel's `qemu_fw_cfg` driver exposes [`FW_CFG_NAME`].
pub const FW_CFG_GUEST_PATH: &str =
    "/sys/firmware/qemu_fw_cfg/by_name/opt/easyenclave/launch.json/raw";
/// Largest launch config accepted by [`LaunchConfig::parse`].
pub const MAX_LAUNCH_CONFIG_BYTES: usize = 64 * 1024;
/// GitHub's public REST API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// The issuer of GitHub.com's Actions OIDC tokens (`easyenclave::oidc::DEFAULT_ISSUER`).
pub const DEFAULT_OIDC_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Most entries in `oidc.allowed_refs` or `oidc.allowed_environments`.
pub const MAX_OIDC_ALLOWED: usize = 64;
/// Longest allowed ref or environment name.
pub const MAX_OIDC_NAME_LEN: usize = 255;
/// The port the agent API (RA-TLS) listens on unless told otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 8443;
/// Most forwarded service ports a config may list.
pub const MAX_FORWARDED_PORTS: usize = 64;
/// Most DNS servers: the resolver reads at most three (glibc/musl `MAXNS`).
pub const MAX_DNS_SERVERS: usize = 3;
/// Longest URL accepted in any field.
pub const MAX_URL_LEN: usize = 2048;

/// Host-supplied configuration of the guest agent (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Format version, [`LAUNCH_CONFIG_VERSION`].
    pub version: u32,
    /// The GitHub repository (`owner/name`) the agent serves and deploys from.
    pub repo: String,
    /// Where the service is reachable: `https://host[:port][/path]` or `host:port`.
    pub endpoint: String,
    /// Control plane the agent registers with (`https://` or, for tests, `http://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_url: Option<String>,
    /// GitHub REST API base URL: github.com, a GitHub Enterprise Server or a
    /// test server. `http://` is accepted for test servers; the value is
    /// measured, so a deployer must refuse to send a token to an agent whose
    /// measured GitHub API URL is not `https://`.
    #[serde(default = "default_github_api_url")]
    pub github_api_url: String,
    /// How the guest configures its network interface.
    #[serde(default)]
    pub network: Network,
    /// TCP port of the agent API inside the guest.
    #[serde(default = "default_agent_port")]
    pub agent_port: u16,
    /// Service ports the host forwards into the guest.
    #[serde(default)]
    pub forwarded_ports: Vec<ForwardedPort>,
    /// Identifier of the image the host booted (matches the allowlist's `image_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// How the guest talks to the TDX module.
    #[serde(default)]
    pub tsm: TsmOptions,
    /// Which GitHub Actions OIDC tokens may authorise a deploy.
    #[serde(default, skip_serializing_if = "OidcPolicy::is_default")]
    pub oidc: OidcPolicy,
}

/// Which GitHub Actions OIDC tokens the agent accepts as deploy credentials
/// (see `easyenclave::oidc`, feature `oidc`). Measured with the rest of the
/// config: the issuer decides whose signatures authorise a deploy, so a
/// deployer compares it with the issuer it expects before sending anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcPolicy {
    /// The token issuer (its `iss`), whose keys are at
    /// `<issuer>/.well-known/jwks`: GitHub.com's by default, a GitHub
    /// Enterprise Server's `https://HOST/_services/token`, or a test server.
    #[serde(default = "default_oidc_issuer")]
    pub issuer: String,
    /// When not empty, the token's `ref` must be one of these
    /// (`refs/heads/main`, `refs/tags/v1`, ...).
    #[serde(default)]
    pub allowed_refs: Vec<String>,
    /// When not empty, the token's `environment` must be one of these: with
    /// GitHub's environment protection rules, only approved jobs deploy.
    #[serde(default)]
    pub allowed_environments: Vec<String>,
}

impl Default for OidcPolicy {
    fn default() -> Self {
        OidcPolicy {
            issuer: default_oidc_issuer(),
            allowed_refs: Vec::new(),
            allowed_environments: Vec::new(),
        }
    }
}

impl OidcPolicy {
    /// True for the default policy (GitHub.com's issuer, no restrictions).
    pub fn is_default(&self) -> bool {
        *self == OidcPolicy::default()
    }
}

/// Network configuration of the guest's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Network {
    /// Address from DHCP. A struct variant (not a unit one) so that extra
    /// fields are rejected rather than silently ignored.
    Dhcp {},
    /// Fixed address, gateway and DNS servers.
    Static(StaticNetwork),
}

impl Default for Network {
    fn default() -> Self {
        Network::Dhcp {}
    }
}

/// A static IPv4 configuration, as text; [`StaticNetwork::addressing`] parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNetwork {
    /// Interface address with prefix length, e.g. `10.0.2.15/24`.
    pub address: String,
    /// Default gateway, e.g. `10.0.2.2`.
    pub gateway: String,
    /// DNS servers (1 to [`MAX_DNS_SERVERS`]).
    pub dns: Vec<String>,
}

/// A parsed [`StaticNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Addressing {
    /// Interface address.
    pub address: Ipv4Addr,
    /// Prefix length, 1..=32.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
}

/// One service port the host forwards into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedPort {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the guest.
    pub guest_port: u16,
}

/// Transport protocol of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Options for the guest's TSM (quote and RTMR) access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsmOptions {
    /// Fall back to the never-upstreamed `TDX_CMD_EXTEND_RTMR` ioctl when the
    /// sysfs RTMR files are missing (older vendor kernels). Off by default.
    #[serde(default)]
    pub legacy_extend_ioctl: bool,
}

/// Why a launch config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchConfigError {
    /// The input is over [`MAX_LAUNCH_CONFIG_BYTES`].
    #[error("launch config is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Not JSON, or not the shape of a launch config.
    #[error("launch config: {0}")]
    Json(String),
    /// The version field is missing or not [`LAUNCH_CONFIG_VERSION`].
    #[error("launch config version: expected {LAUNCH_CONFIG_VERSION}, got {found}")]
    Version { found: String },
    /// A field has a value the agent cannot use.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The config cannot be written as canonical JSON.
    #[error("launch config: {0}")]
    Encode(#[from] crate::canonical::CanonicalError),
}

fn default_github_api_url() -> String {
    DEFAULT_GITHUB_API_URL.to_owned()
}

fn default_oidc_issuer() -> String {
    DEFAULT_OIDC_ISSUER.to_owned()
}

fn default_agent_port() -> u16 {
    DEFAULT_AGENT_PORT
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> LaunchConfigError {
    LaunchConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl LaunchConfig {
    /// A version-1 config for `repo` reachable at `endpoint`, every other field at its default.
    pub fn new(repo: impl Into<String>, endpoint: impl Into<String>) -> Self {
        LaunchConfig {
            version: LAUNCH_CONFIG_VERSION,
            repo: repo.into(),
            endpoint: endpoint.into(),
            control_plane_url: None,
            github_api_url: default_github_api_url(),
            network: Network::default(),
            agent_port: DEFAULT_AGENT_PORT,
            forwarded_ports: Vec::new(),
            image_id: None,
            tsm: TsmOptions::default(),
            oidc: OidcPolicy::default(),
        }
    }

    /// Parse and validate a launch config from JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, LaunchConfigError> {
        let value = crate::versioned::parse(bytes, MAX_LAUNCH_CONFIG_BYTES, LAUNCH_CONFIG_VERSION)?;
        let config: LaunchConfig =
            serde_json::from_value(value).map_err(|e| LaunchConfigError::Json(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The config as canonical JSON (RFC 8785): what the host writes for the guest.
    pub fn to_json(&self) -> Result<String, LaunchConfigError> {
        Ok(crate::canonical::to_string(self)?)
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), LaunchConfigError> {
        if self.version != LAUNCH_CONFIG_VERSION {
            return Err(LaunchConfigError::Version {
                found: self.version.to_string(),
            });
        }
        check_repo(&self.repo).map_err(|p| invalid("repo", p))?;
        check_endpoint(&self.endpoint).map_err(|p| invalid("endpoint", p))?;
        if let Some(url) = &self.control_plane_url {
            check_url(url, &["https", "http"]).map_err(|p| invalid("control_plane_url", p))?;
        }
        check_url(&self.github_api_url, &["https", "http"])
            .map_err(|p| invalid("github_api_url", p))?;
        if let Network::Static(net) = &self.network {
            net.addressing()?;
        }
        if self.agent_port == 0 {
            return Err(invalid("agent_port", "must not be 0"));
        }
        self.validate_forwarded_ports()?;
        if let Some(id) = &self.image_id {
            check_image_id(id).map_err(|p| invalid("image_id", p))?;
        }
        self.oidc.validate()
    }

    fn validate_forwarded_ports(&self) -> Result<(), LaunchConfigError> {
        if self.forwarded_ports.len() > MAX_FORWARDED_PORTS {
            return Err(invalid(
                "forwarded_ports",
                format!(
                    "{} entries, at most {MAX_FORWARDED_PORTS} allowed",
                    self.forwarded_ports.len()
                ),
            ));
        }
        let mut host_ports = HashSet::new();
        let mut guest_ports = HashSet::new();
        for (index, port) in self.forwarded_ports.iter().enumerate() {
            let field = |name: &str| format!("forwarded_ports[{index}].{name}");
            if port.host_port == 0 {
                return Err(invalid(field("host_port"), "must not be 0"));
            }
            if port.guest_port == 0 {
                return Err(invalid(field("guest_port"), "must not be 0"));
            }
            if port.protocol == Protocol::Tcp && port.guest_port == self.agent_port {
                return Err(invalid(
                    field("guest_port"),
                    format!("{} is the agent port", port.guest_port),
                ));
            }
            if !host_ports.insert((port.protocol, port.host_port)) {
                return Err(invalid(
                    field("host_port"),
                    format!("{} is forwarded twice", port.host_port),
                ));
            }
            if !guest_ports.insert((port.protocol, port.guest_port)) {
                return Err(invalid(
                    field("guest_port"),
                    format!("{} is forwarded twice", port.guest_port),
                ));
            }
        }
        Ok(())
    }
}

impl OidcPolicy {
    /// Check the issuer URL and the allowed names; errors name the field.
    pub fn validate(&self) -> Result<(), LaunchConfigError> {
        check_url(&self.issuer, &["https", "http"]).map_err(|p| invalid("oidc.issuer", p))?;
        if self.issuer.ends_with('/') {
            return Err(invalid(
                "oidc.issuer",
                format!(
                    "{:?} ends with '/': write it exactly as the tokens' iss claim, without one",
                    self.issuer
                ),
            ));
        }
        for (field, names) in [
            ("oidc.allowed_refs", &self.allowed_refs),
            ("oidc.allowed_environments", &self.allowed_environments),
        ] {
            if names.len() > MAX_OIDC_ALLOWED {
                return Err(invalid(
                    field,
                    format!("{} entries, at most {MAX_OIDC_ALLOWED}", names.len()),
                ));
            }
            for (index, name) in names.iter().enumerate() {
                let printable = name.chars().all(|c| !c.is_control());
                if name.is_empty() || name.len() > MAX_OIDC_NAME_LEN || !printable {
                    return Err(invalid(
                        format!("{field}[{index}]"),
                        format!(
                            "{name:?} must be 1 to {MAX_OIDC_NAME_LEN} bytes without control characters"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl StaticNetwork {
    /// Parse the addresses; errors name the field (`network.static.gateway`, ...).
    pub fn addressing(&self) -> Result<Ipv4Addressing, LaunchConfigError> {
        let (address, prefix) = self.address.split_once('/').ok_or_else(|| {
            invalid(
                "network.static.address",
                "must be an IPv4 address/prefix, like 10.0.2.15/24",
            )
        })?;
        let address = parse_ipv4(address).map_err(|p| invalid("network.static.address", p))?;
        let prefix_len = match prefix.parse::<u8>() {
            Ok(n) if (1..=32).contains(&n) && prefix.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(invalid(
                    "network.static.address",
                    format!("prefix length {prefix:?} is not 1..=32"),
                ))
            }
        };
        let gateway =
            parse_ipv4(&self.gateway).map_err(|p| invalid("network.static.gateway", p))?;
        if gateway == address {
            return Err(invalid(
                "network.static.gateway",
                "must differ from the interface address",
            ));
        }
        if self.dns.is_empty() || self.dns.len() > MAX_DNS_SERVERS {
            return Err(invalid(
                "network.static.dns",
                format!(
                    "{} servers, expected 1 to {MAX_DNS_SERVERS}",
                    self.dns.len()
                ),
            ));
        }
        let dns = self
            .dns
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_ipv4(text).map_err(|p| invalid(format!("network.static.dns[{i}]"), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(Ipv4Addressing {
            address,
            prefix_len,
            gateway,
            dns,
        })
    }
}

/// A specific, unicast-usable IPv4 address.
fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    let addr: Ipv4Addr = text
        .parse()
        .map_err(|_| format!("not an IPv4 address: {text:?}"))?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(format!("{addr} is not a unicast address"));
    }
    Ok(addr)
}

/// Check a GitHub repository name, `owner/name`, by GitHub's rules: the owner
/// is 1-39 ASCII letters, digits or hyphens, not starting with a hyphen (older
/// accounts may have double or trailing hyphens, so those are allowed); the
/// name is 1-100 ASCII letters, digits, `.`, `_` or `-`, and not `.` or `..`.
/// GitHub compares names case-insensitively; so should callers.
pub fn check_repo(repo: &str) -> Result<(), String> {
    let (owner, name) = repo
        .split_once('/')
        .ok_or_else(|| format!("must be owner/name, got {repo:?}"))?;
    if owner.is_empty() || owner.len() > 39 {
        return Err(format!("owner {owner:?} must be 1 to 39 characters"));
    }
    if owner.starts_with('-')
        || !owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "owner {owner:?} may contain only letters, digits and hyphens, and must not start with a hyphen"
        ));
    }
    if name.is_empty() || name.len() > 100 {
        return Err(format!("name {name:?} must be 1 to 100 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("name {name:?} is reserved"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "name {name:?} may contain only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Check a service endpoint: `https://host[:port][/path]` or `host:port`.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.contains("://") {
        check_url(endpoint, &["https"])
    } else {
        check_authority(endpoint, true)
            .map_err(|p| format!("must be an https:// URL or host:port ({p}), got {endpoint:?}"))
    }
}

/// The canonical form of a GitHub REST API base URL, for comparing the API a
/// TD was measured with against the one a verifier expects:
/// `scheme://host:port/path` with the scheme and host lower-cased, the
/// default port written out and trailing slashes dropped. Two URLs name the
/// same API exactly when their canonical forms are equal. The error names
/// the problem (see [`check_url`]).
pub fn canonical_api_url(url: &str) -> Result<String, String> {
    check_url(url, &["https", "http"])?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let authority = authority.to_ascii_lowercase();
    // A bracketed IPv6 host has colons of its own; the port follows `]`.
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = if has_port {
        authority
    } else {
        format!("{authority}:{default_port}")
    };
    Ok(format!(
        "{scheme}://{authority}{}",
        path.trim_end_matches('/')
    ))
}

/// Whether the API a TD was measured with (`measured`) is the one the
/// verifier expects (`expected`): equal [`canonical_api_url`] forms. A
/// measured URL that does not parse never matches.
pub fn same_github_api(expected: &str, measured: &str) -> bool {
    match (canonical_api_url(expected), canonical_api_url(measured)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Check `scheme://host[:port][/path]` with one of `schemes`; no user info,
/// query or fragment.
pub fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "URL is {} bytes, at most {MAX_URL_LEN} allowed",
            url.len()
        ));
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "must be a URL like {}://host[:port][/path], got {url:?}",
            schemes.join("|")
        )
    })?;
    if !schemes.contains(&scheme) {
        return Err(format!(
            "scheme must be {}, got {scheme:?}",
            schemes.join(" or ")
        ));
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    check_authority(authority, false)?;
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        return Err(format!(
            "path must not contain {bad:?} (no whitespace, query or fragment)"
        ));
    }
    Ok(())
}

/// Check `host[:port]`: a DNS name, IPv4 address or bracketed IPv6 address,
/// and a port 1..=65535.
fn check_authority(authority: &str, port_required: bool) -> Result<(), String> {
    if authority.contains('@') {
        return Err("must not contain user info ('@')".to_owned());
    }
    let port = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("unclosed '[' in host")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        check_host(host)?;
        port
    };
    match port {
        Some(port) => {
            let valid = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
            match port.parse::<u16>() {
                Ok(n) if valid && n != 0 => Ok(()),
                _ => Err(format!("port {port:?} is not 1..=65535")),
            }
        }
        None if port_required => Err("a port is required".to_owned()),
        None => Ok(()),
    }
}

/// A DNS name (RFC 1123 labels) or a dotted IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(drop)
            .map_err(|_| format!("{host:?} is not an IPv4 address"));
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!("{host:?} is not a valid host name"));
    }
    Ok(())
}

/// Check an image identifier: 1-128 ASCII letters, digits, `.`, `_`, `-`, `+` or `:`.
pub fn check_image_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:".contains(&b))
    {
        return Err(format!(
            "{id:?} must be 1 to 128 letters, digits, '.', '_', '-', '+' or ':'"
        ));
    }
    Ok(())
}

impl From<crate::versioned::EnvelopeError> for LaunchConfigError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => LaunchConfigError::TooLarge { size, max },
            E::Json(problem) => LaunchConfigError::Json(problem),
            E::Version { found } => LaunchConfigError::Version { found },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_rules() {
        for ok in ["a/b", "octo-cat/hello.world", "A1/_x-", "a--b-/x"] {
            assert_eq!(check_repo(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "/b",
            "a/",
            "-a/b",
            "a_b/c",
            "a/.",
            "a/..",
            "a/b/c",
            &format!("{}/b", "a".repeat(40)),
        ] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_and_url_rules() {
        for ok in [
            "https://app.example.com",
            "https://1.2.3.4:8443/x/y",
            "https://[::1]:443",
            "app.example.com:443",
            "[fe80::1]:80",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example.com",
            "app.example.com",
            "https://user@app.example.com",
            "https://app.example.com/?q=1",
            "https://app..com",
            "https://-a.com",
            "host:0",
            "host:+80",
            "host:65536",
            "https://300.1.1.1",
            "https://[::1",
            "",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_url("http://10.0.2.2:8080/api/v3", &["https", "http"]).is_ok());
        assert!(check_url("ftp://x", &["https"])
            .unwrap_err()
            .contains("scheme must be https"));
    }

    #[test]
    fn api_urls_compare_by_canonical_form() {
        assert!(same_github_api(
            "https://api.github.com",
            "https://API.github.com:443/"
        ));
        assert!(same_github_api(
            "https://ghe.example/api/v3",
            "https://ghe.example:443/api/v3/"
        ));
        assert!(same_github_api(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/"
        ));
        assert!(same_github_api(
            "https://[::1]/api",
            "https://[::1]:443/api"
        ));
        for other in [
            "https://api.attacker.test",
            "http://api.github.com",
            "https://api.github.com:8443",
            "https://api.github.com/api/v3",
            "https://api.github.com.attacker.test",
            "https://user@api.github.com",
            "not a url",
        ] {
            assert!(!same_github_api("https://api.github.com", other), "{other}");
        }
        assert_eq!(
            canonical_api_url("https://Ghe.Example/api/v3/").unwrap(),
            "https://ghe.example:443/api/v3"
        );
    }
}
