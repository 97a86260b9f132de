//! The `rill` binary: `rill broker` runs a node; admin subcommands come with their issues.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "rill", version, about = "Rill: a Kafka-compatible log broker")]
struct Cli {
    /// Log format for the broker's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RILL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node.
    ///
    /// Configuration uses Kafka's keys (listeners, advertised.listeners, log.dirs,
    /// num.partitions, ...), read from --config (Java properties, or TOML if the file ends in
    /// .toml), then RILL_* environment variables (RILL_LOG_DIRS=... sets log.dirs), then --set.
    ///
    /// Example: rill broker --set listeners=PLAINTEXT://127.0.0.1:9092 --set log.dirs=./rill-data
    Broker {
        /// Properties or TOML file with Kafka-named keys.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override one key, e.g. --set num.partitions=3 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Broker { config, sets } => match run_broker(config, sets) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("rill broker: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
    }
}

/// Each partition keeps its active segment open, so thousands of partitions need more file
/// descriptors than the usual soft limit of 1024: raise it to the hard limit, as Kafka's
/// docs tell operators to.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!(soft = lim.rlim_cur, "could not raise the open-files limit");
            }
        }
    }
}

fn run_broker(config: Option<PathBuf>, sets: Vec<String>) -> anyhow::Result<()> {
    let config = rill_broker::BrokerConfig::load(config.as_deref(), &sets)?;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("rill").build()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let broker = rill_broker::Broker::open(config)?;
        tracing::info!(
            node_id = broker.node_id(),
            cluster_id = broker.topics.cluster_id(),
            topics = broker.topics.list().len(),
            recovery_ms = started.elapsed().as_millis() as u64,
            "storage recovered"
        );
        tokio::spawn(broker.clone().run_maintenance());
        let server = tokio::spawn(rill_broker::server::serve(broker.clone()));
        tokio::select! {
            r = server => r??,
            _ = shutdown_signal() => tracing::info!("shutting down"),
        }
        broker.topics.close_all();
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
