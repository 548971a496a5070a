//! The admin CLI: `strand topics create|list|describe|alter|delete`, `strand cluster status`
//! and `strand groups list|describe|reset-offsets|delete`.
//!
//! Every command speaks the Kafka protocol to the bootstrap broker ([`client`]), using only
//! standard APIs (ApiVersions, Metadata, CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, IncrementalAlterConfigs, DescribeCluster) at versions negotiated with the
//! broker, so it works against Kafka too. Output is a table, or JSON with `--json`. A failure
//! prints one sentence to stderr and exits with status 1 (usage errors: 2, from clap).

/// `println!` that ignores a closed stdout (`strand topics list | head` must not panic).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub use crate::client;
mod cluster;
mod groups;
mod table;
mod topics;

use std::time::Duration;

use clap::{Args, Subcommand};

/// Options every admin command takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Broker to talk to (HOST:PORT).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the broker.
    #[arg(long, default_value_t = 30, global = true)]
    pub timeout: u64,
}

impl Common {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    async fn connect(&self) -> anyhow::Result<client::Client> {
        client::Client::connect(&self.bootstrap, self.timeout()).await
    }
}

#[derive(Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// List topics with their partition counts.
    List,
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short = 'r', long)]
        replication_factor: Option<i16>,
        /// Topic config, e.g. --config retention.ms=3600000 (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Show topics' partitions, replicas and config overrides (all topics without names).
    Describe { names: Vec<String> },
    /// Add partitions and change or remove topic configs.
    Alter {
        name: String,
        /// New (larger) partition count.
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Set a topic config (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a topic config override, back to the default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed if a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Cluster id, controller, brokers, and partition health.
    Status,
    /// Partitions whose ISR is smaller than their replica set, or that have no leader.
    UnderReplicated,
}

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// List consumer groups with their state.
    List,
    /// Members, committed offsets and lag per partition of a group.
    Describe { group: String },
    /// Move a group's committed offsets (dry run unless --execute). The group must be empty.
    ResetOffsets {
        group: String,
        /// Topics to reset (all partitions); default: every partition the group has offsets for.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// To the log start offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To the first record at or after this time (ms since the epoch).
        #[arg(long, group = "target", value_name = "MS")]
        to_datetime: Option<i64>,
        /// To this offset (clamped to the partition's range).
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it, only print them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete empty groups and their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Runs `strand groups ...`.
pub async fn groups(args: GroupsArgs) -> anyhow::Result<()> {
    let c = &args.common;
    match args.command {
        GroupsCommand::List => groups::list(c).await,
        GroupsCommand::Describe { group } => groups::describe(c, &group).await,
        GroupsCommand::ResetOffsets {
            group,
            topics,
            to_earliest,
            to_latest,
            to_datetime,
            to_offset,
            execute,
        } => {
            let to = match (to_earliest, to_latest, to_datetime, to_offset) {
                (true, _, _, _) => groups::ResetTo::Earliest,
                (_, true, _, _) => groups::ResetTo::Latest,
                (_, _, Some(ts), _) => groups::ResetTo::Timestamp(ts),
                (_, _, _, Some(o)) => groups::ResetTo::Offset(o),
                _ => anyhow::bail!(
                    "say where to: --to-earliest, --to-latest, --to-datetime MS or --to-offset N"
                ),
            };
            groups::reset_offsets(c, &group, &topics, to, execute).await
        }
        GroupsCommand::Delete { groups: names } => groups::delete(c, &names).await,
    }
}

/// Runs `strand topics ...`.
pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let c = &args.common;
    match args.command {
        TopicsCommand::List => topics::list(c).await,
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            topics::create(
                c,
                &name,
                partitions.unwrap_or(-1),
                replication_factor.unwrap_or(-1),
                &parse_configs(&configs)?,
                if_not_exists,
            )
            .await
        }
        TopicsCommand::Describe { names } => topics::describe(c, &names).await,
        TopicsCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                anyhow::bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            topics::alter(
                c,
                &name,
                partitions,
                &parse_configs(&configs)?,
                &delete_configs,
            )
            .await
        }
        TopicsCommand::Delete { names, if_exists } => topics::delete(c, &names, if_exists).await,
    }
}

/// Runs `strand cluster ...`.
pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status => cluster::status(&args.common).await,
        ClusterCommand::UnderReplicated => cluster::under_replicated(&args.common).await,
    }
}

fn parse_configs(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--config expects KEY=VALUE, got `{kv}`"))
        })
        .collect()
}
