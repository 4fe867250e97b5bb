//! `sudomode policy check | explain | test` (SPEC §1, §5.4, §5.6): validate policy files,
//! explain how a request would be judged (no network), and run the policies' `tests:`.
//!
//! FILES arguments: each one (a file, or a directory read the way the server reads it) is
//! checked or tested as a policy of its own, so `policy test policies/default.yaml
//! policies/examples/*.yaml` tests every example against its own rules. Without FILES the
//! configured policy set is used (`policies:` of the config, else `./policies/`, else the
//! built-in starter policy); `explain --policy FILE` judges against FILE instead.
//!
//! `check` (and `run`, through [`log_warnings`]) also report what loads but will not do
//! what it says: Python spellings read as CEL, rules an earlier rule always takes first,
//! and resource or action names no mapping produces.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use sudomode_intent::{Mapper, RawRequest};
use sudomode_policy::Policy;

use crate::app::ConfigProblem;
use crate::cli::ConfigArg;
use crate::config::Config;

/// `sudomode policy …`.
#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate policy files; print `file:line:col: message` per problem (exit 1 if any).
    Check {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Policy files or directories, each checked on its own (default: the configured policy).
        #[arg(value_name = "FILES")]
        files: Vec<PathBuf>,
    },
    /// Show the intents a request maps to, every rule considered, and the decision. No network.
    Explain {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Policy files or directories to judge with instead of the configured policy
        /// (repeatable; read in the order given).
        #[arg(long = "policy", value_name = "FILE")]
        policy: Vec<PathBuf>,
        /// Agent name the request is judged for.
        #[arg(long, default_value = "default")]
        agent: String,
        /// Request method (default GET, or POST when -d is given, like curl).
        #[arg(short = 'X', long = "request", value_name = "METHOD")]
        method: Option<String>,
        /// Request header `Name: value` (repeatable).
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// Request body; `@FILE` reads a file. Repeated -d are joined with `&` like curl.
        /// No Content-Type is added: the body is sniffed (JSON or form) unless -H sets one.
        #[arg(short = 'd', long = "data", value_name = "BODY")]
        data: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Absolute http(s) URL of the request.
        url: String,
    },
    /// Run the `tests:` cases of policy files; exit 1 on any failure, naming it.
    Test {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Policy files or directories, each tested on its own (default: the configured policy).
        #[arg(value_name = "FILES")]
        files: Vec<PathBuf>,
    },
}

/// `--format` of `policy explain`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Runs one `policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check { cfg, files } => check(&cfg, &files),
        PolicyCommand::Explain {
            cfg,
            policy,
            agent,
            method,
            headers,
            data,
            format,
            url,
        } => {
            let config = crate::cli::load(&cfg)?;
            let req = ExplainRequest {
                agent,
                method,
                headers,
                data,
                url,
            };
            explain(&config, &policy, &req, format)
        }
        PolicyCommand::Test { cfg, files } => {
            let config = crate::cli::load(&cfg)?;
            test(&config, &files)
        }
    }
}

/// One policy to check or test: a label for messages and what to load.
enum Unit {
    Files(String, Vec<PathBuf>),
    Builtin,
}

impl Unit {
    fn label(&self) -> String {
        match self {
            Unit::Files(label, _) => label.clone(),
            Unit::Builtin => sudomode_policy::DEFAULT_POLICY_NAME.to_string(),
        }
    }

    /// Loads the policy, warning about names neither the built-in mappings nor
    /// `custom` produce.
    fn load(
        &self,
        custom: &[sudomode_intent::CustomIntent],
    ) -> Result<Policy, sudomode_policy::PolicyErrors> {
        match self {
            Unit::Files(_, paths) => Policy::load_with_intents(paths, custom),
            Unit::Builtin => Ok(Policy::builtin()),
        }
    }
}

/// The policies named on the command line, else the configured policy set
/// (the same choice as [`crate::app::load_policy`]).
fn units(config: Option<&Config>, files: &[PathBuf]) -> Vec<Unit> {
    if !files.is_empty() {
        return files
            .iter()
            .map(|f| Unit::Files(f.display().to_string(), vec![f.clone()]))
            .collect();
    }
    let Some(config) = config else {
        return vec![Unit::Builtin];
    };
    let any_exists = config.policies.iter().any(|p| p.exists());
    if config.policies_explicit || any_exists {
        let label = config
            .policies
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        vec![Unit::Files(label, config.policies.clone())]
    } else {
        vec![Unit::Builtin]
    }
}

fn check(cfg: &ConfigArg, files: &[PathBuf]) -> Result<ExitCode> {
    // The configuration names the policy when no FILES are given; otherwise it is
    // read (if it can be) only for its custom intents, so names they produce are known.
    let config = if files.is_empty() {
        Some(crate::cli::load(cfg)?)
    } else {
        crate::cli::load(cfg).ok()
    };
    let custom = config.as_ref().map_or(&[][..], |c| c.intents.as_slice());
    let mut problems = 0;
    for unit in units(config.as_ref(), files) {
        match unit.load(custom) {
            Ok(p) => {
                for w in p.warnings() {
                    println!("{w}");
                }
                let noted = match p.warnings().len() {
                    0 => String::new(),
                    1 => "1 warning, ".to_string(),
                    n => format!("{n} warnings, "),
                };
                println!(
                    "ok: {}: {} rules, {} tests, {noted}version {}",
                    unit.label(),
                    p.rules().len(),
                    p.tests().len(),
                    p.version()
                );
            }
            Err(errors) => {
                problems += errors.len();
                for w in &errors.warnings {
                    println!("{w}");
                }
                println!("{errors}");
            }
        }
    }
    if problems == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "sudomode: {problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Loads the policy the configuration names, with warnings about names its custom
/// intents and the built-in mappings do not produce, and logs every warning, one
/// line each, for `run` and hot reload (the policy still loads).
pub(crate) fn load_configured(config: &Config) -> Result<Policy, sudomode_policy::PolicyErrors> {
    let policy = Policy::load_with_intents(&config.policies, &config.intents)?;
    for w in policy.warnings() {
        tracing::warn!("policy: {w}");
    }
    Ok(policy)
}

fn mapper(config: &Config) -> Result<Mapper> {
    Mapper::new(config.intents.clone(), config.max_body_bytes)
        .map_err(|e| anyhow::Error::new(ConfigProblem(format!("{}: intents: {e}", config.name()))))
}

fn test(config: &Config, files: &[PathBuf]) -> Result<ExitCode> {
    let mapper = mapper(config)?;
    let (mut passed, mut failed) = (0, 0);
    for unit in units(Some(config), files) {
        let policy = match unit.load(&config.intents) {
            Ok(p) => p,
            Err(errors) => {
                println!("{errors}");
                println!("FAIL {}: the policy does not load", unit.label());
                failed += 1;
                continue;
            }
        };
        let report = policy.run_tests(&mapper);
        for r in report.failures() {
            println!(
                "FAIL {}:{}: test {:?}: {}",
                r.file, r.line, r.name, r.message
            );
        }
        if report.results.is_empty() {
            println!("{}: no tests", unit.label());
        } else {
            println!(
                "{}: {} passed, {} failed",
                unit.label(),
                report.passed(),
                report.failed()
            );
        }
        passed += report.passed();
        failed += report.failed();
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `policy explain` was asked about.
struct ExplainRequest {
    agent: String,
    method: Option<String>,
    headers: Vec<String>,
    data: Vec<String>,
    url: String,
}

/// A request built from curl-style arguments, ready for the mapper.
struct Built {
    method: String,
    scheme: String,
    host: String,
    port: u16,
    path_and_query: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// Usage errors (bad URL, header or `@file`) exit 2.
fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(ConfigProblem(msg))
}

fn build(req: &ExplainRequest) -> Result<Built> {
    let uri: http::Uri = req
        .url
        .parse()
        .map_err(|e| usage(format!("bad URL {:?}: {e}", req.url)))?;
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase) {
        Some(s) if s == "http" || s == "https" => s,
        _ => {
            return Err(usage(format!(
                "bad URL {:?}: give an absolute http:// or https:// URL",
                req.url
            )));
        }
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(usage(format!("bad URL {:?}: no host", req.url)));
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".to_string(),
        Some(p) if !p.starts_with('/') => format!("/{p}"),
        Some(p) => p.to_string(),
    };
    let mut headers = http::HeaderMap::new();
    for h in &req.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(usage(format!("bad header {h:?}: expected 'Name: value'")));
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| usage(format!("bad header name in {h:?}: {e}")))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|e| usage(format!("bad header value in {h:?}: {e}")))?;
        headers.append(name, value);
    }
    let mut body = Vec::new();
    for (i, d) in req.data.iter().enumerate() {
        if i > 0 {
            body.push(b'&');
        }
        match d.strip_prefix('@') {
            Some(path) => {
                let bytes = std::fs::read(Path::new(path))
                    .map_err(|e| usage(format!("-d @{path}: {e}")))?;
                body.extend_from_slice(&bytes);
            }
            None => body.extend_from_slice(d.as_bytes()),
        }
    }
    if !req.data.is_empty() {
        headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert(http::HeaderValue::from(body.len()));
    }
    let method = match &req.method {
        Some(m) => m.clone(),
        None if req.data.is_empty() => "GET".to_string(),
        None => "POST".to_string(),
    };
    Ok(Built {
        method,
        scheme,
        host,
        port,
        path_and_query,
        headers,
        body,
    })
}

fn explain(
    config: &Config,
    files: &[PathBuf],
    req: &ExplainRequest,
    format: Format,
) -> Result<ExitCode> {
    let built = build(req)?;
    let policy = if files.is_empty() {
        crate::app::load_policy(config).map_err(|e| anyhow::Error::new(ConfigProblem(e)))?
    } else {
        Policy::load(files).map_err(|e| anyhow::Error::new(ConfigProblem(e.to_string())))?
    };
    let mapper = mapper(config)?;
    let raw = RawRequest {
        method: &built.method,
        scheme: &built.scheme,
        host: &built.host,
        port: built.port,
        path_and_query: &built.path_and_query,
        headers: &built.headers,
        body: &built.body,
    };
    let mapped = match mapper.map(&raw) {
        Ok(m) => m,
        Err(e) => {
            match format {
                Format::Json => {
                    let error = serde_json::json!({"error": {"type": "bad_request", "message": e.to_string()}});
                    println!("{error}");
                }
                Format::Text => println!("request could not be mapped: {e}"),
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let explanation = policy.explain(&req.agent, &mapped, time::OffsetDateTime::now_utc());
    match format {
        Format::Json => {
            let json =
                serde_json::to_string(&explanation).context("serialising the explanation")?;
            println!("{json}");
        }
        Format::Text => {
            println!(
                "request: {} {} (agent {})",
                built.method, req.url, req.agent
            );
            println!(
                "policy: {} rules from {}, version {}",
                policy.rules().len(),
                policy.files().join(", "),
                policy.version()
            );
            print!("{}", explanation.to_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Option<&str>, headers: &[&str], data: &[&str], url: &str) -> ExplainRequest {
        ExplainRequest {
            agent: "default".into(),
            method: method.map(str::to_string),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            data: data.iter().map(|s| s.to_string()).collect(),
            url: url.into(),
        }
    }

    #[test]
    fn builds_like_curl() {
        let b = build(&req(
            None,
            &[],
            &[],
            "https://API.stripe.com/v1/charges?limit=3",
        ))
        .unwrap();
        assert_eq!(
            (b.method.as_str(), b.host.as_str(), b.port),
            ("GET", "API.stripe.com", 443)
        );
        assert_eq!(b.path_and_query, "/v1/charges?limit=3");
        let b = build(&req(
            None,
            &["X-A: 1", "x-b:two words"],
            &["a=1", "b=2"],
            "http://[::1]:9000",
        ))
        .unwrap();
        assert_eq!(
            (b.method.as_str(), b.host.as_str(), b.port),
            ("POST", "::1", 9000)
        );
        assert_eq!(b.path_and_query, "/");
        assert_eq!(b.body, b"a=1&b=2");
        assert_eq!(b.headers["x-b"], "two words");
        assert_eq!(b.headers["content-length"], "7");
        let b = build(&req(Some("delete"), &[], &[], "https://h/x")).unwrap();
        assert_eq!(b.method, "delete");
    }

    #[test]
    fn refuses_bad_input_as_usage_errors() {
        for r in [
            req(None, &[], &[], "api.stripe.com/v1/charges"),
            req(None, &[], &[], "ftp://h/x"),
            req(None, &["no colon"], &[], "https://h/"),
            req(None, &[], &["@/nonexistent/file"], "https://h/"),
        ] {
            let e = build(&r).err().unwrap();
            assert!(e.downcast_ref::<ConfigProblem>().is_some(), "{e}");
        }
    }
}
