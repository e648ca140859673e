//! `scale`: the release server on a large generated log, measured from
//! outside, the way an operator would see it.
//!
//! Given a data directory written by `replay-tool generate` (it holds
//! `log/`), this copies it to a scratch directory (the original stays
//! pristine for the next run), then:
//! 1. starts `expereon serve` on the copy and times it to the first `200`
//!    of `GET /healthz` (a: first start, the SQL read models built from
//!    seq 0), reads VmRSS/VmHWM, creates its own seller and buyer through
//!    the admin API and fills the seller with invoices;
//! 2. runs 60 s of mixed reads and writes over many connections and
//!    records per-operation latency (hdrhistogram) and throughput;
//! 3. stops the server with SIGTERM and starts it again (b), then kills it
//!    with SIGKILL under write load and starts it again (c), checking that
//!    no acknowledged write was lost;
//! 4. prints Markdown tables for BENCHMARKS.md on stdout (progress goes
//!    to stderr).
//!
//! Everything talks to 127.0.0.1 only; every loop is bounded in count and
//! time; the server is killed on every exit path (see `server::Server`).

mod api;
mod discover;
mod load;
mod report;
mod server;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use expereon_benches::client::{self, Api, Auth, Pair};
use expereon_benches::cpu_time;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Clone)]
#[command(
    name = "scale",
    about = "Start-up time, RSS and HTTP latency of the release server on a large generated log"
)]
pub struct Args {
    /// A data directory written by `replay-tool generate --out DIR` (holds DIR/log).
    /// Only read: the server runs on a copy.
    #[arg(long, env = "EXPEREON_BENCH_DATA", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The server binary [default: `expereon` next to this binary, i.e. target/release/expereon].
    #[arg(long, env = "EXPEREON_BENCH_SERVER", value_name = "PATH")]
    pub server: Option<PathBuf>,
    /// `replay-tool`, for the log's size (`stats --json`) [default: next to this binary; skipped if absent].
    #[arg(long, env = "EXPEREON_BENCH_REPLAY_TOOL", value_name = "PATH")]
    pub replay_tool: Option<PathBuf>,
    /// Skip `replay-tool stats` (it reads the whole log once).
    #[arg(long)]
    pub no_stats: bool,
    /// Where the copy and the server logs go [default: a fresh directory under $TMPDIR].
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Keep the scratch directory (copy, server logs) at the end.
    #[arg(long)]
    pub keep_scratch: bool,
    /// Run the server on the data directory itself instead of a copy (it is
    /// changed): for a log the disk cannot hold twice.
    #[arg(long)]
    pub in_place: bool,
    /// Port on 127.0.0.1 [default: a free one].
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seconds of mixed load.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Concurrent connections (tasks) of the mixed load.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How many of those run write lifecycles; the rest read.
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Invoices the benchmark's own seller gets before the load (a third
    /// each SUBMITTED, APPROVED, SETTLED).
    #[arg(long, default_value_t = 5000)]
    pub fill_invoices: u64,
    /// Seconds of write load before the SIGKILL.
    #[arg(long, default_value_t = 5)]
    pub kill_after_secs: u64,
    /// Longest wait for a healthy server, per start.
    /// (The first start on 10M events folds them all into SQLite: at
    /// 7k events/s that is about 25 minutes.)
    #[arg(long, default_value_t = 7200)]
    pub startup_timeout_secs: u64,
    /// Generated invoice ids to sample from the admin event stream.
    #[arg(long, default_value_t = 2000)]
    pub sample_ids: usize,
    /// The API secret of the generated organizations' first keys, if the
    /// log was generated with one (`replay-tool generate` cannot yet): then
    /// reads are also measured as a big generated seller.
    #[arg(
        long,
        env = "EXPEREON_BENCH_GENERATED_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub generated_secret: Option<String>,
}

fn main() -> std::process::ExitCode {
    // On Ctrl-C the run future is dropped, which kills the server and
    // removes the scratch copy (their Drop impls).
    client::run_main("scale", run(Args::parse()))
}

macro_rules! progress {
    ($($t:tt)*) => { eprintln!("scale: {}", format_args!($($t)*)) };
}

/// The scratch directory, removed on drop unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            progress!("scratch kept at {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            progress!("could not remove {}: {e}", self.path.display());
        }
    }
}

fn sibling(name: &str) -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn random_token() -> String {
    // At least 32 characters (the server refuses shorter admin tokens).
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Copies a directory tree (files and directories; sled has nothing else).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            bytes += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(bytes)
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// `replay-tool --data-dir DIR stats --json`, bounded in time.
async fn log_stats(tool: &Path, data: &Path, scratch: &Path) -> anyhow::Result<serde_json::Value> {
    let out_path = scratch.join("stats.json");
    let err_path = scratch.join("stats.err");
    let mut child = std::process::Command::new(tool)
        .arg("--data-dir")
        .arg(data)
        .args(["stats", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {}", tool.display()))?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            bail!("replay-tool stats took more than 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !status.success() {
        bail!(
            "replay-tool stats: {status}: {}",
            server::tail(&err_path, 5)
        );
    }
    let text = std::fs::read(&out_path)?;
    serde_json::from_slice(&text).context("replay-tool stats --json output")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let facts_at_start = report::Machine::read();
    let binary = args
        .server
        .clone()
        .or_else(|| sibling("expereon"))
        .ok_or_else(|| anyhow!("say where the server is: --server PATH"))?;
    if !binary.is_file() {
        bail!(
            "no server binary at {} (build it: cargo build --release -p command-api --bin expereon)",
            binary.display()
        );
    }
    if !args.data_dir.join("log").is_dir() {
        bail!(
            "{} has no log/: give the --out directory of `replay-tool generate`",
            args.data_dir.display()
        );
    }
    if args.writers >= args.connections {
        bail!("--writers must be below --connections (the rest read)");
    }

    // Scratch: the copy of the log and the server's logs.
    let scratch_path = match &args.scratch {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("expereon-scale-{}", std::process::id())),
    };
    if scratch_path.exists() && std::fs::read_dir(&scratch_path)?.next().is_some() {
        bail!("{} is not empty", scratch_path.display());
    }
    std::fs::create_dir_all(&scratch_path)?;
    let scratch = Scratch {
        path: scratch_path,
        keep: args.keep_scratch,
    };
    let data = if args.in_place {
        args.data_dir.clone()
    } else {
        scratch.path.join("data")
    };
    let source_bytes = if args.in_place {
        0
    } else {
        tree_size(&args.data_dir)
    };
    if let Some(free) = server::free_bytes(&scratch.path) {
        // The copy, then the SQL read models (1.4× the log at 1M events)
        // and the API logs grow beside it.
        if free < source_bytes.saturating_mul(4) {
            progress!(
                "warning: {} free under {}, the copy and what the server adds may need about {}",
                report::bytes(free),
                scratch.path.display(),
                report::bytes(source_bytes.saturating_mul(3))
            );
        }
    }
    progress!("copying {} to {}", args.data_dir.display(), data.display());
    let copy_started = Instant::now();
    let (from, to) = (args.data_dir.clone(), data.clone());
    let copied = if args.in_place {
        0
    } else {
        tokio::task::spawn_blocking(move || copy_tree(&from, &to)).await??
    };
    let copy_time = copy_started.elapsed();
    progress!(
        "copied {} in {}",
        report::bytes(copied),
        report::duration(copy_time)
    );

    let stats = match (
        args.no_stats,
        args.replay_tool.clone().or_else(|| sibling("replay-tool")),
    ) {
        (false, Some(tool)) if tool.is_file() => {
            progress!("replay-tool stats on the copy");
            let started = Instant::now();
            match log_stats(&tool, &data, &scratch.path).await {
                Ok(v) => {
                    progress!("stats took {}", report::duration(started.elapsed()));
                    Some(v)
                }
                Err(e) => {
                    progress!("no log stats: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };

    let port = if args.port == 0 {
        free_port()?
    } else {
        args.port
    };
    let spec = server::Spec {
        binary: binary.clone(),
        data_dir: data.clone(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        admin_token: random_token(),
        log_dir: scratch.path.clone(),
    };
    let root = format!("http://127.0.0.1:{port}");
    let startup_timeout = Duration::from_secs(args.startup_timeout_secs);
    let mut r = report::Report::new(&args, facts_at_start, binary, copied, copy_time, stats);

    // (a) First start: the write model and the SQL read models from seq 0.
    progress!("(a) first start on {}", data.display());
    let mut server = server::Server::start(&spec, "first")?;
    let first = server.wait_healthy(&root, startup_timeout).await?;
    progress!(
        "(a) healthy after {} (pid {})",
        report::duration(first.to_healthy),
        server.pid()
    );
    r.starts.push(first.clone());
    r.memory.push(("right after the first start", first.memory));

    let api = Api::new(&root, &spec.admin_token, args.connections, api::CHECKS)?;
    let head = api.log_sequence().await?;
    progress!("sampling generated invoice ids from the admin event stream (head {head})");
    let mut found = discover::discover(
        &api,
        head,
        args.sample_ids,
        args.generated_secret.as_deref(),
    )
    .await?;
    if let Some(big) = &found.big_seller {
        // A key whose hash matched but that the server refuses would only
        // measure 401s.
        let answer = api.get("/invoices?limit=1", Auth::Key(&big.creds)).await;
        if !matches!(&answer, Ok(a) if a.status == 200) {
            progress!("the generated seller's key was refused; not reading as it");
            found.big_seller = None;
        }
    }
    progress!(
        "{} generated invoice ids sampled ({} pages); big seller credentials: {}",
        found.foreign_ids.len(),
        found.pages,
        if found.big_seller.is_some() {
            "found"
        } else {
            "none"
        }
    );

    progress!("creating the benchmark's seller and buyer");
    let pair = Arc::new(client::create_pair(&api, &api::PAIR).await?);
    progress!("filling the seller with {} invoices", args.fill_invoices);
    let fill_started = Instant::now();
    let (own_ids, fill_stats) = load::fill(
        &api,
        &pair,
        args.fill_invoices,
        args.connections,
        Duration::from_secs(1200),
    )
    .await;
    r.fill = Some((own_ids.len() as u64, fill_started.elapsed(), fill_stats));
    if own_ids.is_empty() {
        bail!("the fill created no invoice; see the errors above");
    }
    progress!(
        "filled {} invoices in {}",
        own_ids.len(),
        report::duration(fill_started.elapsed())
    );
    r.memory
        .push(("after setup and fill, before the load", server.memory()));

    let own_count = own_ids.len() as u64;
    let own_org = format!("own seller, {} invoices at the start", own_count);
    let ops = read_ops(&r, &pair, own_ids, &own_org, &found);
    let readers = args.connections - args.writers;
    progress!(
        "mixed load: {} s, {readers} readers, {} writers",
        args.duration_secs,
        args.writers
    );
    let (log_from, server_cpu_from, client_cpu_from) =
        (server.log_len(), server.cpu(), cpu_time("/proc/self/stat"));
    let mixed = load::mixed(
        &api,
        &pair,
        Arc::new(ops.clone()),
        readers,
        args.writers,
        Duration::from_secs(args.duration_secs),
    )
    .await;
    r.memory.push(("after the mixed load", server.memory()));
    let cpu = |to: Option<Duration>, from: Option<Duration>| Some(to?.saturating_sub(from?));
    r.load_cpu = (
        cpu(server.cpu(), server_cpu_from),
        cpu(cpu_time("/proc/self/stat"), client_cpu_from),
    );
    r.served = server::served_times(&server.log_window(log_from, server.log_len()));
    r.own_invoices = (own_count, own_count + mixed.writes.ops[0].ok);
    r.mixed = Some((ops, mixed));

    // (b) Clean stop, start again.
    progress!("(b) SIGTERM");
    let stop_time = server.terminate(Duration::from_secs(300)).await?;
    r.clean_stop = Some(stop_time);
    drop(server);
    progress!(
        "(b) stopped in {}; starting again",
        report::duration(stop_time)
    );
    let mut server = server::Server::start(&spec, "after-sigterm")?;
    let second = server.wait_healthy(&root, startup_timeout).await?;
    progress!("(b) healthy after {}", report::duration(second.to_healthy));
    r.memory
        .push(("right after the start after SIGTERM", second.memory));
    r.starts.push(second);

    // (c) SIGKILL under write load, start again.
    let api = Api::new(&root, &spec.admin_token, args.connections, api::CHECKS)?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: load::Acked = Arc::default();
    progress!(
        "(c) {} writers for {} s, then SIGKILL",
        args.writers,
        args.kill_after_secs
    );
    let writers = load::spawn_writers_until_stopped(
        &api,
        &pair,
        args.writers,
        stop.clone(),
        acked.clone(),
        Duration::from_secs(args.kill_after_secs + 60),
    );
    tokio::time::sleep(Duration::from_secs(args.kill_after_secs)).await;
    server.kill9().await?;
    stop.store(true, Ordering::Relaxed);
    let kill_stats = match tokio::time::timeout(Duration::from_secs(60), writers).await {
        Ok(Ok(stats)) => Some(stats),
        _ => None,
    };
    drop(server);
    let acked = acked.lock().map(|m| m.clone()).unwrap_or_default();
    progress!(
        "(c) killed; {} invoices had acknowledged writes; starting again",
        acked.len()
    );
    let mut server = server::Server::start(&spec, "after-sigkill")?;
    let third = server.wait_healthy(&root, startup_timeout).await?;
    progress!("(c) healthy after {}", report::duration(third.to_healthy));
    r.memory
        .push(("right after the start after SIGKILL", third.memory));
    r.starts.push(third);
    let api = Api::new(&root, &spec.admin_token, args.connections, api::CHECKS)?;
    let (checked, lost, examples) = load::check_acked(&api, &pair, &acked, 2000).await;
    for e in &examples {
        progress!("(c) LOST: {e}");
    }
    r.kill = Some(report::Kill {
        acked_invoices: acked.len() as u64,
        writes: kill_stats,
        checked,
        lost,
    });
    let stop_time = server.terminate(Duration::from_secs(300)).await?;
    progress!("stopped in {}", report::duration(stop_time));
    drop(server);

    r.machine_at_end = Some(report::Machine::read());
    r.print(&found);
    Ok(())
}

/// The read operations of the mixed load, for the benchmark's own seller,
/// for ids of generated invoices (404: another organization's), and for a
/// big generated seller when its secret is known.
fn read_ops(
    r: &report::Report,
    pair: &Pair,
    own_ids: Vec<String>,
    own_org: &str,
    found: &discover::Discovered,
) -> Vec<load::ReadOp> {
    use load::{ReadOp, Target};
    let lists = [
        ("`GET /invoices?limit=50`", "/invoices?limit=50"),
        (
            "`GET /invoices?limit=50&status=SETTLED`",
            "/invoices?limit=50&status=SETTLED",
        ),
        (
            "`GET /invoices?limit=50&sort=dueDate`",
            "/invoices?limit=50&sort=dueDate",
        ),
    ];
    let mut ops = vec![ReadOp {
        label: "`GET /invoices/{id}`".into(),
        org: own_org.into(),
        creds: pair.seller.clone(),
        target: Target::Invoice(Arc::new(own_ids)),
        expect: 200,
    }];
    for (label, path) in lists {
        ops.push(ReadOp {
            label: label.into(),
            org: own_org.into(),
            creds: pair.seller.clone(),
            target: Target::Path(path.into()),
            expect: 200,
        });
    }
    if !found.foreign_ids.is_empty() {
        ops.push(ReadOp {
            label: "`GET /invoices/{id}` → 404".into(),
            org: format!(
                "own seller asking for {} sampled generated invoice ids (another organization's: 404); table of {} invoices",
                found.foreign_ids.len(),
                r.invoices_in_log().map(report::thousands).unwrap_or_else(|| "?".into())
            ),
            creds: pair.seller.clone(),
            target: Target::Invoice(Arc::new(found.foreign_ids.clone())),
            expect: 404,
        });
    }
    if let Some(big) = &found.big_seller {
        let org = format!(
            "generated seller {}, ≈ {} invoices",
            big.organization_id,
            r.invoices_per_generated_seller()
                .map(report::thousands)
                .unwrap_or_else(|| "?".into())
        );
        ops.push(ReadOp {
            label: "`GET /invoices/{id}`".into(),
            org: org.clone(),
            creds: big.creds.clone(),
            target: Target::Invoice(Arc::new(big.invoice_ids.clone())),
            expect: 200,
        });
        for (label, path) in lists {
            ops.push(ReadOp {
                label: label.into(),
                org: org.clone(),
                creds: big.creds.clone(),
                target: Target::Path(path.into()),
                expect: 200,
            });
        }
    }
    ops
}
