//! Webhook endpoints: where an organization hears about its events.

use super::command::{Command, Outcome};
use super::ledger::Ledger;
use super::{misapplied, misrouted, need, Ctx, Decision, DomainError};
use crate::events::Event;
use crate::ids::{OrganizationId, WebhookEndpointId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub organization_id: OrganizationId,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub secret: String,
    /// After a rotation the old secret signs too, until the instant given.
    pub previous_secret: Option<(String, Timestamp)>,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// `*`, a `prefix.*` family, or the exact event name.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|f| {
            f == "*"
                || f == event_type
                || f.strip_suffix(".*").is_some_and(|p| {
                    event_type
                        .strip_prefix(p)
                        .is_some_and(|r| r.starts_with('.'))
                })
        })
    }

    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        match event {
            Event::WebhookEndpointUpdated {
                url,
                events,
                enabled,
                description,
                ..
            } => {
                if let Some(u) = url {
                    self.url = u.clone();
                }
                if let Some(e) = events {
                    self.events = e.clone();
                }
                if let Some(e) = enabled {
                    self.enabled = *e;
                }
                if let Some(d) = description {
                    self.description = d.clone();
                }
            }
            Event::WebhookEndpointDeleted { .. } => self.deleted = true,
            Event::WebhookSecretRotated {
                secret,
                previous_valid_until,
                ..
            } => {
                let old = std::mem::replace(&mut self.secret, secret.clone());
                self.previous_secret = Some((old, *previous_valid_until));
            }
            _ => {}
        }
        self.updated_at = at;
    }
}

/// Creating, changing, deleting `org`'s endpoints and rotating their secrets.
pub(super) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let (id, event) = match command {
        Command::CreateWebhookEndpoint {
            url,
            events,
            description,
            secret,
        } => {
            let id = ctx.id();
            let event = Event::WebhookEndpointCreated {
                id,
                organization_id: org,
                url: url.clone(),
                events: events.clone(),
                description: description.clone(),
                secret: secret.clone(),
            };
            (id, event)
        }
        Command::UpdateWebhookEndpoint {
            id,
            url,
            events,
            enabled,
            description,
        } => {
            own_endpoint(ledger, org, *id)?;
            let event = Event::WebhookEndpointUpdated {
                id: *id,
                url: url.clone(),
                events: events.clone(),
                enabled: *enabled,
                description: description.clone(),
            };
            (*id, event)
        }
        Command::DeleteWebhookEndpoint { id } => {
            own_endpoint(ledger, org, *id)?;
            (*id, Event::WebhookEndpointDeleted { id: *id })
        }
        Command::RotateWebhookSecret {
            id,
            secret,
            previous_valid_until,
        } => {
            own_endpoint(ledger, org, *id)?;
            let event = Event::WebhookSecretRotated {
                id: *id,
                secret: secret.clone(),
                previous_valid_until: *previous_valid_until,
            };
            (*id, event)
        }
        _ => return Err(misrouted("webhook endpoint")),
    };
    Ok((Outcome::WebhookEndpoint(id), vec![event]))
}

/// A deleted endpoint is as absent as another organization's.
fn own_endpoint(
    ledger: &Ledger,
    org: OrganizationId,
    id: WebhookEndpointId,
) -> Result<&WebhookEndpoint, DomainError> {
    need(
        ledger
            .webhook_endpoints
            .get(&id)
            .filter(|e| e.organization_id == org && !e.deleted),
        "webhook endpoint",
    )
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::WebhookEndpointCreated {
            id,
            organization_id,
            url,
            events,
            description,
            secret,
        } => {
            ledger.webhook_endpoints.insert(
                *id,
                WebhookEndpoint {
                    id: *id,
                    organization_id: *organization_id,
                    url: url.clone(),
                    events: events.clone(),
                    description: description.clone(),
                    enabled: true,
                    secret: secret.clone(),
                    previous_secret: None,
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        Event::WebhookEndpointUpdated { id, .. }
        | Event::WebhookEndpointDeleted { id }
        | Event::WebhookSecretRotated { id, .. } => {
            ledger
                .webhook_endpoints
                .get_mut(id)
                .ok_or("unknown webhook endpoint")?
                .evolve(event, at);
        }
        _ => return Err(misapplied("webhook endpoint", event)),
    }
    Ok(())
}
