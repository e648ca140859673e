//! Organizations: the tenants. Created by the operator; never deleted.

use super::command::Outcome;
use super::ledger::Ledger;
use super::{misapplied, Ctx, Decision};
use crate::events::{Event, Permission};
use crate::ids::{ApiKeyId, OrganizationId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: Timestamp,
}

pub const MAX_NAME_CHARS: usize = 200;

pub fn validate_name(name: &str) -> Result<String, super::DomainError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(super::DomainError::Validation(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// The operator creates an organization with one key that may do everything,
/// so that the organization can make its own keys from there.
pub(super) fn create(name: &str, api_key_secret_hash: &[u8; 32], ctx: &mut Ctx<'_>) -> Decision {
    let name = validate_name(name)?;
    let id: OrganizationId = ctx.id();
    let key: ApiKeyId = ctx.id();
    Ok((
        Outcome::Organization {
            id,
            api_key_id: key,
        },
        vec![
            Event::OrganizationCreated { id, name },
            Event::ApiKeyCreated {
                id: key,
                organization_id: id,
                name: "default".into(),
                permissions: vec![Permission::All],
                secret_hash: *api_key_secret_hash,
                expires_at: None,
            },
        ],
    ))
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    let Event::OrganizationCreated { id, name } = event else {
        return Err(misapplied("organization", event));
    };
    ledger.organizations.insert(
        *id,
        Organization {
            id: *id,
            name: name.clone(),
            created_at: at,
        },
    );
    Ok(())
}
