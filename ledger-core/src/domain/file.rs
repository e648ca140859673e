//! Stored files' metadata (the bytes live in object storage).

use crate::ids::{FileId, OrganizationId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    pub id: FileId,
    pub organization_id: OrganizationId,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: [u8; 32],
    pub created_at: Timestamp,
    pub deleted: bool,
}
