//! Connections: a seller and a buyer trade only over an ACTIVE connection.

use super::DomainError;
use crate::events::Party;
use crate::ids::{ConnectionId, OrganizationId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ConnectionStatus {
    Pending,
    Active,
    Rejected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "PENDING",
            ConnectionStatus::Active => "ACTIVE",
            ConnectionStatus::Rejected => "REJECTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub seller_organization_id: OrganizationId,
    pub buyer_organization_id: OrganizationId,
    pub requested_by: OrganizationId,
    pub status: ConnectionStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Connection {
    pub fn party_of(&self, org: OrganizationId) -> Option<Party> {
        if org == self.seller_organization_id {
            Some(Party::Seller)
        } else if org == self.buyer_organization_id {
            Some(Party::Buyer)
        } else {
            None
        }
    }

    /// Accepting or rejecting: only by the counterparty, only while pending.
    pub fn check_answer(&self, by: OrganizationId) -> Result<(), DomainError> {
        if by == self.requested_by {
            return Err(DomainError::Forbidden(
                "only the counterparty may answer a connection request".into(),
            ));
        }
        if self.status != ConnectionStatus::Pending {
            return Err(DomainError::InvalidTransition {
                entity: "connection",
                action: "answer",
                current: self.status.as_str(),
            });
        }
        Ok(())
    }
}
