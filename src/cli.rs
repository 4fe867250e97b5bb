//! The command line: clap definitions and dispatch to the commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "sudomode",
    version,
    about = "The missing sudo for AI agents: an intercepting HTTPS proxy that holds risky API calls for human approval"
)]
struct Cli {
    /// Log format on stderr (filter with SUDOMODE_LOG, e.g. `info` or `sudomode=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone, Default)]
pub struct ConfigArg {
    /// Configuration file (default: $SUDOMODE_CONFIG, else ./sudomode.yaml if present, else built-in defaults).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the proxy and the dashboard.
    Run {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Override proxy.listen.
        #[arg(long, value_name = "ADDR")]
        proxy_listen: Option<SocketAddr>,
        /// Override dashboard.listen.
        #[arg(long, value_name = "ADDR")]
        dashboard_listen: Option<SocketAddr>,
    },
    /// Write a starter sudomode.yaml and policies/default.yaml, and create the CA (never overwrites).
    Init {
        /// Directory to initialise.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// The local certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Print the `export` lines an agent's shell needs.
    Env {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Agent whose credentials go into the proxy URL.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Run a command with the agent's proxy and CA variables set.
    Exec {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        agent: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Check, explain and test policies.
    Policy {
        #[command(subcommand)]
        command: crate::commands::policy_cmd::PolicyCommand,
    },
    /// Verify and export the audit log.
    Audit {
        #[command(subcommand)]
        command: crate::commands::audit_cmd::AuditCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA if absent.
    Init {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Print the CA certificate path.
    Path {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Print subject, fingerprint and validity.
    Show {
        #[command(flatten)]
        cfg: ConfigArg,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUDOMODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `sudomode …`: parse the command line, run the command, map errors to exit
/// codes. `serving` is the binary's process set-up for the long-running
/// server (`run`), kept from the short commands and the agents `exec` starts.
pub fn main(serving: fn()) -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match dispatch(cli.command, serving) {
        Ok(code) => code,
        Err(e) => {
            let bad_config = e.downcast_ref::<crate::config::ConfigError>().is_some()
                || e.downcast_ref::<crate::app::ConfigProblem>().is_some();
            eprintln!("sudomode: {e:#}");
            ExitCode::from(if bad_config { 2 } else { 1 })
        }
    }
}

pub fn load(cfg: &ConfigArg) -> anyhow::Result<crate::config::Config> {
    Ok(crate::config::Config::discover(cfg.config.as_deref())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn dispatch(command: Command, serving: fn()) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            cfg,
            proxy_listen,
            dashboard_listen,
        } => {
            serving();
            let mut config = load(&cfg)?;
            if let Some(a) = proxy_listen {
                config.proxy_listen = a;
            }
            if let Some(a) = dashboard_listen {
                config.dashboard_listen = a;
            }
            runtime()?.block_on(crate::app::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { dir } => crate::commands::init(&dir),
        Command::Ca { command } => match command {
            CaCommand::Init { cfg } => crate::commands::ca_init(&load(&cfg)?),
            CaCommand::Path { cfg } => {
                println!(
                    "{}",
                    crate::proxy::ca::CaPaths::new(&load(&cfg)?.ca_dir)
                        .cert
                        .display()
                );
                Ok(ExitCode::SUCCESS)
            }
            CaCommand::Show { cfg } => {
                print!("{}", crate::proxy::ca::describe(&load(&cfg)?.ca_dir)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Env { cfg, agent } => {
            crate::commands::env_command(cfg.config.as_deref(), agent.as_deref())
        }
        Command::Exec { cfg, agent, cmd } => {
            crate::commands::exec(cfg.config.as_deref(), agent.as_deref(), &cmd)
        }
        Command::Policy { command } => crate::commands::policy_cmd::run(command),
        Command::Audit { command } => crate::commands::audit_cmd::run(command),
    }
}
