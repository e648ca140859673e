//! Connections: a seller and a buyer trade only over an ACTIVE connection.

use super::command::{Command, Outcome};
use super::ledger::Ledger;
use super::{invoice, misapplied, misrouted, need, Ctx, Decision, DomainError};
use crate::events::{Event, Party};
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

/// Requesting a connection, and the counterparty's answer.
pub(super) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    match command {
        Command::RequestConnection { counterparty, role } => {
            request(ledger, org, *counterparty, *role, ctx)
        }
        Command::AcceptConnection { id } => {
            answerable(ledger, org, *id)?;
            Ok((
                Outcome::Connection(*id),
                vec![Event::ConnectionAccepted { id: *id }],
            ))
        }
        Command::RejectConnection { id, reason } => {
            answerable(ledger, org, *id)?;
            let reason = invoice::optional_text("reason", reason.as_deref())?;
            Ok((
                Outcome::Connection(*id),
                vec![Event::ConnectionRejectedBecause { id: *id, reason }],
            ))
        }
        _ => Err(misrouted("connection")),
    }
}

fn request(
    ledger: &Ledger,
    org: OrganizationId,
    counterparty: OrganizationId,
    role: Party,
    ctx: &mut Ctx<'_>,
) -> Decision {
    need(ledger.organizations.get(&counterparty), "organization")?;
    if counterparty == org {
        return Err(DomainError::Validation(
            "an organization cannot connect to itself".into(),
        ));
    }
    let (seller, buyer) = match role {
        Party::Seller => (org, counterparty),
        Party::Buyer => (counterparty, org),
    };
    // A rejected request may be asked again; anything else would duplicate the pair.
    let exists = ledger.connections.values().any(|c| {
        c.seller_organization_id == seller
            && c.buyer_organization_id == buyer
            && c.status != ConnectionStatus::Rejected
    });
    if exists {
        return Err(DomainError::Validation(
            "a pending or active connection between these organizations in these roles already exists".into(),
        ));
    }
    let id = ctx.id();
    Ok((
        Outcome::Connection(id),
        vec![Event::ConnectionRequested {
            id,
            seller_organization_id: seller,
            buyer_organization_id: buyer,
            requested_by: org,
        }],
    ))
}

/// The connection `org` may answer now: a party to it, not the one that
/// asked, and still pending.
fn answerable(ledger: &Ledger, org: OrganizationId, id: ConnectionId) -> Result<(), DomainError> {
    let c = need(
        ledger
            .connections
            .get(&id)
            .filter(|c| c.party_of(org).is_some()),
        "connection",
    )?;
    c.check_answer(org)
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    use Event::*;
    match event {
        ConnectionRequested {
            id,
            seller_organization_id,
            buyer_organization_id,
            requested_by,
        } => {
            ledger.connections.insert(
                *id,
                Connection {
                    id: *id,
                    seller_organization_id: *seller_organization_id,
                    buyer_organization_id: *buyer_organization_id,
                    requested_by: *requested_by,
                    status: ConnectionStatus::Pending,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        ConnectionAccepted { id }
        | ConnectionRejected { id }
        | ConnectionRejectedBecause { id, .. } => {
            let c = ledger
                .connections
                .get_mut(id)
                .ok_or("answered an unknown connection")?;
            if c.status != ConnectionStatus::Pending {
                return Err(format!("connection {id} answered twice"));
            }
            c.status = if matches!(event, ConnectionAccepted { .. }) {
                ConnectionStatus::Active
            } else {
                ConnectionStatus::Rejected
            };
            c.updated_at = at;
        }
        _ => return Err(misapplied("connection", event)),
    }
    Ok(())
}
