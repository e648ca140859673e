//! API keys: hashed secrets, permissions, expiry, revocation.

use super::command::{Command, Outcome};
use super::ledger::Ledger;
use super::{invoice, misapplied, misrouted, need, Ctx, Decision, DomainError};
use crate::events::{Event, Permission};
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

/// Creating and revoking `org`'s own keys.
pub(super) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    match command {
        Command::CreateApiKey {
            name,
            permissions,
            secret_hash,
            expires_at,
        } => {
            let name = invoice::required_text("name", name, 200)?;
            if permissions.is_empty() {
                return Err(DomainError::Validation(
                    "permissions must not be empty".into(),
                ));
            }
            if expires_at.is_some_and(|t| t <= ctx.now) {
                return Err(DomainError::Validation(
                    "expiresAt must be in the future".into(),
                ));
            }
            let id = ctx.id();
            Ok((
                Outcome::ApiKey(id),
                vec![Event::ApiKeyCreated {
                    id,
                    organization_id: org,
                    name,
                    permissions: permissions.clone(),
                    secret_hash: *secret_hash,
                    expires_at: *expires_at,
                }],
            ))
        }
        Command::RevokeApiKey { id } => {
            let k = need(
                ledger.api_keys.get(id).filter(|k| k.organization_id == org),
                "API key",
            )?;
            // Revoking twice is not an error: the key is revoked either way.
            let events = if k.revoked_at.is_some() {
                vec![]
            } else {
                vec![Event::ApiKeyRevoked { id: *id }]
            };
            Ok((Outcome::ApiKey(*id), events))
        }
        _ => Err(misrouted("API key")),
    }
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::ApiKeyCreated {
            id,
            organization_id,
            name,
            permissions,
            secret_hash,
            expires_at,
        } => {
            ledger.api_keys.insert(
                *id,
                ApiKey {
                    id: *id,
                    organization_id: *organization_id,
                    name: name.clone(),
                    permissions: permissions.clone(),
                    secret_hash: *secret_hash,
                    expires_at: *expires_at,
                    created_at: at,
                    revoked_at: None,
                },
            );
        }
        Event::ApiKeyRevoked { id } => {
            let k = ledger
                .api_keys
                .get_mut(id)
                .ok_or("revoked an unknown API key")?;
            k.revoked_at = Some(at);
        }
        _ => return Err(misapplied("API key", event)),
    }
    Ok(())
}
