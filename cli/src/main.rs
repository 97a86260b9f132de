//! The `rill` binary: `rill broker` runs a node; admin subcommands come with their issues.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

// jemalloc, not glibc malloc: after bursts of replicated produce (each replica copies batches
// on their way to the file) glibc kept the freed buffers, 0.5-1.5 GB per cluster node.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, unless `_RJEM_MALLOC_CONF` says otherwise. Without a background thread
/// jemalloc returns freed pages to the OS only while the process keeps allocating, so a broker
/// that went idle after a burst kept hundreds of MB it no longer used. Freed pages are
/// returned within about a second: with 5 s, the 3-node benchmark's throughput phases peaked
/// at 762-805 MB over the nodes, with 1 s at 619 MB, at the same throughput.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

mod admin;
mod admin_http;
mod client;
mod consume;
mod groups;
mod member;
mod memory_metrics;
mod output;
mod progress;
mod reassign;
mod security;
mod settings;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: a Kafka-compatible log broker, and admin tools that speak only the Kafka protocol",
    after_help = "Admin commands work against any Kafka-protocol broker (Rill or Apache Kafka).\n\
Examples:\n  rill topic create orders --partitions 6 --config retention.ms=86400000\n  \
rill topic describe orders --output json\n  printf 'k1:v1\\nk2:v2\\n' | rill produce orders --key-separator :\n  \
rill consume orders --offset earliest --exit-at-end --format '%p/%o %k=%v\\n'\n  \
rill consume orders --group billing --from earliest\n  \
rill group describe my-group\n  rill group reset-offsets my-group --topic orders --to-earliest --execute\n  \
rill cluster health\n  rill topic reassign orders --partition 0 --replicas 1,2,4 --wait 120\n\nConnection: -b/--bootstrap-server, --command-config FILE (Kafka client properties), \
--profile NAME\n(from $RILL_CONFIG or ~/.config/rill/config.toml), $RILL_BOOTSTRAP_SERVER, $RILL_PROFILE.\n\nExit status: 0 success, 1 Kafka or connection error, 2 usage error."
)]
struct Cli {
    /// Log format for the broker's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RILL_LOG_FORMAT", hide = true)]
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
    /// Create, list, describe, alter, reassign and delete topics.
    Topic {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::TopicCmd,
    },
    /// Read and change topic and broker configs.
    Config {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::ConfigCmd,
    },
    /// Add, list and remove ACLs (the broker needs authorizer.class.name set).
    Acl {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: security::AclCmd,
    },
    /// Add, list and remove SCRAM users (SCRAM-SHA-256/512).
    User {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: security::UserCmd,
    },
    /// Show the cluster (id, controller, brokers), check its health, unregister a broker, or
    /// change the metadata quorum's voters.
    Cluster {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::ClusterCmd,
    },
    /// List, describe, reset and delete consumer groups and their offsets.
    Group {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::GroupCmd,
    },
    /// Produce lines from stdin, one record per line.
    ///
    /// Examples:
    ///   echo hello | rill produce orders
    ///   printf 'k1:v1\nk2:v2\n' | rill produce orders --key-separator : --acks all --compression zstd
    #[command(verbatim_doc_comment)]
    Produce {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(flatten)]
        args: admin::ProduceArgs,
    },
    /// Consume records and print them, assign-style or as a member of a consumer group.
    ///
    /// Without --group: all partitions (or --partition) from --offset, no group.
    /// With --group: the group's members share the partitions (range or roundrobin, computed
    /// by whichever member leads the group, Java consumers included); each partition starts
    /// after the group's committed offset, else at --from earliest|latest; offsets of printed
    /// records are committed at least every second and at exit (--commit none: never).
    /// Ctrl-C commits and leaves the group; a second Ctrl-C exits at once.
    ///
    /// Format (kcat-like): %t topic, %p partition, %o offset, %k key, %v value, %T timestamp,
    /// %h headers, %% a percent sign; \n, \t and \\ are escapes.
    ///
    /// Examples:
    ///   rill consume orders --offset earliest --exit-at-end
    ///   rill consume orders --partition 0 --offset 42 --num 10 --format '%o %k:%v\n'
    ///   rill consume orders --offset @1700000000000 --output json
    ///   rill consume orders invoices --group billing --from earliest --format '%t/%p/%o %v\n'
    ///   rill consume orders --group billing --exit-at-end --assignor roundrobin
    #[command(verbatim_doc_comment)]
    Consume {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(flatten)]
        args: consume::ConsumeArgs,
    },
    /// Print a shell completion script: rill completion bash > /etc/bash_completion.d/rill
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn init_logging(format: LogFormat) {
    // openraft reports every election step and every unreachable heartbeat at INFO/WARN; an
    // unreachable peer would flood the log, so only its errors show unless RILL_LOG asks.
    let filter = EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| EnvFilter::new("info,openraft=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Broker { config, sets } => {
            init_logging(cli.log_format);
            return match run_broker(config, sets) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("rill broker: {e:#}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "rill", &mut std::io::stdout());
            return std::process::ExitCode::SUCCESS;
        }
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rill: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Topic { conn, cmd } => admin::topic(&conn, cmd).await,
            Command::Config { conn, cmd } => admin::config(&conn, cmd).await,
            Command::Cluster { conn, cmd } => admin::cluster(&conn, cmd).await,
            Command::Group { conn, cmd } => admin::group(&conn, cmd).await,
            Command::Acl { conn, cmd } => security::acl(&conn, cmd).await,
            Command::User { conn, cmd } => security::user(&conn, cmd).await,
            Command::Produce { conn, args } => admin::produce(&conn, args).await,
            Command::Consume { conn, args } => consume::consume(&conn, args).await,
            Command::Broker { .. } | Command::Completion { .. } => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return std::process::ExitCode::SUCCESS;
                }
            }
            eprintln!("rill: {e:#}");
            let usage = e.downcast_ref::<admin::UsageError>().is_some();
            std::process::ExitCode::from(if usage { 2 } else { 1 })
        }
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
    rill_broker::metrics::register_source(std::sync::Arc::new(memory_metrics::Jemalloc));
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        // Bound before recovery, so health probes see "live, not ready" while logs recover.
        let admin = rill_broker::admin_http::AdminState::new();
        if let Some(addr) = rill_broker::admin_http::address(&config)? {
            let listener = rill_broker::admin_http::bind(addr).await?;
            tokio::spawn(rill_broker::admin_http::serve(listener, admin.clone()));
        }
        // Open storage on a blocking thread so the admin listener keeps answering meanwhile.
        let broker = if config.is_cluster() {
            rill_broker::Broker::start(config).await?
        } else {
            tokio::task::spawn_blocking(move || rill_broker::Broker::open(config)).await??
        };
        admin.set_broker(broker.clone());
        tracing::info!(
            node_id = broker.node_id(),
            cluster_id = broker.topics.cluster_id(),
            topics = broker.topics.list().len(),
            recovery_ms = started.elapsed().as_millis() as u64,
            "storage recovered"
        );
        tokio::spawn(broker.clone().run_maintenance());
        let server = tokio::spawn(rill_broker::server::serve(broker.clone()));
        admin.set_serving();
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
