//! The write model: every aggregate, the routing of each command to the one
//! that decides it, and the running of commands (composite ones part by part).

use super::api_key::{self, ApiKey};
use super::balance::{self, Balance};
use super::command::*;
use super::connection::{self, Connection};
use super::file::{self, StoredFile};
use super::invoice::{self, InvoiceState};
use super::organization::{self, Organization};
use super::payment::Payment;
use super::refund::{self, Refund};
use super::webhook_endpoint::{self, WebhookEndpoint};
use super::withdrawal::{self, Withdrawal};
use super::{need, settlement, Ctx, Decision, DomainError};
use crate::events::{Actor, Party, RecordedEvent, StreamId, StreamKind};
use crate::ids::*;
use crate::money::{Amount, Currency};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};

/// Per currency: what came in, what left, what all balances hold, and what is
/// between the two halves of a transfer (a settlement or refund debited from
/// one side and not yet credited to the other). After every event
/// `balances_total + in_transit == deposited − withdrawn`; after every command
/// `in_transit == 0` as well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Supply {
    pub deposited: Amount,
    pub withdrawn: Amount,
    pub balances_total: Amount,
    pub in_transit: Amount,
}

impl Supply {
    /// Money is conserved: all balances plus what is in transit equal what
    /// was deposited minus what was withdrawn.
    pub(super) fn check_conserved(&self, currency: Currency) -> Result<(), String> {
        let expected = self
            .deposited
            .checked_sub(self.withdrawn)
            .ok_or_else(|| format!("{currency}: withdrawn more than deposited"))?;
        let held = self
            .balances_total
            .checked_add(self.in_transit)
            .ok_or("supply overflow")?;
        if held != expected {
            return Err(format!(
                "{currency}: balances {} + in transit {} ≠ deposits − withdrawals {}",
                self.balances_total, self.in_transit, expected
            ));
        }
        Ok(())
    }
}

/// A map for the tables of a million entries whose values are large. A
/// `HashMap` keeps each value in its slot, and its slots are 44–88% full
/// (the table doubles), so a table of 918k invoices costs 2M slots × 153 B.
/// An `IndexMap` keeps the entries in one vector (with their hash) and only
/// an 8-byte index per slot: 18–29 bytes more per entry, against the empty
/// slots' 14–129% of an entry's size. Its order is insertion order until a removal swaps
/// the last entry in; nothing here depends on the order. Serialized as a map,
/// as a `HashMap` is, so snapshots read the same either way.
pub type Dense<K, V> = IndexMap<K, V>;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    pub organizations: HashMap<OrganizationId, Organization>,
    pub api_keys: HashMap<ApiKeyId, ApiKey>,
    pub connections: HashMap<ConnectionId, Connection>,
    pub invoices: Dense<InvoiceId, InvoiceState>,
    pub payments: Dense<PaymentId, Payment>,
    pub balances: HashMap<BalanceId, Balance>,
    pub withdrawals: Dense<WithdrawalId, Withdrawal>,
    pub refunds: Dense<RefundId, Refund>,
    pub webhook_endpoints: HashMap<WebhookEndpointId, WebhookEndpoint>,
    pub files: HashMap<FileId, StoredFile>,

    // indexes, all derived from the events
    pub balance_index: HashMap<(OrganizationId, Currency), BalanceId>,
    pub settlement_transactions: HashMap<TransactionId, PaymentId>,
    pub approved_by_buyer: HashMap<OrganizationId, BTreeSet<InvoiceId>>,
    pub failed_by_payer: HashMap<OrganizationId, BTreeSet<PaymentId>>,
    pub invoices_by_seller: HashMap<OrganizationId, u64>,
    pub file_invoices: HashMap<FileId, BTreeSet<InvoiceId>>,
    pub supply: HashMap<Currency, Supply>,
    pub versions: HashMap<StreamId, u64>,
    pub last_seq: u64,
}

/// A broken invariant: a bug, never a user error. The engine refuses to commit
/// a batch that produces one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated at seq {seq}: {reason}")]
pub struct InvariantViolation {
    pub seq: u64,
    pub reason: String,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream's last version. An invoice carries its own (most streams
    /// are invoices, and a second map of a million entries is memory the
    /// decisions do not need); `versions` holds the other streams'.
    pub fn version(&self, stream: StreamId) -> u64 {
        if stream.kind == StreamKind::Invoice {
            return self
                .invoices
                .get(&InvoiceId::from_uuid(stream.id))
                .map_or(0, |i| i.version);
        }
        self.versions.get(&stream).copied().unwrap_or(0)
    }

    /// How many streams have events: the invoices (which keep their own
    /// versions) and the others in `versions`.
    pub fn stream_count(&self) -> usize {
        self.versions.len() + self.invoices.len()
    }

    pub fn balance_of(&self, org: OrganizationId, currency: Currency) -> Option<&Balance> {
        self.balance_index
            .get(&(org, currency))
            .and_then(|id| self.balances.get(id))
    }

    /// The invoice as `org` may see it, with `org`'s party; 404 otherwise
    /// (another organization's, or a draft to the buyer).
    pub fn visible_invoice(
        &self,
        org: OrganizationId,
        id: InvoiceId,
    ) -> Result<(&InvoiceState, Party), DomainError> {
        let inv = need(self.invoices.get(&id), "invoice")?;
        let party = need(inv.party_of(org), "invoice")?;
        Ok((inv, party))
    }

    // ------------------------------------------------------------------
    // decide: each command goes to the aggregate whose rules decide it
    // ------------------------------------------------------------------

    /// Decides one command against the current state. Pure: reads `self` and
    /// `ctx`, returns the events to append or why not.
    pub fn decide(&self, actor: &Actor, command: &Command, ctx: &mut Ctx<'_>) -> Decision {
        match actor {
            Actor::Admin => self.decide_admin(command, ctx),
            Actor::System => self.decide_system(command),
            Actor::ApiKey {
                organization_id,
                api_key_id,
            } => self.decide_org(*organization_id, *api_key_id, command, ctx),
        }
    }

    fn decide_admin(&self, command: &Command, ctx: &mut Ctx<'_>) -> Decision {
        match command {
            Command::CreateOrganization {
                name,
                api_key_secret_hash,
            } => organization::create(name, api_key_secret_hash, ctx),
            Command::Deposit { .. }
            | Command::SetCollateral { .. }
            | Command::FreezeBalance { .. }
            | Command::UnfreezeBalance { .. } => balance::decide(self, command, ctx),
            _ => Err(DomainError::Forbidden("not an operator command".into())),
        }
    }

    fn decide_system(&self, command: &Command) -> Decision {
        match command {
            Command::MarkPaymentDue { .. } | Command::AutoArchive { .. } => {
                invoice::decide_scheduled(self, command)
            }
            _ => Err(DomainError::Forbidden("not a scheduled command".into())),
        }
    }

    /// An organization's command, by its API key `key`.
    fn decide_org(
        &self,
        org: OrganizationId,
        key: ApiKeyId,
        command: &Command,
        ctx: &mut Ctx<'_>,
    ) -> Decision {
        use Command::*;
        match command {
            CreateApiKey { .. } | RevokeApiKey { .. } => api_key::decide(self, org, command, ctx),
            CreateWebhookEndpoint { .. }
            | UpdateWebhookEndpoint { .. }
            | DeleteWebhookEndpoint { .. }
            | RotateWebhookSecret { .. } => webhook_endpoint::decide(self, org, command, ctx),
            RequestConnection { .. } | AcceptConnection { .. } | RejectConnection { .. } => {
                connection::decide(self, org, command, ctx)
            }
            CreateInvoice(_)
            | UpdateInvoice { .. }
            | AddLineItem { .. }
            | UpdateLineItem { .. }
            | RemoveLineItem { .. }
            | Invoice { .. } => invoice::decide(self, org, command, ctx),
            SettleInvoice { id } => settlement::settle(self, org, *id, ctx),
            RetryPayment { id } => settlement::retry(self, org, *id, ctx),
            SubmitWithdrawal { .. }
            | ApproveWithdrawal { .. }
            | RejectWithdrawal { .. }
            | CancelWithdrawal { .. } => withdrawal::decide(self, org, key, command, ctx),
            CreateRefund { .. } | ApproveRefund { .. } | RejectRefund { .. } => {
                refund::decide(self, org, command, ctx)
            }
            StoreFile { .. } | DeleteFile { .. } => file::decide(self, org, command),
            Bulk(_) | SettleAllDue { .. } | RetryFailedPayments { .. } => Err(
                DomainError::Validation("composite commands are expanded before deciding".into()),
            ),
            CreateOrganization { .. }
            | Deposit { .. }
            | SetCollateral { .. }
            | FreezeBalance { .. }
            | UnfreezeBalance { .. } => Err(DomainError::Forbidden("operator command".into())),
            MarkPaymentDue { .. } | AutoArchive { .. } => {
                Err(DomainError::Forbidden("scheduled command".into()))
            }
        }
    }
}

fn subject_of(command: &Command) -> Option<uuid::Uuid> {
    match command {
        Command::Invoice { id, .. } | Command::SettleInvoice { id } => Some(id.as_uuid()),
        Command::RetryPayment { id } => Some(id.as_uuid()),
        _ => None,
    }
}

/// Whose scheduled or composite work a command expands into.
impl Ledger {
    /// Composite commands become the independent commands they stand for,
    /// resolved against the state at the moment they run.
    pub fn expand(&self, actor: &Actor, command: &Command) -> Option<Vec<Command>> {
        match command {
            Command::Bulk(commands) => Some(commands.clone()),
            Command::SettleAllDue { as_of } => {
                let org = actor.organization()?;
                Some(
                    self.approved_by_buyer
                        .get(&org)
                        .into_iter()
                        .flatten()
                        .filter(|id| self.invoices.get(*id).is_some_and(|i| i.due_date <= *as_of))
                        .map(|id| Command::SettleInvoice { id: *id })
                        .collect(),
                )
            }
            Command::RetryFailedPayments { ids } => {
                let org = actor.organization()?;
                let ids: Vec<PaymentId> = match ids {
                    Some(ids) => ids.clone(),
                    // Only payments whose invoice can still be settled are worth retrying.
                    None => self
                        .failed_by_payer
                        .get(&org)
                        .into_iter()
                        .flatten()
                        .filter(|p| {
                            self.payments
                                .get(*p)
                                .and_then(|p| self.invoices.get(&p.invoice_id))
                                .is_some_and(|i| i.status.is_approved())
                        })
                        .copied()
                        .collect(),
                };
                Some(
                    ids.into_iter()
                        .map(|id| Command::RetryPayment { id })
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Decides `command`, records its events (numbered after `last_seq`) into
    /// `out` and applies them. Composite commands run each part on its own,
    /// against the state the parts before it left. The outer `Err` is a broken
    /// invariant: the state must then be rebuilt from the log.
    pub fn execute(
        &mut self,
        actor: &Actor,
        request_id: Option<RequestId>,
        command: &Command,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<Result<Outcome, DomainError>, InvariantViolation> {
        if let Some(parts) = self.expand(actor, command) {
            let mut results = Vec::with_capacity(parts.len());
            for part in &parts {
                let subject = subject_of(part);
                let result = self.execute_one(actor, request_id, part, ctx, out)?;
                results.push((subject, result));
            }
            return Ok(Ok(Outcome::Bulk(results)));
        }
        self.execute_one(actor, request_id, command, ctx, out)
    }

    fn execute_one(
        &mut self,
        actor: &Actor,
        request_id: Option<RequestId>,
        command: &Command,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<Result<Outcome, DomainError>, InvariantViolation> {
        let (outcome, events) = match self.decide(actor, command, ctx) {
            Ok(decided) => decided,
            Err(e) => return Ok(Err(e)),
        };
        for event in events {
            let recorded = RecordedEvent {
                seq: self.last_seq + 1,
                version: self.version(event.stream()) + 1,
                at: ctx.now,
                actor: *actor,
                request_id,
                event,
            };
            self.apply(&recorded)?;
            out.push(recorded);
        }
        // Both halves of every transfer are in: nothing may be left in transit.
        self.check_settled().map_err(|reason| InvariantViolation {
            seq: self.last_seq,
            reason,
        })?;
        Ok(Ok(outcome))
    }
}

#[cfg(test)]
mod size {
    /// What the write model costs per invoice and payment is measured and
    /// written in BENCHMARKS.md (a `Dense` entry is the value plus 24 bytes,
    /// plus 9 bytes per slot of its index): growing these types grows the
    /// server's memory by a million times as much.
    #[test]
    fn the_write_models_big_entries_stay_as_small_as_measured() {
        assert!(std::mem::size_of::<super::InvoiceState>() <= 136);
        assert!(std::mem::size_of::<super::Payment>() <= 192);
    }
}
