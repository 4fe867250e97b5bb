//! The small commands: init, ca, env, exec.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::config::{AgentView, Config};
use crate::proxy::ca::{self, CaPaths};

pub mod audit_cmd;
pub mod policy_cmd;

const STARTER_CONFIG: &str = include_str!("../../examples/sudomode.yaml");
const STARTER_POLICY: &str = include_str!("../../policies/default.yaml");

/// `sudomode init [DIR]`: never overwrites an existing file.
pub fn init(dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir.join("policies"))
        .with_context(|| format!("creating {}", dir.display()))?;
    for (rel, text) in [
        ("sudomode.yaml", STARTER_CONFIG),
        ("policies/default.yaml", STARTER_POLICY),
    ] {
        let path = dir.join(rel);
        if path.exists() {
            println!("kept     {} (already exists)", path.display());
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("created  {}", path.display());
        }
    }
    let certs = dir.join("certs");
    let created = ca::init(&certs)?;
    let paths = CaPaths::new(&certs);
    println!(
        "{}  {}",
        if created { "created " } else { "kept    " },
        paths.cert.display()
    );
    println!("\nNext: cd {} && sudomode run", dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn ca_init(config: &Config) -> Result<ExitCode> {
    let created = ca::init(&config.ca_dir)?;
    let paths = CaPaths::new(&config.ca_dir);
    println!(
        "{} {}",
        if created { "created" } else { "exists:" },
        paths.cert.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `name:token` for `--agent NAME`.
pub fn agent_token(config: &Config, name: &str) -> Result<(String, String)> {
    match config.agents.iter().find(|a| a.name == name) {
        Some(a) => Ok((a.name.clone(), a.token.clone())),
        None => bail!("no agent named `{name}` in {}", config.name()),
    }
}

/// The variables of SPEC §3, as (name, value) pairs.
pub fn env_vars(config: &Config, agent: Option<(String, String)>) -> Vec<(String, String)> {
    let userinfo = agent
        .map(|(n, t)| format!("{}:{}@", pct(&n), pct(&t)))
        .unwrap_or_default();
    let proxy = format!("http://{userinfo}{}", config.proxy_listen);
    let paths = CaPaths::new(&config.ca_dir);
    let bundle = paths.bundle.display().to_string();
    let ca = paths.cert.display().to_string();
    let no_proxy = no_proxy(config);
    let mut v = Vec::new();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        v.push((k.to_string(), proxy.clone()));
    }
    for k in ["NO_PROXY", "no_proxy"] {
        v.push((k.to_string(), no_proxy.clone()));
    }
    for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        v.push((k.to_string(), bundle.clone()));
    }
    v.push(("NODE_EXTRA_CA_CERTS".into(), ca));
    v.push(("AWS_CA_BUNDLE".into(), bundle.clone()));
    v.push(("GIT_SSL_CAINFO".into(), bundle));
    // Node: 24+ fetch honours the proxy variables only with this set;
    // global-agent (older Node HTTP clients) reads its own names.
    v.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    v.push(("GLOBAL_AGENT_HTTP_PROXY".into(), proxy.clone()));
    v.push(("GLOBAL_AGENT_HTTPS_PROXY".into(), proxy));
    v.push(("GLOBAL_AGENT_NO_PROXY".into(), no_proxy));
    v
}

pub fn env_lines(config: &Config, agent: Option<(String, String)>) -> String {
    let vars = env_vars(config, agent);
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| shell_quote(v))
            .unwrap_or_default()
    };
    let line = |keys: &[&str]| {
        let parts: Vec<String> = keys.iter().map(|k| format!("{k}={}", get(k))).collect();
        format!("export {}\n", parts.join(" "))
    };
    [
        line(&["HTTP_PROXY", "HTTPS_PROXY"]),
        line(&["http_proxy", "https_proxy"]),
        line(&["NO_PROXY", "no_proxy"]),
        line(&["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]),
        line(&["NODE_EXTRA_CA_CERTS", "AWS_CA_BUNDLE", "GIT_SSL_CAINFO"]),
        line(&["NODE_USE_ENV_PROXY"]),
        line(&[
            "GLOBAL_AGENT_HTTP_PROXY",
            "GLOBAL_AGENT_HTTPS_PROXY",
            "GLOBAL_AGENT_NO_PROXY",
        ]),
    ]
    .concat()
}

/// `NO_PROXY` as every common client reads it (SPEC §3): host names and
/// addresses without ports; the loopback names too when the dashboard is
/// on loopback, so an agent reaches `/v1/govern` directly.
fn no_proxy(config: &Config) -> String {
    let ip = config.dashboard_listen.ip();
    let mut hosts: Vec<String> = Vec::new();
    if let Some(host) = config
        .public_url
        .as_deref()
        .and_then(url_host)
        .filter(|h| !h.is_empty())
    {
        hosts.push(host);
    }
    if !ip.is_unspecified() {
        hosts.push(ip.to_string());
    }
    if ip.is_loopback() || ip.is_unspecified() {
        hosts.extend(["127.0.0.1", "localhost", "::1"].map(String::from));
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts.join(",")
}

/// The host of an `http(s)://host[:port]/…` URL, IPv6 without brackets.
fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

/// `sudomode env [--agent NAME]`: reads no secret but the agent's own token.
pub fn env_command(explicit: Option<&Path>, agent: Option<&str>) -> Result<ExitCode> {
    let view = AgentView::discover(explicit, agent)?;
    let creds = agent.map(|a| agent_token(&view.config, a)).transpose()?;
    warn_missing_ca(&view.config);
    print!("{}", env_lines(&view.config, creds));
    Ok(ExitCode::SUCCESS)
}

/// `sudomode exec -- CMD`: exits with CMD's status. CMD gets the proxy
/// variables and loses `SUDOMODE_ADMIN_TOKEN` and every variable the config
/// reads through `${env:…}`: the agent never inherits SudoMode's keys.
pub fn exec(explicit: Option<&Path>, agent: Option<&str>, cmd: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = cmd.split_first() else {
        bail!("exec needs a command after --")
    };
    let view = AgentView::discover(explicit, agent)?;
    let creds = agent.map(|a| agent_token(&view.config, a)).transpose()?;
    warn_missing_ca(&view.config);
    let mut command = std::process::Command::new(program);
    command.args(args);
    for name in view
        .env_refs
        .iter()
        .map(String::as_str)
        .chain(["SUDOMODE_ADMIN_TOKEN"])
    {
        command.env_remove(name);
    }
    let status = command
        .envs(env_vars(&view.config, creds))
        .status()
        .with_context(|| format!("cannot run `{program}`"))?;
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The variables point at the CA bundle; without it every agent's TLS
/// check fails, so say so (on stderr: stdout is for `eval`).
fn warn_missing_ca(config: &Config) {
    let paths = CaPaths::new(&config.ca_dir);
    if !paths.bundle.exists() {
        eprintln!(
            "warning: the CA bundle {} does not exist (no SudoMode project here?); \
             run `sudomode init` to start one, `sudomode ca init` to create the CA, \
             or pass -c with your sudomode.yaml",
            paths.bundle.display()
        );
    }
}

/// Userinfo for a proxy URL: everything but RFC 3986 unreserved characters
/// is escaped, so a token with `@`, `:` or `/` cannot change the URL.
fn pct(s: &str) -> String {
    const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, USERINFO).to_string()
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._/:@%=,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::pct;

    #[test]
    fn userinfo_escapes_everything_but_unreserved() {
        assert_eq!(pct("agent-1.a_b~"), "agent-1.a_b~");
        assert_eq!(pct("t@k:e/n %é"), "t%40k%3Ae%2Fn%20%25%C3%A9");
    }
}
