//! The HTTP face of the ledger: authentication, request parsing at the edge,
//! idempotency, one route file per resource, and the one place errors become
//! HTTP responses.

pub mod api_log;
pub mod app;
pub mod auth;
pub mod background;
pub mod backup;
pub mod body;
pub mod bulk;
pub mod commands;
pub mod config;
pub mod disk;
pub mod error;
pub mod export;
pub mod input;
pub mod listener;
pub mod master_key;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod query;
pub mod rate_limit;
pub mod routes;
pub mod webhooks;
pub use projections::views;

/// The `expereon` command line, shared by every binary that embeds the server.
pub mod cli {
    use crate::config::Config;
    use clap::{Parser, Subcommand};

    #[derive(Parser)]
    #[command(
        name = "expereon",
        version,
        about = "Event-sourced B2B financial ledger"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    // Parsed once at start: the size of the settings' variant costs nothing.
    #[allow(clippy::large_enum_variant)]
    #[derive(Subcommand)]
    enum Cmd {
        /// Serve the REST API on the embedded store.
        Serve(Config),
        /// Copy the event log and stored files, hot through the admin API or from a stopped data dir.
        Backup(crate::backup::BackupArgs),
        /// Check every stored file the log references against its size and SHA-256 (server stopped, or a backup).
        VerifyFiles(crate::backup::files::VerifyFilesArgs),
    }

    pub fn main() -> anyhow::Result<()> {
        let cli = Cli::parse();
        // Log lines are written by a thread of their own: a request's
        // `served` line is handed over, not written to stderr by the worker
        // that served it. Lines are never dropped (a full buffer makes the
        // logger wait); the guard writes what is left when main returns.
        let (writer, _flush_at_exit) =
            tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("log-writer")
                .finish(std::io::stderr());
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer);
        // EXPEREON_LOG_FORMAT=json: one JSON object per line, for log shippers.
        if std::env::var("EXPEREON_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
            logs.json().init();
        } else {
            logs.init();
        }
        match cli.command {
            Cmd::Serve(config) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(crate::app::serve(config))
            }
            Cmd::Backup(args) => crate::backup::run(args),
            Cmd::VerifyFiles(args) => crate::backup::files::verify_files(args),
        }
    }
}
