//! Organizations: the tenants. Created by the operator; never deleted.

use crate::ids::OrganizationId;
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
