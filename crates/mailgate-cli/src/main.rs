//! The `mailgate` binary: `serve`, `worker` and `migrate` run the product; the other
//! subcommands talk to a running server over its HTTP API.
#![forbid(unsafe_code)]

mod bootstrap;
mod client;
mod config;
mod runtime;
mod secrets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Overrides};

/// mailgate: a self-hosted gateway for transactional email.
#[derive(Parser)]
#[command(name = "mailgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the delivery workers in one process.
    Serve(ServerArgs),
    /// Run delivery workers only (no API).
    Worker(ServerArgs),
    /// Apply pending database migrations and exit.
    Migrate(ServerArgs),
    /// Print the embedded default configuration (commented).
    Config,
    /// Send a message.
    Send(Box<client::SendArgs>),
    /// Show messages.
    Emails(client::EmailsArgs),
    /// List events.
    Events(client::EventsArgs),
    /// Manage environments (admin key).
    Environments(client::EnvironmentsArgs),
    /// Manage an environment's API keys.
    Keys(client::KeysArgs),
    /// Manage an environment's provider.
    Providers(client::ProvidersArgs),
    /// Manage an environment's templates (usage types).
    Templates(client::TemplatesArgs),
    /// Manage an environment's failure notifications and event stream.
    Notifications(client::NotificationsArgs),
    /// Show an environment's reputation (bounce and complaint rates).
    Reputation(client::ReputationArgs),
    /// An environment's suppression list: list, check, add, remove.
    Suppressions(client::SuppressionsArgs),
    /// What happened to mail for one address.
    Recipients(client::RecipientsArgs),
    /// Manage the key that encrypts provider credentials.
    Secrets(secrets::SecretsArgs),
}

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Configuration file (default: ./mailgate.toml if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH or postgres://… (overrides database.url).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl ServerArgs {
    /// Loads the configuration with these flags on top.
    pub fn load(&self) -> anyhow::Result<Config> {
        Config::load(&Overrides {
            config_file: self.config.clone(),
            listen: self.listen,
            database: self.database.clone(),
        })
    }
}

fn init_tracing(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// mimalloc instead of glibc's malloc: see bench/JOURNAL.md (the request path spent a fifth of its
/// CPU in glibc's allocator, much of it waiting on arena locks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run_server(&args, Mode::Serve).await,
        Command::Worker(args) => run_server(&args, Mode::Worker).await,
        Command::Migrate(args) => run_server(&args, Mode::Migrate).await,
        Command::Config => {
            print!("{}", config::DEFAULTS);
            Ok(())
        }
        Command::Send(args) => client::send(*args).await,
        Command::Emails(args) => client::emails(args).await,
        Command::Events(args) => client::events(args).await,
        Command::Environments(args) => client::environments(args).await,
        Command::Keys(args) => client::keys(args).await,
        Command::Providers(args) => client::providers(args).await,
        Command::Templates(args) => client::templates(args).await,
        Command::Notifications(args) => client::notifications(args).await,
        Command::Reputation(args) => client::reputation(args).await,
        Command::Suppressions(args) => client::suppressions(args).await,
        Command::Recipients(args) => client::recipients(args).await,
        Command::Secrets(args) => secrets::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    Serve,
    Worker,
    Migrate,
}

async fn run_server(args: &ServerArgs, mode: Mode) -> anyhow::Result<()> {
    let config = args.load()?;
    init_tracing(&config);
    match mode {
        Mode::Serve => runtime::run(config, true).await,
        Mode::Worker => runtime::run(config, false).await,
        Mode::Migrate => {
            let db = runtime::open_database(&config, true).await?;
            db.close().await;
            println!("database migrated");
            Ok(())
        }
    }
}
