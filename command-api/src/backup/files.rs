//! Stored files checked against the size and SHA-256 their `FileStored`
//! events recorded: what `expereon backup` copies, what `expereon
//! verify-files` checks offline, and what the server checks at start
//! (`background.rs`). The log, not the read models, says which files exist
//! here: a backup has no read models.

use crate::routes::storage::object_path;
use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use ledger_core::domain::file::StoredFile;
use ledger_core::events::Event;
use ledger_core::ids::{FileId, OrganizationId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::{EventLog, LogError};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file the log says exists: stored, and not deleted since.
#[derive(Debug, Clone)]
pub struct FileFact {
    pub id: FileId,
    pub organization_id: OrganizationId,
    pub filename: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl FileFact {
    /// Its key under the storage root, `files/{org}/{id}`.
    pub fn key(&self) -> String {
        object_path(self.organization_id, self.id).to_string()
    }
}

impl From<&StoredFile> for FileFact {
    fn from(f: &StoredFile) -> Self {
        Self {
            id: f.id,
            organization_id: f.organization_id,
            filename: f.filename.clone(),
            size: f.size,
            sha256: f.sha256,
        }
    }
}

impl fmt::Display for FileFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {} bytes, sha256 {})",
            self.key(),
            self.filename,
            self.size,
            hex::encode(self.sha256)
        )
    }
}

/// The live files of a log, followed as the log grows.
#[derive(Default)]
pub struct LiveFiles {
    files: BTreeMap<FileId, FileFact>,
    seq: u64,
}

impl LiveFiles {
    /// Takes in the events after the last one seen, up to the log's head.
    pub fn follow(&mut self, log: &dyn EventLog) -> Result<(), LogError> {
        let files = &mut self.files;
        let seq = &mut self.seq;
        ledger_core::log::replay(log, *seq + 1, |event| {
            match &event.event {
                Event::FileStored {
                    id,
                    organization_id,
                    filename,
                    size,
                    sha256,
                    ..
                } => {
                    files.insert(
                        *id,
                        FileFact {
                            id: *id,
                            organization_id: *organization_id,
                            filename: filename.clone(),
                            size: *size,
                            sha256: *sha256,
                        },
                    );
                }
                Event::FileDeleted { id } => {
                    files.remove(id);
                }
                _ => {}
            }
            *seq = event.seq;
            Ok::<_, LogError>(())
        })
    }

    pub fn contains(&self, id: &FileId) -> bool {
        self.files.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &FileFact> {
        self.files.values()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// How a stored file fails its `FileStored` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Unreadable(String),
    Size { found: u64 },
    Hash { found: [u8; 32] },
}

impl Problem {
    /// Absent or unreadable, as opposed to present with other contents.
    pub fn is_missing(&self) -> bool {
        matches!(self, Problem::Missing | Problem::Unreadable(_))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("missing"),
            Problem::Unreadable(why) => write!(f, "unreadable: {why}"),
            Problem::Size { found } => write!(f, "corrupt: {found} bytes"),
            Problem::Hash { found } => write!(f, "corrupt: sha256 {}", hex::encode(found)),
        }
    }
}

pub type Verdict = Result<(), Problem>;

fn verdict(fact: &FileFact, size: u64, sha256: [u8; 32]) -> Verdict {
    if size != fact.size {
        Err(Problem::Size { found: size })
    } else if sha256 != fact.sha256 {
        Err(Problem::Hash { found: sha256 })
    } else {
        Ok(())
    }
}

/// Reads `source` to its end a chunk at a time (files run to tens of MB),
/// hashing it, and writing it to `copy` too when given. A failed read is
/// the file's problem; only a failed write to `copy` is an error.
pub fn stream_checked(
    mut source: impl Read,
    fact: &FileFact,
    mut copy: Option<&mut File>,
) -> io::Result<Verdict> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Err(Problem::Unreadable(e.to_string()))),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        if let Some(copy) = copy.as_deref_mut() {
            copy.write_all(&buf[..n])?;
        }
    }
    Ok(verdict(fact, size, hasher.finalize().into()))
}

/// Opens the file under a local storage root.
pub fn open_local(root: &Path, fact: &FileFact) -> Result<File, Problem> {
    File::open(root.join(fact.key())).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Problem::Missing,
        _ => Problem::Unreadable(e.to_string()),
    })
}

/// Hashes the file under a local storage root.
pub fn check_local(root: &Path, fact: &FileFact) -> Verdict {
    let file = open_local(root, fact)?;
    // Without a copy there is nothing to write, hence no error to return.
    stream_checked(file, fact, None).unwrap_or_else(|e| Err(Problem::Unreadable(e.to_string())))
}

/// Checks an object: only that it exists with the recorded size when `hash`
/// is false (a HEAD: hashing would download the whole bucket), else its
/// bytes too, streamed.
pub async fn check_object(store: &dyn ObjectStore, fact: &FileFact, hash: bool) -> Verdict {
    let path = ObjectPath::from(fact.key());
    let unreadable = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => Problem::Missing,
        e => Problem::Unreadable(e.to_string()),
    };
    if !hash {
        let meta = store.head(&path).await.map_err(unreadable)?;
        if meta.size != fact.size {
            return Err(Problem::Size { found: meta.size });
        }
        return Ok(());
    }
    let mut chunks = store.get(&path).await.map_err(unreadable)?.into_stream();
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreadable)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    verdict(fact, size, hasher.finalize().into())
}

/// Where a server keeps its files.
pub enum Storage {
    /// The local store's root (`<data dir>/files`).
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        url: String,
    },
}

/// The storage a server with this data directory and `EXPEREON_STORAGE_URL`
/// uses. (The same choice as `app.rs` makes for the server.)
pub fn storage(data_dir: &Path, url: Option<&str>) -> anyhow::Result<Storage> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(Storage::Local(data_dir.join("files")));
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow::anyhow!("EXPEREON_STORAGE_URL must be s3://bucket[/prefix]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .context("configuring S3 storage")?;
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
    };
    Ok(Storage::Object {
        store,
        url: url.to_owned(),
    })
}

/// A tokio runtime for the command-line tools' few object-storage calls.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The backup's copy of a local store: `DIR/files`, the layout a server
/// started on `DIR` reads with its default storage.
pub struct Destination {
    root: PathBuf,
    /// Directories that received a file, synced once at the end.
    dirs: BTreeSet<PathBuf>,
}

impl Destination {
    pub fn new(out: &Path) -> Self {
        Self {
            root: out.join("files"),
            dirs: BTreeSet::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Copies `source` as the file, checking it on the way; a copy that does
    /// not match its event is not kept (it would only look like a backup).
    pub fn write(&mut self, fact: &FileFact, source: impl Read) -> io::Result<Verdict> {
        let path = self.root.join(fact.key());
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("a file key without a directory"))?
            .to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let partial = dir.join(format!("{}.partial", fact.id));
        let mut file = File::create(&partial)?;
        let checked = stream_checked(source, fact, Some(&mut file)).and_then(|v| {
            if v.is_ok() {
                file.sync_all()?;
            }
            Ok(v)
        });
        drop(file);
        match checked {
            Ok(Ok(())) => {
                std::fs::rename(&partial, &path)?;
                self.dirs.insert(dir);
                Ok(Ok(()))
            }
            other => {
                let _ = std::fs::remove_file(&partial);
                other
            }
        }
    }

    /// Takes out a copied file the log deleted after it was copied.
    pub fn remove(&mut self, fact: &FileFact) -> io::Result<()> {
        match std::fs::remove_file(self.root.join(fact.key())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes the copies' names durable: every directory that received one,
    /// up to the backup's own directory.
    pub fn sync(&self) -> io::Result<()> {
        let mut dirs: BTreeSet<PathBuf> = self.dirs.clone();
        if !dirs.is_empty() {
            dirs.insert(self.root.join("files"));
            dirs.insert(self.root.clone());
            if let Some(out) = self.root.parent() {
                dirs.insert(out.to_path_buf());
            }
        }
        for dir in dirs {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// What a pass over the live files found.
#[derive(Default)]
pub struct Findings {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<(FileFact, Problem)>,
}

impl Findings {
    pub fn record(&mut self, fact: &FileFact, verdict: Verdict) {
        self.checked += 1;
        match verdict {
            Ok(()) => self.bytes += fact.size,
            Err(problem) => self.problems.push((fact.clone(), problem)),
        }
    }

    pub fn missing(&self) -> usize {
        self.problems.iter().filter(|(_, p)| p.is_missing()).count()
    }

    pub fn corrupt(&self) -> usize {
        self.problems.len() - self.missing()
    }

    /// One line per problem, on stderr: `MISSING: files/{org}/{id} (…)`.
    pub fn print_problems(&self) {
        for (fact, problem) in &self.problems {
            let label = match problem {
                Problem::Missing => "MISSING",
                Problem::Unreadable(_) => "UNREADABLE",
                Problem::Size { .. } | Problem::Hash { .. } => "CORRUPT",
            };
            eprintln!("{label}: {fact}: {problem}");
        }
    }
}

// ---------------------------------------------------------------------------
// expereon verify-files
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Args)]
pub struct VerifyFilesArgs {
    /// A stopped server's data directory, or a backup.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Where the server keeps files when not in `<data-dir>/files`:
    /// `s3://bucket[/prefix]` (credentials from the usual AWS_* variables).
    #[arg(long, env = "EXPEREON_STORAGE_URL")]
    pub storage_url: Option<String>,
}

/// Hashes every file the log references; fails listing the missing and
/// corrupt ones.
pub fn verify_files(args: VerifyFilesArgs) -> anyhow::Result<()> {
    let log_dir = args.data_dir.join("log");
    if !log_dir.is_dir() {
        bail!("{} has no event log (log/)", args.data_dir.display());
    }
    let log = SledLog::open(&log_dir).context("opening the event log (is the server stopped?)")?;
    let mut live = LiveFiles::default();
    live.follow(&log)?;
    let head = log.head().last_seq;
    drop(log);
    let mut findings = Findings::default();
    let place = match storage(&args.data_dir, args.storage_url.as_deref())? {
        Storage::Local(root) => {
            for fact in live.iter() {
                findings.record(fact, check_local(&root, fact));
            }
            root.display().to_string()
        }
        Storage::Object { store, url } => {
            runtime()?.block_on(async {
                for fact in live.iter() {
                    findings.record(fact, check_object(store.as_ref(), fact, true).await);
                }
            });
            url
        }
    };
    println!(
        "checked {} files in {place} against their FileStored events (log up to seq {head}): {} good, {} missing, {} corrupt",
        findings.checked,
        findings.checked - findings.problems.len() as u64,
        findings.missing(),
        findings.corrupt(),
    );
    if !findings.problems.is_empty() {
        findings.print_problems();
        bail!(
            "{} of {} files do not match their FileStored events (listed above)",
            findings.problems.len(),
            findings.checked
        );
    }
    Ok(())
}
