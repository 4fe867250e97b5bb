//! `sudomode.yaml`: discovery, parsing, secret references and validation (SPEC §2).
//!
//! Parse → expand `${env:…}`/`${file:…}` → validate → a resolved [`Config`]
//! whose paths are absolute. No I/O beyond reading the file and secret files.

mod agent_view;
mod secrets;
mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use agent_view::AgentView;
pub use units::{parse_duration, parse_size};

/// Why the configuration cannot be used. Exit code 2; never shows a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Approver,
    Viewer,
}

impl Role {
    pub fn can_decide(self) -> bool {
        matches!(self, Role::Admin | Role::Approver)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: String,
    pub token: String,
    pub role: Role,
    #[serde(default)]
    pub slack_user_id: Option<String>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("slack_user_id", &self.slack_user_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCred {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for AgentCred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCred")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Strict,
    Batched,
}

/// The file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    proxy: RawProxy,
    dashboard: RawDashboard,
    operators: Vec<Operator>,
    agents: Vec<AgentCred>,
    ca: RawCa,
    store: RawStore,
    audit: RawAudit,
    policies: Option<Vec<String>>,
    hold: RawHold,
    upstream: RawUpstream,
    intents: Vec<sudomode_intent::CustomIntent>,
    credentials: Vec<serde_json::Value>,
    slack: Option<serde_json::Value>,
    webhooks: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    listen: Option<String>,
    max_body_bytes: Option<serde_json::Value>,
    tunnel_hosts: Vec<String>,
    idle_timeout: Option<String>,
    read_timeout: Option<String>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDashboard {
    listen: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCa {
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    durability: Option<Durability>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHold {
    timeout: Option<String>,
    retry_window: Option<String>,
    /// A duration, or `0` (YAML may write it as a number).
    reply_after: Option<serde_json::Value>,
    max_pending_per_agent: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    ca_files: Vec<String>,
    resolve: BTreeMap<String, String>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
}

/// The resolved configuration the application runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any (None = built-in defaults).
    pub file: Option<PathBuf>,
    pub proxy_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub tunnel_hosts: Vec<String>,
    pub idle_timeout: Duration,
    /// A request's head and body must arrive within this (408 otherwise).
    pub read_timeout: Duration,
    /// Agent connections served at once.
    pub max_connections: usize,
    pub dashboard_listen: SocketAddr,
    pub public_url: Option<String>,
    pub operators: Vec<Operator>,
    pub agents: Vec<AgentCred>,
    pub ca_dir: PathBuf,
    pub store_path: PathBuf,
    pub durability: Durability,
    /// Policy files/directories; `policies_explicit` is false when defaulted.
    pub policies: Vec<PathBuf>,
    pub policies_explicit: bool,
    pub hold_timeout: Duration,
    pub retry_window: Duration,
    /// Answer a still-held call with 503 `pending` after this long; zero
    /// holds it until the approval window ends (SPEC §6).
    pub reply_after: Duration,
    pub max_pending_per_agent: usize,
    pub upstream_ca_files: Vec<PathBuf>,
    pub resolve: BTreeMap<String, SocketAddr>,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub intents: Vec<sudomode_intent::CustomIntent>,
    pub credentials: Vec<serde_json::Value>,
    pub slack: Option<serde_json::Value>,
    pub webhooks: Vec<serde_json::Value>,
}

impl Config {
    /// Config discovery (SPEC §1): `-c FILE`, else `$SUDOMODE_CONFIG`, else
    /// `./sudomode.yaml` if present, else built-in defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match discovered_path(explicit) {
            Some(p) => Config::load(&p),
            None => Config::resolve(RawConfig::default(), None, &cwd(), "<defaults>", &[]),
        }
    }

    /// Reads and resolves one config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let f = ConfigFile::read(path)?;
        Config::parse(&f.text, Some(f.abs), &f.base, &f.name)
    }

    /// Parses config text; `base` resolves relative paths and `${file:…}`.
    pub fn parse(
        text: &str,
        file: Option<PathBuf>,
        base: &Path,
        name: &str,
    ) -> Result<Config, ConfigError> {
        let mut value = checked_tree(text, name)?;
        let from_refs = expand(&mut value, base, name)?;
        let raw = typed(value, name)?;
        Config::resolve(raw, file, base, name, &from_refs)
    }

    /// `from_refs`: keys whose values came from secret references; an error
    /// about one of them never quotes the value.
    fn resolve(
        raw: RawConfig,
        file: Option<PathBuf>,
        base: &Path,
        name: &str,
        from_refs: &[String],
    ) -> Result<Config, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: name.to_string(),
            key: key.to_string(),
            message,
        };
        let shown = |key: &str, value: &str| -> String {
            if from_refs.iter().any(|k| k == key) {
                "the value of its secret reference".to_string()
            } else {
                format!("`{value}`")
            }
        };
        let addr =
            |key: &str, v: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
                let s = v.unwrap_or_else(|| default.to_string());
                s.parse().map_err(|_| {
                    invalid(
                        key,
                        format!("{} is not an address like 127.0.0.1:8080", shown(key, &s)),
                    )
                })
            };
        let dur = |key: &str, v: Option<String>, default: &str| -> Result<Duration, ConfigError> {
            let s = v.unwrap_or_else(|| default.to_string());
            parse_duration(&s).map_err(|m| invalid(key, format!("{} {m}", shown(key, &s))))
        };
        let path = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let max_body_bytes = match raw.proxy.max_body_bytes {
            None => 10 * 1024 * 1024,
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| invalid("proxy.max_body_bytes", "must be a positive size".into()))?,
            Some(serde_json::Value::String(s)) => parse_size(&s).map_err(|m| {
                let key = "proxy.max_body_bytes";
                invalid(key, format!("{} {m}", shown(key, &s)))
            })?,
            Some(_) => {
                return Err(invalid(
                    "proxy.max_body_bytes",
                    "must be a size like 10MiB".into(),
                ));
            }
        };
        let mut seen = std::collections::HashSet::new();
        for (i, op) in raw.operators.iter().enumerate() {
            if op.name.is_empty() || op.token.len() < 8 {
                return Err(invalid(
                    &format!("operators[{i}]"),
                    "needs a name and a token of at least 8 characters".into(),
                ));
            }
            if !seen.insert(op.name.clone()) {
                return Err(invalid(
                    &format!("operators[{i}].name"),
                    format!("duplicate operator `{}`", op.name),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in raw.agents.iter().enumerate() {
            if a.name.is_empty() || a.name.contains(':') || a.token.is_empty() {
                return Err(invalid(
                    &format!("agents[{i}]"),
                    "needs a name (without `:`) and a non-empty token".into(),
                ));
            }
            if !seen.insert(a.name.clone()) {
                return Err(invalid(
                    &format!("agents[{i}].name"),
                    format!("duplicate agent `{}`", a.name),
                ));
            }
        }
        let mut resolve = BTreeMap::new();
        for (k, v) in raw.upstream.resolve {
            let key = format!("upstream.resolve.{k}");
            let target: SocketAddr = v
                .parse()
                .map_err(|_| invalid(&key, format!("{} is not an ip:port", shown(&key, &v))))?;
            if !k.contains(':') {
                return Err(invalid(
                    &format!("upstream.resolve.{k}"),
                    "key must be host:port".into(),
                ));
            }
            resolve.insert(k.to_ascii_lowercase(), target);
        }
        if let Some(url) = &raw.dashboard.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "dashboard.public_url",
                "must start with http:// or https://".into(),
            ));
        }
        let (policies, policies_explicit) = match raw.policies {
            Some(list) => (list.iter().map(|p| path(p)).collect(), true),
            None => (vec![path("policies")], false),
        };
        Ok(Config {
            file,
            proxy_listen: addr("proxy.listen", raw.proxy.listen, "127.0.0.1:8080")?,
            max_body_bytes,
            tunnel_hosts: raw.proxy.tunnel_hosts,
            idle_timeout: dur("proxy.idle_timeout", raw.proxy.idle_timeout, "60s")?,
            read_timeout: dur("proxy.read_timeout", raw.proxy.read_timeout, "30s")?,
            max_connections: match raw.proxy.max_connections {
                Some(0) => {
                    return Err(invalid(
                        "proxy.max_connections",
                        "must be at least 1".into(),
                    ));
                }
                n => n.unwrap_or(10_000),
            },
            dashboard_listen: addr("dashboard.listen", raw.dashboard.listen, "127.0.0.1:8081")?,
            public_url: raw
                .dashboard
                .public_url
                .map(|u| u.trim_end_matches('/').to_string()),
            operators: raw.operators,
            agents: raw.agents,
            ca_dir: path(raw.ca.dir.as_deref().unwrap_or("certs")),
            store_path: path(raw.store.path.as_deref().unwrap_or("data/sudomode.redb")),
            durability: raw.audit.durability.unwrap_or(Durability::Strict),
            policies,
            policies_explicit,
            hold_timeout: dur("hold.timeout", raw.hold.timeout, "10m")?,
            retry_window: dur("hold.retry_window", raw.hold.retry_window, "10m")?,
            reply_after: match raw.hold.reply_after {
                None => dur("hold.reply_after", None, "50s")?,
                Some(serde_json::Value::Number(n)) if n.as_u64() == Some(0) => Duration::ZERO,
                Some(serde_json::Value::String(s)) if s.trim() == "0" => Duration::ZERO,
                Some(serde_json::Value::String(s)) => dur("hold.reply_after", Some(s), "50s")?,
                Some(_) => {
                    return Err(invalid(
                        "hold.reply_after",
                        "must be a duration like 50s, or 0 to hold until the approval window ends"
                            .into(),
                    ));
                }
            },
            max_pending_per_agent: raw.hold.max_pending_per_agent.unwrap_or(100),
            upstream_ca_files: raw.upstream.ca_files.iter().map(|p| path(p)).collect(),
            resolve,
            connect_timeout: dur(
                "upstream.connect_timeout",
                raw.upstream.connect_timeout,
                "10s",
            )?,
            upstream_timeout: dur("upstream.timeout", raw.upstream.timeout, "120s")?,
            intents: raw.intents,
            credentials: raw.credentials,
            slack: raw.slack,
            webhooks: raw.webhooks,
        })
    }

    /// Base URL of the dashboard for links (agent errors, Slack).
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.dashboard_listen))
    }

    /// Name of the config for messages.
    pub fn name(&self) -> String {
        self.file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<defaults>".into())
    }
}

/// `-c FILE`, else `$SUDOMODE_CONFIG`, else `./sudomode.yaml` if present.
fn discovered_path(explicit: Option<&Path>) -> Option<PathBuf> {
    let from_env = std::env::var_os("SUDOMODE_CONFIG").map(PathBuf::from);
    explicit.map(Path::to_path_buf).or(from_env).or_else(|| {
        let p = PathBuf::from("sudomode.yaml");
        p.exists().then_some(p)
    })
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// A config file's text and where relative paths resolve from.
struct ConfigFile {
    text: String,
    abs: PathBuf,
    base: PathBuf,
    name: String,
}

impl ConfigFile {
    fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: name.clone(),
            source,
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(ConfigFile {
            text,
            abs,
            base,
            name,
        })
    }
}

/// The file's tree, after a typed parse of the raw text: that reports
/// unknown keys and type errors with line and column, before any secret is
/// expanded.
fn checked_tree(text: &str, name: &str) -> Result<serde_json::Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_yaml::from_str::<RawConfig>(text).map_err(|e| syntax(name, &e))?;
    let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| syntax(name, &e))?;
    Ok(if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value
    })
}

fn syntax(name: &str, e: &serde_yaml::Error) -> ConfigError {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    ConfigError::Syntax {
        file: name.to_string(),
        line,
        col,
        message: scrub_values(&e.to_string()),
    }
}

/// Expands the tree's secret references; returns the keys that had one.
fn expand(
    value: &mut serde_json::Value,
    base: &Path,
    name: &str,
) -> Result<Vec<String>, ConfigError> {
    secrets::expand(value, base).map_err(|(key, message)| ConfigError::Invalid {
        file: name.to_string(),
        key,
        message,
    })
}

/// The expanded tree as [`RawConfig`]. YAML reads `token: 12345678` as a
/// number, which the typed parse of the text let through as a string: the
/// error names the key, never the value.
fn typed(value: serde_json::Value, name: &str) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            file: name.to_string(),
            key: if key == "." { "(root)".into() } else { key },
            message: format!(
                "{}; write the value in quotes",
                scrub_values(&e.into_inner().to_string())
            ),
        }
    })
}

/// serde's "invalid type: integer `12345678`, expected a string" quotes the
/// value, which may be a token written without quotes: keep only its kind.
fn scrub_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = ["invalid type: ", "invalid value: "]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| i + p.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(", expected").unwrap_or(rest.len());
        let kind = &rest[..end];
        let cut = kind.find(['`', '"']).unwrap_or(kind.len());
        out.push_str(kind[..cut].trim_end());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
