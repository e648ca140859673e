//! Webhook endpoints: where an organization hears about its events.

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
