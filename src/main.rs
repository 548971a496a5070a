//! The `strand` binary: `strand serve` (the default) runs a broker.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use strand::config::Config;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "strand",
    version,
    about = "A Kafka-wire-compatible streaming broker"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Manage topics on any Kafka-compatible broker.
    Topics(strand::cli::TopicsArgs),
    /// Show the cluster a broker belongs to.
    Cluster(strand::cli::ClusterArgs),
    /// Inspect, reset and delete consumer groups on any Kafka-compatible broker.
    Groups(strand::cli::GroupsArgs),
    /// Check what a Kafka-compatible cluster promises under a workload (lost, duplicated,
    /// reordered, aborted or uncommitted records; committed offsets going backwards).
    #[cfg(feature = "verify")]
    Verify(strand::verify::VerifyArgs),
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Config file (TOML, Kafka's config names). Env: STRAND_CONFIG.
    #[arg(long, env = "STRAND_CONFIG")]
    config: Option<String>,
    /// Address to listen on (`listeners`), e.g. 127.0.0.1:9092.
    #[arg(long)]
    listen: Option<String>,
    /// Host:port given to clients (`advertised.listeners`).
    #[arg(long)]
    advertised: Option<String>,
    /// Data directory (`log.dirs`).
    #[arg(long)]
    data_dir: Option<String>,
    /// Broker id (`node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// Cluster mode: etcd endpoints, comma-separated (`etcd.endpoints`). Env:
    /// STRAND_ETCD_ENDPOINTS.
    #[arg(long, value_name = "HOST:PORT,...")]
    etcd_endpoints: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (`metrics.listen`).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Any setting by its Kafka name, e.g. --set num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut overrides: BTreeMap<String, String> = BTreeMap::new();
    if let Some(path) = &args.config {
        overrides.extend(Config::read_file(path)?);
    }
    overrides.extend(Config::from_env(std::env::vars())?);
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set expects KEY=VALUE, got `{kv}`"))?;
        overrides.insert(k.trim().to_string(), v.trim().to_string());
    }
    if let Some(v) = &args.listen {
        overrides.insert("listeners".into(), v.clone());
    }
    if let Some(v) = &args.advertised {
        overrides.insert("advertised.listeners".into(), v.clone());
    }
    if let Some(v) = &args.data_dir {
        overrides.insert("log.dirs".into(), v.clone());
    }
    if let Some(v) = args.node_id {
        overrides.insert("node.id".into(), v.to_string());
    }
    if let Some(v) = &args.etcd_endpoints {
        overrides.insert("etcd.endpoints".into(), v.clone());
    }
    if let Some(v) = &args.metrics_listen {
        overrides.insert("metrics.listen".into(), v.clone());
    }
    Ok(Config::from_overrides(&overrides)?)
}

/// Raises the soft open-files limit to the hard one (segment files, sockets): a broker with
/// many partitions needs more than the usual soft default of 1024.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let from = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                info!(from, to = lim.rlim_cur, "raised the open files limit");
            }
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    raise_open_files_limit();
    let mut running = strand::Running::start(config).await?;
    info!(
        "strand {} serving Kafka on {}",
        env!("CARGO_PKG_VERSION"),
        running.addr
    );
    let shutdown = running.shutdown_sender();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        let _ = shutdown.send(true);
    });
    running.wait().await?;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs an admin command; a failure is one sentence on stderr and exit status 1.
fn admin(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ! {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(command));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => cli.serve,
        Some(Command::Topics(a)) => admin(strand::cli::topics(a)),
        Some(Command::Cluster(a)) => admin(strand::cli::cluster(a)),
        Some(Command::Groups(a)) => admin(strand::cli::groups(a)),
        #[cfg(feature = "verify")]
        Some(Command::Verify(a)) => std::process::exit(strand::verify::run(a)),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(args))
}
