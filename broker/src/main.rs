//! The `sluice` binary: flags and config file → [`sluice::run`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use sluice::config::{flatten_toml, from_env, BrokerConfig};
use tokio_util::sync::CancellationToken;

/// Sluice: a Kafka-compatible message broker.
///
/// With no arguments, runs a single combined node (broker and controller) listening on
/// PLAINTEXT://127.0.0.1:9092 with its data under ./data. Settings use Kafka's config names; each
/// is taken from, in rising precedence: the TOML file given by --config, SLUICE_* environment
/// variables (SLUICE_LOG_RETENTION_MS=60000 sets log.retention.ms), then flags.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about)]
struct Args {
    /// Data directory (Kafka's `log.dirs`) [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listeners, Kafka syntax (`listeners`) [default: PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093].
    /// Port 0 picks a free port.
    #[arg(long, value_name = "PLAINTEXT://HOST:PORT,CONTROLLER://HOST:PORT")]
    listeners: Option<String>,
    /// Address given to clients in metadata (`advertised.listeners`) [default: the listener]
    #[arg(long, value_name = "PLAINTEXT://HOST:PORT")]
    advertised_listeners: Option<String>,
    /// This node's id (`node.id`) [default: 1]
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// Roles of this node (`process.roles`): `broker`, `controller` or `broker,controller` [default: both]
    #[arg(long, value_name = "ROLES")]
    process_roles: Option<String>,
    /// The controller quorum (`controller.quorum.voters`), e.g. `1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293`
    /// [default: this node alone]
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum: Option<String>,
    /// TOML file of Kafka-named settings, e.g. `num.partitions = 3`
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any broker config by its Kafka name, repeatable: --set log.retention.ms=60000
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Tool>,
}

/// Operator commands (instead of running a node).
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// Print the metadata quorum's leader, term and each voter's lag (like `kafka-metadata-quorum
    /// describe --status`)
    DescribeQuorum {
        /// A broker to ask, HOST:PORT
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_server: String,
    },
}

fn collect_values(args: &Args) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        values.extend(flatten_toml(path, &text)?);
    }
    values.extend(from_env(std::env::vars()));
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set expects KEY=VALUE, got '{kv}'"))?;
        values.insert(k.trim().to_string(), v.to_string());
    }
    let flags = [
        ("log.dirs", args.data_dir.as_ref().map(|d| d.display().to_string())),
        ("listeners", args.listeners.clone()),
        ("advertised.listeners", args.advertised_listeners.clone()),
        ("node.id", args.node_id.map(|n| n.to_string())),
        ("process.roles", args.process_roles.clone()),
        ("controller.quorum.voters", args.controller_quorum.clone()),
    ];
    for (name, value) in flags {
        if let Some(v) = value {
            values.insert(name.to_string(), v);
        }
    }
    Ok(values)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Tool::DescribeQuorum { bootstrap_server }) = &args.command {
        return match sluice::tools::describe_quorum(bootstrap_server) {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("describe-quorum: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match collect_values(&args).and_then(|v| BrokerConfig::from_values(v).map_err(anyhow::Error::from)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    for name in config.explicit.keys().filter(|n| !sluice::config::is_known_broker_config(n)) {
        tracing::warn!(config = %name, "unknown broker config; it has no effect");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            signals.cancel();
        });
        sluice::run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sluice failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
