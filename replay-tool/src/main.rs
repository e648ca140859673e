//! `replay-tool`: lets an auditor prove, without trusting the server, that
//! the books are right, and look into them.
//!
//! Reads a data directory (`--data-dir`, the server stopped, or a backup) or
//! a running server (`--url` with `--admin-token`, through
//! `GET /api/v1/admin/events`, decoding the stored bytes itself and checking
//! every hash against the chain). Exit codes: 0 all good; 1 the history is
//! wrong (the first bad sequence number is named) or, for `rebuild`, the
//! models differ, or the invoice is unknown; 2 the tool could not do its job
//! (no log, server unreachable, bad arguments).

mod backup;
mod balances;
mod describe;
mod export;
mod generate;
mod invoice;
mod progress;
mod rebuild;
mod source;
mod sql_out;
mod stats;
mod verify;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use ledger_core::ids::{InvoiceId, OrganizationId};
use source::{Failure, Source};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A replay allocates and frees millions of small values (decoded events,
/// sled's pages) on several threads; under glibc's allocator a third of
/// verify's time went to malloc and free. mimalloc, built without transparent
/// huge pages (zeroing 2 MiB pages on first touch cost more than it saved).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "replay-tool",
    version,
    about = "Verify, rebuild, query and back up an Expereon event log, trusting nothing but the hash chain"
)]
struct Cli {
    #[command(flatten)]
    source: SourceArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct SourceArgs {
    /// The server's data directory (its log is DIR/log), the server stopped, or a backup.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// A running server's base URL (e.g. http://127.0.0.1:8080), read through its admin event stream.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// The server's admin token (for --url).
    #[arg(
        long,
        global = true,
        env = "EXPEREON_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

impl SourceArgs {
    fn source(&self) -> anyhow::Result<Source> {
        match (&self.data_dir, &self.url) {
            (Some(dir), None) => Ok(Source::DataDir(dir.clone())),
            (None, Some(url)) => {
                let token = self.admin_token.clone().ok_or_else(|| {
                    anyhow!("--url needs --admin-token (or EXPEREON_ADMIN_TOKEN)")
                })?;
                Ok(Source::Url {
                    base: source::base_url(url),
                    token,
                })
            }
            (None, None) => Err(anyhow!(
                "say where the log is: --data-dir DIR or --url URL --admin-token T"
            )),
            (Some(_), Some(_)) => Err(anyhow!("--data-dir and --url exclude each other")),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Re-prove the whole history: hash chain from genesis, dense sequence,
    /// stream versions, every event decodes, every invariant (replayed through
    /// the domain), money conserved. Exit 0 only when all hold; otherwise
    /// names the first bad sequence number and why, and exits 1.
    Verify {
        /// Also print the throughput (events/s).
        #[arg(long)]
        bench: bool,
    },
    /// Rebuild every projection from sequence 0 into a fresh directory
    /// (JSON lines, and the SQL read models the server uses,
    /// DIR/read-models.sqlite), compare with the other models of the same
    /// state, report differences.
    Rebuild {
        /// A fresh (absent or empty) directory for summary.json and the
        /// projections; with --sql-only, any directory without a
        /// read-models.sqlite.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only write DIR/read-models.sqlite, as fast as it goes (the chain is
        /// still checked; nothing is compared), and print events/s. For
        /// benchmarks, and operators replacing a stopped server's read models
        /// (the file holds no webhook deliveries: the old file's delivery
        /// records are not derivable from the log and are not carried over).
        #[arg(long, conflicts_with_all = ["api_key", "api_secret"])]
        sql_only: bool,
        /// Events per SQL transaction.
        #[arg(long, value_name = "N", default_value_t = sql_out::DEFAULT_BATCH)]
        sql_batch: usize,
        /// With --url: an organization's API key id, to compare the server's
        /// live views of that organization with the rebuilt ones.
        #[arg(long, requires = "api_secret", env = "EXPEREON_API_KEY")]
        api_key: Option<String>,
        /// The secret of --api-key.
        #[arg(
            long,
            requires = "api_key",
            env = "EXPEREON_API_SECRET",
            hide_env_values = true
        )]
        api_secret: Option<String>,
    },
    /// Every balance as it stood at a moment.
    Balances {
        /// RFC 3339 time, or YYYY-MM-DD for the end of that day (UTC).
        #[arg(long, value_name = "TIME", value_parser = balances::parse_time)]
        as_of: ledger_core::time::Timestamp,
        /// Only this organization's balances.
        #[arg(long, value_name = "ID")]
        org: Option<OrganizationId>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stream events to stdout as JSON lines or CSV.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: export::Format,
        #[arg(long, value_name = "N", default_value_t = 1)]
        from_seq: u64,
        #[arg(long, value_name = "N")]
        to_seq: Option<u64>,
        /// Only events concerning this organization.
        #[arg(long, value_name = "ID")]
        org: Option<OrganizationId>,
        /// Exact event type, or a prefix ending in `*` (e.g. `Invoice*`); comma-separated for several.
        #[arg(long = "type", value_name = "PATTERN")]
        types: Option<String>,
    },
    /// An invoice's whole history, human-readable.
    Invoice {
        /// The invoice id.
        id: InvoiceId,
    },
    /// Events by type and by day, organizations, streams.
    Stats {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy the log into a fresh DIR/log, checking the chain as it goes
    /// (hot through --url, or from a stopped server's --data-dir).
    Backup {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a synthetic but valid ledger of exactly N events into DIR/log.
    Generate {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_name = "N")]
        events: u64,
        /// Seller/buyer organization pairs.
        #[arg(long, default_value_t = 8)]
        pairs: usize,
        /// Seed for ids and amounts (the same seed gives the same log).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events per append.
        #[arg(long, default_value_t = 20_000)]
        batch: usize,
        /// Give every generated API key this secret (its SHA-256 is stored,
        /// as the server stores it), so benchmarks can call the generated
        /// organizations; without it the keys have placeholder hashes.
        #[arg(long, value_name = "SECRET", env = "EXPEREON_GENERATE_API_SECRET")]
        api_secret: Option<String>,
    },
}

/// `dir` must be absent or empty; it is created.
pub fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(anyhow!(
                "{} is not empty; give a fresh directory",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))
}

fn run(cli: Cli, out: &mut dyn Write) -> Result<bool, Failure> {
    if let Cmd::Generate {
        out: dir,
        events,
        pairs,
        seed,
        batch,
        api_secret,
    } = &cli.command
    {
        let options = generate::Options {
            events: *events,
            pairs: *pairs,
            seed: *seed,
            batch: (*batch).max(1),
            api_secret: api_secret.clone(),
        };
        generate::run(dir, &options, out)?;
        return Ok(true);
    }
    let source = cli.source.source()?;
    match cli.command {
        Cmd::Verify { bench } => verify::run(&source, bench, out),
        Cmd::Rebuild {
            out: dir,
            sql_only,
            sql_batch,
            api_key,
            api_secret,
        } => {
            if sql_only {
                return rebuild::run_sql_only(&source, &dir, sql_batch.max(1), out);
            }
            let creds = match (api_key, api_secret) {
                (Some(key), Some(secret)) => Some(rebuild::OrgCredentials { key, secret }),
                _ => None,
            };
            rebuild::run(&source, &dir, creds.as_ref(), sql_batch.max(1), out)
        }
        Cmd::Balances { as_of, org, json } => {
            balances::run(&source, as_of, org, json, out).map(|_| true)
        }
        Cmd::Export {
            format,
            from_seq,
            to_seq,
            org,
            types,
        } => {
            let filter = export::Filter {
                from_seq,
                to_seq,
                org,
                types: types.as_deref().map(export::TypePattern::parse),
            };
            export::run(&source, format, &filter, out).map(|_| true)
        }
        Cmd::Invoice { id } => invoice::run(&source, id, out),
        Cmd::Stats { json } => stats::run(&source, json, out).map(|_| true),
        Cmd::Backup { out: dir } => backup::run(&source, &dir, out).map(|_| true),
        Cmd::Generate { .. } => Ok(true),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = run(cli, &mut out);
    let flushed = out.flush();
    match result {
        Ok(true) => {}
        Ok(false) => return ExitCode::from(1),
        Err(Failure::Bad { seq, reason }) => {
            eprintln!("replay-tool: the log is bad at seq {seq}: {reason} (run `replay-tool verify` for the full check)");
            return ExitCode::from(1);
        }
        Err(Failure::Io(e)) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("replay-tool: {e:#}");
            return ExitCode::from(2);
        }
    }
    match flushed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("replay-tool: writing the output: {e}");
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A reader that stopped early (`| head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>()
                .is_some_and(|ce| match ce.kind() {
                    csv::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::BrokenPipe,
                    _ => false,
                })
    })
}
