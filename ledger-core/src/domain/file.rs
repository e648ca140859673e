//! Stored files' metadata (the bytes live in object storage).

use super::command::{Command, Outcome};
use super::invoice::InvoiceStatus;
use super::ledger::Ledger;
use super::{misapplied, misrouted, need, Decision, DomainError};
use crate::events::Event;
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

/// Recording a stored file's metadata, and deleting it.
pub(super) fn decide(ledger: &Ledger, org: OrganizationId, command: &Command) -> Decision {
    match command {
        Command::StoreFile {
            id,
            filename,
            content_type,
            size,
            sha256,
        } => {
            if ledger.files.contains_key(id) {
                return Err(DomainError::Validation("file id already used".into()));
            }
            Ok((
                Outcome::File(*id),
                vec![Event::FileStored {
                    id: *id,
                    organization_id: org,
                    filename: filename.clone(),
                    content_type: content_type.clone(),
                    size: *size,
                    sha256: *sha256,
                }],
            ))
        }
        Command::DeleteFile { id } => delete(ledger, org, *id),
        _ => Err(misrouted("file")),
    }
}

/// An invoice past its draft keeps its attachments as evidence, so their
/// files stay; drafts let go of theirs.
fn delete(ledger: &Ledger, org: OrganizationId, id: FileId) -> Decision {
    need(
        ledger
            .files
            .get(&id)
            .filter(|f| f.organization_id == org && !f.deleted),
        "file",
    )?;
    let attached_beyond_draft = ledger
        .file_invoices
        .get(&id)
        .into_iter()
        .flatten()
        .any(|inv| {
            ledger
                .invoices
                .get(inv)
                .is_some_and(|i| i.status != InvoiceStatus::Draft && i.attachments().contains(&id))
        });
    if attached_beyond_draft {
        return Err(DomainError::Validation(
            "the file is attached to an invoice that is no longer a draft".into(),
        ));
    }
    // Drafts that still list the file drop it, so no invoice names a missing file.
    let mut events: Vec<Event> = ledger
        .file_invoices
        .get(&id)
        .into_iter()
        .flatten()
        .filter_map(|inv| ledger.invoices.get(inv))
        .filter(|i| i.attachments().contains(&id))
        .map(|i| Event::InvoiceUpdated {
            id: i.id,
            number: None,
            due_date: None,
            memo: None,
            line_items: None,
            attachments: Some(
                i.attachments()
                    .iter()
                    .copied()
                    .filter(|f| *f != id)
                    .collect(),
            ),
        })
        .collect();
    events.push(Event::FileDeleted { id });
    Ok((Outcome::File(id), events))
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::FileStored {
            id,
            organization_id,
            filename,
            content_type,
            size,
            sha256,
        } => {
            ledger.files.insert(
                *id,
                StoredFile {
                    id: *id,
                    organization_id: *organization_id,
                    filename: filename.clone(),
                    content_type: content_type.clone(),
                    size: *size,
                    sha256: *sha256,
                    created_at: at,
                    deleted: false,
                },
            );
        }
        Event::FileDeleted { id } => {
            ledger.files.get_mut(id).ok_or("unknown file")?.deleted = true;
        }
        _ => return Err(misapplied("file", event)),
    }
    Ok(())
}
