//! `expereon backup --out DIR`: a consistent copy of the event log and of
//! every stored file it references, hot from a running server (`--url` +
//! `--admin-token`, through the admin event stream and `/admin/files/{id}`)
//! or from a stopped server's data directory (`--data-dir`). The log lands
//! at `DIR/log` and the files at `DIR/files` in the local store's layout, so
//! `replay-tool --data-dir DIR` and `expereon serve --data-dir DIR` open it.
//! Files in object storage are checked, not copied: the bucket has its own
//! versioning and replication. Idempotency records (a retry cache, not
//! history), API logs, the read models (rebuilt from the log) and the
//! webhook outbox are not part of it.
//!
//! A file that is missing or does not match its `FileStored` event does not
//! stop the backup: everything else is still copied, then the command fails
//! naming each such file, since a backup that cannot restore an invoice's
//! attachment must not pass for a good one.

pub mod files;

use crate::master_key;
use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use clap::Args;
use files::{Destination, FileFact, Findings, LiveFiles, Problem, Storage, Verdict};
use ledger_core::ids::FileId;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{copy_verified, extend_verified, EventLog, LogError, RawEvent};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where the copy goes (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// A running server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data_dir")]
    pub url: Option<String>,
    #[arg(long, env = "EXPEREON_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// A stopped server's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With `--data-dir`: where that server keeps files when not in
    /// `<data-dir>/files` (`s3://bucket[/prefix]`, AWS_* variables); they are
    /// then checked in place, not copied. A running server says it itself.
    #[arg(long, env = "EXPEREON_STORAGE_URL")]
    pub storage_url: Option<String>,
}

const PAGE: u64 = 10_000;

/// How many times a hot backup takes in newer events to explain files the
/// server no longer has (deleted while it copied).
const MAX_EXTENSIONS: usize = 3;

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("{} is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out)?;
    let copy = SledLog::open(args.out.join("log")).context("creating the copy")?;
    let files = match (&args.url, &args.data_dir) {
        (Some(url), _) => {
            let token = args
                .admin_token
                .as_deref()
                .ok_or_else(|| anyhow!("--url needs --admin-token"))?;
            let mut events = HttpEvents::new(url, token, 0)?;
            copy_verified(&mut events, &copy)?;
            record_key_id(&args.out, events.key_id.as_deref())?;
            hot_files(url, token, &copy, &args.out)?
        }
        (None, Some(dir)) => {
            let source = SledLog::open(dir.join("log"))
                .context("opening the source log (is the server stopped?)")?;
            copy_verified(source.read_raw(1), &copy)?;
            drop(source);
            let key_id = match std::fs::read_to_string(dir.join(master_key::ID_FILE)) {
                Ok(id) => Some(id.trim().to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context("reading the master key's id"),
            };
            record_key_id(&args.out, key_id.as_deref())?;
            cold_files(dir, args.storage_url.as_deref(), &copy, &args.out)?
        }
        (None, None) => bail!("give --url (running server) or --data-dir (stopped server)"),
    };
    let head = copy.head();
    println!(
        "backed up {} events to {} (head hash {})",
        head.last_seq,
        args.out.display(),
        hex::encode(head.last_hash)
    );
    let good = files.findings.checked - files.findings.problems.len() as u64;
    match &files.kept {
        Kept::Copied(dir) => println!(
            "copied {good} of {} files ({} bytes) to {}, each checked against the size and SHA-256 of its FileStored event",
            files.findings.checked,
            files.findings.bytes,
            dir.display()
        ),
        Kept::InObjectStorage(place) => println!(
            "files are in object storage ({place}) and were NOT copied: back the bucket up with its own \
             versioning or replication; {good} of {} files the log references are there with their recorded sizes",
            files.findings.checked
        ),
    }
    if !files.findings.problems.is_empty() {
        files.findings.print_problems();
        bail!(
            "backup incomplete: {} of {} files the log references are missing ({}) or corrupt ({}), listed above; \
             the log and every other file were backed up",
            files.findings.problems.len(),
            files.findings.checked,
            files.findings.missing(),
            files.findings.corrupt(),
        );
    }
    Ok(())
}

/// Beside the copy, the id of the master key its sealed secrets need (not
/// the key: that is backed up apart), so a restore with another key, or
/// none, refuses to start rather than lose the webhook signing secrets.
fn record_key_id(out: &Path, id: Option<&str>) -> anyhow::Result<()> {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => {
            master_key::write_id_file(&out.join(master_key::ID_FILE), id)?;
            println!(
                "secrets in this backup are sealed with master key {id}: restore it with that key"
            );
        }
        None => println!("the source names no master key (a server from before sealing)"),
    }
    Ok(())
}

enum Kept {
    Copied(PathBuf),
    InObjectStorage(String),
}

struct FilesBackup {
    kept: Kept,
    findings: Findings,
}

/// The files of a stopped server: read from its local store, or checked in
/// its object storage.
fn cold_files(
    data_dir: &Path,
    storage_url: Option<&str>,
    copy: &SledLog,
    out: &Path,
) -> anyhow::Result<FilesBackup> {
    let mut live = LiveFiles::default();
    live.follow(copy)?;
    let mut findings = Findings::default();
    match files::storage(data_dir, storage_url)? {
        Storage::Local(root) => {
            let mut dest = Destination::new(out);
            for fact in live.iter() {
                let verdict = match files::open_local(&root, fact) {
                    Ok(source) => dest.write(fact, source).with_context(|| {
                        format!("writing {}", dest.root().join(fact.key()).display())
                    })?,
                    Err(problem) => Err(problem),
                };
                findings.record(fact, verdict);
            }
            dest.sync().context("syncing the copied files")?;
            Ok(FilesBackup {
                kept: Kept::Copied(dest.root().to_path_buf()),
                findings,
            })
        }
        Storage::Object { store, url } => {
            files::runtime()?.block_on(async {
                for fact in live.iter() {
                    findings.record(fact, files::check_object(store.as_ref(), fact, false).await);
                }
            });
            Ok(FilesBackup {
                kept: Kept::InObjectStorage(url),
                findings,
            })
        }
    }
}

/// The files of a running server, through its admin route. A file deleted
/// while the backup runs is gone from the server yet alive in the copied
/// log: the copy then takes in the events since, which delete it, so the
/// backup stays a consistent prefix of the log with every file it needs.
fn hot_files(url: &str, token: &str, copy: &SledLog, out: &Path) -> anyhow::Result<FilesBackup> {
    let http = HttpFiles::new(url, token)?;
    let mut live = LiveFiles::default();
    live.follow(copy)?;
    let mut dest = Destination::new(out);
    let Some(first) = live.iter().next() else {
        return Ok(FilesBackup {
            kept: Kept::Copied(dest.root().to_path_buf()),
            findings: Findings::default(),
        });
    };
    let local = http.stored_locally(first)?;
    let mut outcomes: BTreeMap<FileId, (FileFact, Verdict)> = BTreeMap::new();
    for extension in 0..=MAX_EXTENSIONS {
        let deleted: Vec<FileId> = outcomes
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in deleted {
            if let Some((fact, Ok(()))) = outcomes.remove(&id) {
                if local {
                    dest.remove(&fact)?;
                }
            }
        }
        for fact in live.iter() {
            if outcomes.contains_key(&fact.id) {
                continue;
            }
            let verdict = if local {
                http.copy(fact, &mut dest)?
            } else {
                http.head(fact)?
            };
            outcomes.insert(fact.id, (fact.clone(), verdict));
        }
        let missing = outcomes
            .values()
            .any(|(_, v)| v.as_ref().is_err_and(Problem::is_missing));
        if !missing || extension == MAX_EXTENSIONS {
            break;
        }
        let before = copy.head().last_seq;
        extend_verified(HttpEvents::new(url, token, before)?, copy)?;
        if copy.head().last_seq == before {
            break;
        }
        live.follow(copy)?;
    }
    dest.sync().context("syncing the copied files")?;
    let mut findings = Findings::default();
    for (fact, verdict) in outcomes.into_values() {
        findings.record(&fact, verdict);
    }
    Ok(FilesBackup {
        kept: if local {
            Kept::Copied(dest.root().to_path_buf())
        } else {
            Kept::InObjectStorage("the server's object storage".into())
        },
        findings,
    })
}

/// `GET|HEAD /api/v1/admin/files/{id}`.
struct HttpFiles {
    client: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl HttpFiles {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            // A timeout per read, not for the whole body: big files take long.
            client: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()?,
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// The admin route's answer for `fact`, and where the server keeps
    /// files; an answer without that header is not from the route at all.
    fn request(
        &self,
        method: reqwest::Method,
        fact: &FileFact,
    ) -> anyhow::Result<(reqwest::blocking::Response, bool)> {
        let url = format!("{}/api/v1/admin/files/{}", self.base, fact.id);
        let response = self
            .client
            .request(method, &url)
            .header("x-admin-token", &self.token)
            .send()
            .with_context(|| format!("reading {url}"))?;
        match response
            .headers()
            .get(crate::routes::storage::STORAGE_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            Some(kind) => {
                let local = kind == "local";
                Ok((response, local))
            }
            None => bail!(
                "{url}: status {}; the server does not serve stored files to the operator \
                 (wrong token, or a version whose backups leave files out)",
                response.status()
            ),
        }
    }

    fn send(
        &self,
        method: reqwest::Method,
        fact: &FileFact,
    ) -> anyhow::Result<Result<reqwest::blocking::Response, Problem>> {
        let (response, _) = self.request(method, fact)?;
        let status = response.status();
        if status.is_success() {
            return Ok(Ok(response));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Err(Problem::Missing));
        }
        let body = response.text().unwrap_or_default();
        Ok(Err(Problem::Unreadable(format!(
            "the server answered {status}: {}",
            body.chars().take(300).collect::<String>()
        ))))
    }

    /// Whether the server keeps files locally (to be copied) or in object
    /// storage (to be checked).
    fn stored_locally(&self, fact: &FileFact) -> anyhow::Result<bool> {
        Ok(self.request(reqwest::Method::HEAD, fact)?.1)
    }

    fn copy(&self, fact: &FileFact, dest: &mut Destination) -> anyhow::Result<Verdict> {
        match self.send(reqwest::Method::GET, fact)? {
            Ok(response) => dest
                .write(fact, response)
                .with_context(|| format!("writing {}", dest.root().join(fact.key()).display())),
            Err(problem) => Ok(Err(problem)),
        }
    }

    fn head(&self, fact: &FileFact) -> anyhow::Result<Verdict> {
        let response = match self.send(reqwest::Method::HEAD, fact)? {
            Ok(response) => response,
            Err(problem) => return Ok(Err(problem)),
        };
        let size = response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(match size {
            Some(size) if size == fact.size => Ok(()),
            Some(found) => Err(Problem::Size { found }),
            None => Err(Problem::Unreadable("no Content-Length".into())),
        })
    }
}

/// The admin event stream, page by page, as stored events.
struct HttpEvents {
    /// The master key id the server named (see [`master_key::ID_HEADER`]).
    key_id: Option<String>,
    client: reqwest::blocking::Client,
    base: String,
    token: String,
    after: u64,
    page: std::vec::IntoIter<RawEvent>,
    done: bool,
}

impl HttpEvents {
    /// The events after `after`.
    fn new(url: &str, token: &str, after: u64) -> anyhow::Result<Self> {
        Ok(Self {
            key_id: None,
            client: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()?,
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            after,
            page: Vec::new().into_iter(),
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<Vec<RawEvent>, LogError> {
        let url = format!(
            "{}/api/v1/admin/events?after={}&limit={PAGE}",
            self.base, self.after
        );
        let fail = |e: String| LogError::Storage(format!("reading {url}: {e}"));
        let response = self
            .client
            .get(&url)
            .header("x-admin-token", &self.token)
            .send()
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        if let Some(id) = response.headers().get(master_key::ID_HEADER) {
            self.key_id = id.to_str().ok().map(str::to_owned);
        }
        let text = response.text().map_err(|e| fail(e.to_string()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_line(l).map_err(fail))
            .collect()
    }
}

fn parse_line(line: &str) -> Result<RawEvent, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let seq = v["seq"].as_u64().ok_or("line without seq")?;
    let encoded = base64::engine::general_purpose::STANDARD
        .decode(v["encoded"].as_str().ok_or("line without encoded bytes")?)
        .map_err(|e| e.to_string())?;
    let hash: [u8; 32] = hex::decode(v["hash"].as_str().ok_or("line without hash")?)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or("malformed hash")?;
    Ok(RawEvent { seq, encoded, hash })
}

impl Iterator for HttpEvents {
    type Item = Result<RawEvent, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(raw) = self.page.next() {
            self.after = raw.seq;
            return Some(Ok(raw));
        }
        if self.done {
            return None;
        }
        match self.fetch() {
            Ok(page) => {
                self.done = (page.len() as u64) < PAGE;
                self.page = page.into_iter();
                let raw = self.page.next()?;
                self.after = raw.seq;
                Some(Ok(raw))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hot path against a stand-in server, for what a real one cannot be
    //! made to do on cue: a file deleted between the log copy and its fetch,
    //! and files kept in object storage.

    use super::*;
    use axum::extract::{Path as UrlPath, Query, State};
    use axum::http::{header, HeaderMap, Method, StatusCode};
    use axum::response::{IntoResponse, Response};
    use ledger_core::events::{Actor, Event, RecordedEvent};
    use ledger_core::ids::OrganizationId;
    use ledger_core::time::Timestamp;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct Fake {
        log: Arc<SledLog>,
        /// What `/admin/files` says about where files are kept.
        kind: &'static str,
        bytes: Arc<HashMap<FileId, Vec<u8>>>,
        /// Deleted (its `FileDeleted` appended) when first asked for.
        vanishing: Arc<Mutex<Option<FileId>>>,
    }

    fn append(log: &SledLog, version: u64, event: Event) {
        let seq = log.head().last_seq + 1;
        let recorded = RecordedEvent {
            seq,
            version,
            at: Timestamp::from_micros(1_700_000_000_000_000 + seq as i64),
            actor: Actor::System,
            request_id: None,
            event,
        };
        log.append(&[recorded], &[]).expect("append");
    }

    async fn events(State(fake): State<Fake>, Query(q): Query<HashMap<String, String>>) -> String {
        let after: u64 = q["after"].parse().expect("after");
        let mut out = String::new();
        for raw in fake.log.read_raw(after + 1) {
            let raw = raw.expect("raw event");
            out.push_str(
                &serde_json::json!({
                    "seq": raw.seq,
                    "encoded": base64::engine::general_purpose::STANDARD.encode(&raw.encoded),
                    "hash": hex::encode(raw.hash),
                })
                .to_string(),
            );
            out.push('\n');
        }
        out
    }

    async fn file(
        State(fake): State<Fake>,
        method: Method,
        headers: HeaderMap,
        UrlPath(id): UrlPath<String>,
    ) -> Response {
        assert_eq!(headers["x-admin-token"], "token");
        let id: FileId = id.parse().expect("file id");
        let storage = (crate::routes::storage::STORAGE_HEADER, fake.kind);
        if fake
            .vanishing
            .lock()
            .expect("lock")
            .take_if(|v| *v == id)
            .is_some()
        {
            append(&fake.log, 2, Event::FileDeleted { id });
            return (StatusCode::NOT_FOUND, [storage]).into_response();
        }
        let bytes = fake.bytes[&id].clone();
        let length = (header::CONTENT_LENGTH, bytes.len().to_string());
        if method == Method::HEAD {
            return ([storage], [length]).into_response();
        }
        ([storage], [length], bytes).into_response()
    }

    /// A stand-in server with these files stored (`FileStored` in its log);
    /// its base URL.
    fn serve(
        dir: &Path,
        kind: &'static str,
        files: &[(FileId, &[u8], u64)],
        vanishing: Option<FileId>,
    ) -> String {
        let log = Arc::new(SledLog::open(dir.join("source")).expect("source log"));
        let org = OrganizationId::new();
        for (id, bytes, recorded_size) in files {
            append(
                &log,
                1,
                Event::FileStored {
                    id: *id,
                    organization_id: org,
                    filename: format!("{id}.bin"),
                    content_type: "application/octet-stream".into(),
                    size: *recorded_size,
                    sha256: Sha256::digest(bytes).into(),
                },
            );
        }
        let fake = Fake {
            log,
            kind,
            bytes: Arc::new(files.iter().map(|(id, b, _)| (*id, b.to_vec())).collect()),
            vanishing: Arc::new(Mutex::new(vanishing)),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route("/api/v1/admin/events", axum::routing::get(events))
                    .route("/api/v1/admin/files/{id}", axum::routing::get(file))
                    .with_state(fake);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        base
    }

    fn backup(base: &str, out: &Path) -> anyhow::Result<()> {
        run(BackupArgs {
            out: out.to_path_buf(),
            url: Some(base.to_owned()),
            admin_token: Some("token".into()),
            data_dir: None,
            storage_url: None,
        })
    }

    /// The backup's log, once the backup has let go of it (sled releases
    /// its lock on its own threads, a moment after the handle is dropped).
    fn copy_in(out: &Path) -> SledLog {
        ledger_core::log::sled::when_unlocked(std::time::Duration::from_secs(30), || {
            SledLog::open(out.join("log"))
        })
        .expect("the copy")
    }

    fn live_in(out: &Path) -> Vec<FileId> {
        let copy = copy_in(out);
        let mut live = LiveFiles::default();
        live.follow(&copy).expect("follow");
        live.iter().map(|f| f.id).collect()
    }

    #[test]
    fn a_file_deleted_while_a_hot_backup_runs_leaves_it_consistent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (kept, deleted, later) = (FileId::new(), FileId::new(), FileId::new());
        let base = serve(
            dir.path(),
            "local",
            &[
                (kept, b"kept bytes", 10),
                (deleted, b"deleted bytes", 13),
                (later, b"later", 5),
            ],
            Some(deleted),
        );
        let out = dir.path().join("backup");
        backup(&base, &out).expect("no file is missing from the extended copy");
        // The copy took in the deletion: it is a longer, still consistent log.
        let copy = copy_in(&out);
        assert_eq!(copy.head().last_seq, 4);
        drop(copy);
        assert_eq!(live_in(&out), vec![kept, later]);
        let mut copied = Vec::new();
        for entry in walk(&out.join("files")) {
            copied.push(std::fs::read(entry).expect("read"));
        }
        copied.sort();
        assert_eq!(copied, vec![b"kept bytes".to_vec(), b"later".to_vec()]);
    }

    #[test]
    fn files_in_object_storage_are_checked_not_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (good, short) = (FileId::new(), FileId::new());
        let base = serve(
            dir.path(),
            "object",
            &[(good, b"good", 4), (short, b"short", 50)],
            None,
        );
        let out = dir.path().join("backup");
        let error = backup(&base, &out).expect_err("a size differs");
        assert!(error.to_string().contains("1 of 2 files"), "{error}");
        assert!(walk(&out.join("files")).is_empty(), "nothing copied");
        assert_eq!(live_in(&out).len(), 2);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}
