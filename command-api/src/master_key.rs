//! The master key: encrypts what the server must keep but must not keep in
//! clear — webhook signing secrets (in events, so in the log, the write-model
//! snapshots and backups) and kept answers that carry a secret (idempotency
//! records of API-key, organization and webhook-endpoint creation).
//!
//! XChaCha20-Poly1305: its 192-bit nonces are drawn at random, so no counter
//! has to survive restarts. The purpose is bound in as associated data, so a
//! sealed webhook secret cannot be replayed as a kept answer or the other way
//! round. A sealed value names the key that sealed it (its [`MasterKey::id`]),
//! so the wrong key is a clear error rather than garbage.
//!
//! Sealed values are text, `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext)>`:
//! they sit where the clear secret used to (a `String` in an event encodes
//! the same either way), and the prefix is the format's version. A value
//! without it is format 1, written in clear before sealing existed; it is
//! still read as it is, so old logs (the golden v1 fixture) keep working.

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable holding the key: 64 hex digits (32 bytes).
pub const ENV: &str = "EXPEREON_MASTER_KEY";
/// The key file created in the data directory when [`ENV`] is unset.
pub const FILE: &str = "master.key";
/// Beside the data: the id of the key its secrets are sealed with, so a start
/// with another key fails instead of answering with secrets it cannot open.
pub const ID_FILE: &str = "master.key.id";
/// The admin event stream names the key in this header, so a hot backup
/// records it too: a restore with another key (or none) refuses to start.
pub const ID_HEADER: &str = "x-expereon-master-key-id";

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;

/// What a sealed value is for: bound into it as associated data.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    WebhookSecret,
    KeptAnswer,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::WebhookSecret => b"expereon webhook signing secret",
            Purpose::KeptAnswer => b"expereon kept answer",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed with master key {sealed_with}, not with this server's {ours}")]
    OtherKey { sealed_with: String, ours: String },
    #[error("a sealed value that does not open (corrupt, or sealed for another purpose)")]
    DoesNotOpen,
}

/// Where the key came from, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Environment,
    File(PathBuf),
    CreatedFile(PathBuf),
}

pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
            id: hex::encode(&digest[..8]),
        }
    }

    /// 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .context("a master key is 64 hex digits (32 bytes), e.g. `openssl rand -hex 32`")?;
        Ok(Self::from_bytes(&key))
    }

    /// The key from `EXPEREON_MASTER_KEY` if given, else from the data
    /// directory's key file, created (mode 0600) on first start. Then checks
    /// it is the key the directory's secrets were sealed with.
    pub fn load(from_env: Option<&str>, data_dir: &Path) -> anyhow::Result<(Self, Source)> {
        let (key, source) = match from_env.filter(|k| !k.trim().is_empty()) {
            Some(hex) => (
                Self::from_hex(hex).with_context(|| format!("{ENV} is not a key"))?,
                Source::Environment,
            ),
            None => {
                let file = data_dir.join(FILE);
                let recorded = data_dir.join(ID_FILE);
                if !file.exists() && recorded.exists() {
                    // Sealed already (a restored backup, say): a new key
                    // would open none of it.
                    let id = std::fs::read_to_string(&recorded).unwrap_or_default();
                    bail!(
                        "this data directory's secrets are sealed with master key {}, and its \
                         key file {} is missing: put the key back, or set {ENV}",
                        id.trim(),
                        file.display()
                    );
                }
                Self::from_file(&file)?
            }
        };
        key.check_id_file(&data_dir.join(ID_FILE))?;
        Ok((key, source))
    }

    fn from_file(path: &Path) -> anyhow::Result<(Self, Source)> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    bail!(
                        "{} is readable by others (mode {mode:o}); `chmod 600` it",
                        path.display()
                    );
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let key = Self::from_hex(&text)
                    .with_context(|| format!("{} is not a key", path.display()))?;
                Ok((key, Source::File(path.to_owned())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                writeln!(file, "{}", hex::encode(bytes))?;
                file.sync_all()?;
                sync_parent(path)?;
                Ok((
                    Self::from_bytes(&bytes),
                    Source::CreatedFile(path.to_owned()),
                ))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn check_id_file(&self, path: &Path) -> anyhow::Result<()> {
        match std::fs::read_to_string(path) {
            Ok(recorded) if recorded.trim() == self.id => Ok(()),
            Ok(recorded) => bail!(
                "this data directory's secrets are sealed with master key {}, and the key \
                 given is {}: start with the key this directory was created with ({ENV} or \
                 its {FILE})",
                recorded.trim(),
                self.id
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_id_file(path, &self.id),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Not secret: a fingerprint naming the key (8 bytes of its SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, purpose: Purpose, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: purpose.aad(),
        };
        // Encryption in memory fails only for messages past 256 GiB.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.id, URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The plain bytes of `stored`: opened if sealed, as they are if not
    /// (format 1, from before sealing).
    pub fn open(&self, purpose: Purpose, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            return Ok(stored.to_vec());
        };
        let text = std::str::from_utf8(rest).map_err(|_| SealError::DoesNotOpen)?;
        let (key_id, body) = text.split_once(':').ok_or(SealError::DoesNotOpen)?;
        if key_id != self.id {
            return Err(SealError::OtherKey {
                sealed_with: key_id.to_owned(),
                ours: self.id.clone(),
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::DoesNotOpen)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::DoesNotOpen);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| SealError::DoesNotOpen)
    }

    /// As [`MasterKey::open`], for text.
    pub fn open_str(&self, purpose: Purpose, stored: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(purpose, stored.as_bytes())?)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

/// Whether `stored` is sealed (rather than format 1, in clear).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(PREFIX.as_bytes())
}

/// Records, durably, which key a data directory's secrets are sealed with.
pub fn write_id_file(path: &Path, id: &str) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn sealed_values_open_with_their_key_and_purpose_only() {
        let k = key(1);
        let sealed = k.seal(Purpose::WebhookSecret, b"whsec_abc");
        assert!(is_sealed(sealed.as_bytes()));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            k.open(Purpose::WebhookSecret, sealed.as_bytes()).unwrap(),
            b"whsec_abc"
        );
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, k.seal(Purpose::WebhookSecret, b"whsec_abc"));
        assert_eq!(
            k.open(Purpose::KeptAnswer, sealed.as_bytes()),
            Err(SealError::DoesNotOpen)
        );
        assert!(matches!(
            key(2).open(Purpose::WebhookSecret, sealed.as_bytes()),
            Err(SealError::OtherKey { .. })
        ));
        // Tampering anywhere in the ciphertext is refused.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open(Purpose::WebhookSecret, &bytes),
            Err(SealError::DoesNotOpen)
        );
        for broken in ["sealed:v1:", "sealed:v1:nokeyid", "sealed:v1:x:!!"] {
            assert!(k.open(Purpose::WebhookSecret, broken.as_bytes()).is_err());
        }
        let truncated = format!("{PREFIX}{}:{}", k.id(), URL_SAFE_NO_PAD.encode([0u8; 23]));
        assert_eq!(
            k.open(Purpose::WebhookSecret, truncated.as_bytes()),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn debug_output_names_the_key_and_never_shows_it() {
        let k = key(5);
        let shown = format!("{k:?}");
        assert!(shown.contains(k.id()), "{shown}");
        assert!(!shown.contains(&hex::encode([5u8; 32])), "{shown}");
    }

    #[test]
    fn a_value_in_clear_is_format_1_and_reads_as_it_is() {
        assert_eq!(
            key(1)
                .open_str(Purpose::WebhookSecret, "whsec_legacy")
                .unwrap(),
            "whsec_legacy"
        );
        assert!(!is_sealed(b"{\"id\":1}"));
    }

    #[test]
    fn the_key_file_is_created_private_then_reused_and_another_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(source, Source::CreatedFile(dir.path().join(FILE)));
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, source) = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(source, Source::File(dir.path().join(FILE)));
        assert_eq!(first.id(), again.id());

        let other = hex::encode([7u8; 32]);
        let refused = MasterKey::load(Some(&other), dir.path()).unwrap_err();
        assert!(format!("{refused:#}").contains(first.id()), "{refused:#}");

        std::fs::set_permissions(
            dir.path().join(FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let loose = MasterKey::load(None, dir.path()).unwrap_err();
        assert!(format!("{loose:#}").contains("chmod 600"), "{loose:#}");

        // The key file lost: no new key is made for sealed data.
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let lost = MasterKey::load(None, dir.path()).unwrap_err();
        assert!(format!("{lost:#}").contains(first.id()), "{lost:#}");
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn a_key_from_the_environment_must_be_32_bytes_of_hex() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load(Some("abc"), dir.path()).is_err());
        let (k, source) = MasterKey::load(Some(&hex::encode([9u8; 32])), dir.path()).unwrap();
        assert_eq!(source, Source::Environment);
        assert_eq!(k.id(), key(9).id());
        assert!(!dir.path().join(FILE).exists());
    }
}
