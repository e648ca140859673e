//! API keys: hashed secrets, permissions, expiry, revocation.

use crate::events::Permission;
use crate::ids::{ApiKeyId, OrganizationId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub permissions: Vec<Permission>,
    pub secret_hash: [u8; 32],
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions
            .iter()
            .any(|p| *p == Permission::All || *p == permission)
    }

    /// Usable at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}
