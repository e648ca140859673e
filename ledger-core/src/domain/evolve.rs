//! Applying recorded events to the write model, with the ledger-wide
//! invariants asserted after every event.

use super::api_key::ApiKey;
use super::balance::Balance;
use super::connection::{Connection, ConnectionStatus};
use super::file::StoredFile;
use super::invoice::InvoiceState;
use super::ledger::{InvariantViolation, Ledger};
use super::organization::Organization;
use super::payment::{Payment, PaymentStatus};
use super::refund::{Refund, RefundStatus};
use super::webhook_endpoint::WebhookEndpoint;
use super::withdrawal::{Withdrawal, WithdrawalStatus};
use crate::events::{Event, RecordedEvent};
use crate::money::{Amount, Currency};

impl Ledger {
    /// Applies one recorded event. Checks the dense sequence, the stream
    /// version, the state machine and the money invariants it touches.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), InvariantViolation> {
        let seq = recorded.seq;
        let fail = |reason: String| InvariantViolation { seq, reason };
        if seq != self.last_seq + 1 {
            return Err(fail(format!(
                "sequence gap: expected {}, got {seq}",
                self.last_seq + 1
            )));
        }
        let stream = recorded.stream();
        let version = self.version(stream);
        if recorded.version != version + 1 {
            return Err(fail(format!(
                "stream version gap on {stream:?}: expected {}, got {}",
                version + 1,
                recorded.version
            )));
        }
        self.evolve(&recorded.event, recorded.at).map_err(fail)?;
        if stream.kind == crate::events::StreamKind::Invoice {
            let carried = self.version(stream);
            if carried != recorded.version {
                return Err(fail(format!(
                    "invoice {} carries version {carried} after version {}",
                    stream.id, recorded.version
                )));
            }
        } else {
            self.versions.insert(stream, recorded.version);
        }
        self.last_seq = seq;
        Ok(())
    }

    /// Applies an event's effect without the log-position checks. For read
    /// models that keep their aggregates elsewhere (SQL) and build a new one
    /// with this ledger's own code, on a scratch ledger holding just what the
    /// event reads.
    pub fn evolve_detached(
        &mut self,
        event: &Event,
        at: crate::time::Timestamp,
    ) -> Result<(), String> {
        self.evolve(event, at)
    }

    fn supply_mut(&mut self, currency: Currency) -> &mut super::ledger::Supply {
        self.supply.entry(currency).or_default()
    }

    fn evolve(&mut self, event: &Event, at: crate::time::Timestamp) -> Result<(), String> {
        use Event::*;
        match event {
            OrganizationCreated { id, name } => {
                self.organizations.insert(
                    *id,
                    Organization {
                        id: *id,
                        name: name.clone(),
                        created_at: at,
                    },
                );
            }
            ApiKeyCreated {
                id,
                organization_id,
                name,
                permissions,
                secret_hash,
                expires_at,
            } => {
                self.api_keys.insert(
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
            ApiKeyRevoked { id } => {
                let k = self
                    .api_keys
                    .get_mut(id)
                    .ok_or("revoked an unknown API key")?;
                k.revoked_at = Some(at);
            }
            ConnectionRequested {
                id,
                seller_organization_id,
                buyer_organization_id,
                requested_by,
            } => {
                self.connections.insert(
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
                let c = self
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
            InvoiceCreated { .. } => self.create_invoice(event, at),
            InvoiceUpdated { .. }
            | LineItemAdded { .. }
            | LineItemUpdated { .. }
            | LineItemRemoved { .. }
            | InvoiceSubmitted { .. }
            | InvoiceInfoRequested { .. }
            | InvoiceInfoProvided { .. }
            | InvoiceApproved { .. }
            | InvoiceDisputed { .. }
            | InvoiceCancelled { .. }
            | InvoiceCancellationRequested { .. }
            | InvoiceCancellationRejected { .. }
            | InvoiceSettled { .. }
            | InvoiceArchived { .. }
            | InvoiceRestored { .. }
            | InvoicePaymentDue { .. } => self.evolve_invoice(event, at)?,
            PaymentInitiated {
                id,
                invoice_id,
                payer_organization_id,
                payee_organization_id,
                currency,
                amount,
            } => {
                self.payments.insert(
                    *id,
                    Payment {
                        id: *id,
                        invoice_id: *invoice_id,
                        payer_organization_id: *payer_organization_id,
                        payee_organization_id: *payee_organization_id,
                        currency: *currency,
                        amount: *amount,
                        status: PaymentStatus::Pending,
                        failure_reason: None,
                        attempts: 0,
                        payer_transaction_id: None,
                        payee_transaction_id: None,
                        refunded: Amount::ZERO,
                        created_at: at,
                        completed_at: None,
                        updated_at: at,
                    },
                );
            }
            PaymentCompleted { id, .. } | PaymentFailed { id, .. } => {
                let p = self.payments.get_mut(id).ok_or("unknown payment")?;
                if p.status == PaymentStatus::Completed {
                    return Err(format!("payment {id} completed twice"));
                }
                p.evolve(event, at);
                let failed = self
                    .failed_by_payer
                    .entry(p.payer_organization_id)
                    .or_default();
                if p.status == PaymentStatus::Failed {
                    failed.insert(*id);
                } else {
                    failed.remove(id);
                }
                if let (Some(a), Some(b)) = (p.payer_transaction_id, p.payee_transaction_id) {
                    self.settlement_transactions.insert(a, *id);
                    self.settlement_transactions.insert(b, *id);
                }
            }
            BalanceOpened {
                id,
                organization_id,
                currency,
            } => {
                if self
                    .balance_index
                    .insert((*organization_id, *currency), *id)
                    .is_some()
                {
                    return Err(format!(
                        "second balance for {organization_id} in {currency}"
                    ));
                }
                self.balances
                    .insert(*id, Balance::open(*id, *organization_id, *currency, at));
            }
            FundsDeposited { .. }
            | FundsReserved { .. }
            | ReservationReleased { .. }
            | SettlementDebited { .. }
            | SettlementCredited { .. }
            | WithdrawalDebited { .. }
            | RefundDebited { .. }
            | RefundCredited { .. }
            | CollateralSet { .. }
            | BalanceFrozen { .. }
            | BalanceUnfrozen { .. } => self.evolve_balance(event, at)?,
            WithdrawalSubmitted {
                id,
                organization_id,
                balance_id,
                currency,
                amount,
                destination,
                submitted_by,
            } => {
                self.withdrawals.insert(
                    *id,
                    Withdrawal {
                        id: *id,
                        organization_id: *organization_id,
                        balance_id: *balance_id,
                        currency: *currency,
                        amount: *amount,
                        destination: destination.clone(),
                        status: WithdrawalStatus::PendingApproval,
                        submitted_by: *submitted_by,
                        decided_by: None,
                        rejection_reason: None,
                        transaction_id: None,
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            WithdrawalApproved { id, .. }
            | WithdrawalRejected { id, .. }
            | WithdrawalCancelled { id } => {
                let w = self.withdrawals.get_mut(id).ok_or("unknown withdrawal")?;
                if w.status != WithdrawalStatus::PendingApproval {
                    return Err(format!("withdrawal {id} decided twice"));
                }
                w.evolve(event, at);
            }
            RefundCreated {
                id,
                transaction_id,
                payment_id,
                invoice_id,
                payee_organization_id,
                payer_organization_id,
                requested_by,
                currency,
                amount,
                reason,
            } => {
                let p = self
                    .payments
                    .get_mut(payment_id)
                    .ok_or("refund of an unknown payment")?;
                p.refunded = p
                    .refunded
                    .checked_add(*amount)
                    .filter(|r| *r <= p.amount)
                    .ok_or_else(|| {
                        format!("refunds of payment {payment_id} exceed the settled amount")
                    })?;
                self.refunds.insert(
                    *id,
                    Refund {
                        id: *id,
                        transaction_id: *transaction_id,
                        payment_id: *payment_id,
                        invoice_id: *invoice_id,
                        payee_organization_id: *payee_organization_id,
                        payer_organization_id: *payer_organization_id,
                        requested_by: *requested_by,
                        currency: *currency,
                        amount: *amount,
                        reason: reason.clone(),
                        status: RefundStatus::Pending,
                        rejection_reason: None,
                        payee_transaction_id: None,
                        payer_transaction_id: None,
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            RefundApproved { id, .. } | RefundRejected { id, .. } => {
                let r = self.refunds.get_mut(id).ok_or("unknown refund")?;
                if r.status != RefundStatus::Pending {
                    return Err(format!("refund {id} decided twice"));
                }
                r.evolve(event, at);
                if r.status == RefundStatus::Rejected {
                    let (payment_id, amount) = (r.payment_id, r.amount);
                    if let Some(p) = self.payments.get_mut(&payment_id) {
                        p.refunded = p.refunded.checked_sub(amount).unwrap_or(Amount::ZERO);
                    }
                }
            }
            WebhookEndpointCreated {
                id,
                organization_id,
                url,
                events,
                description,
                secret,
            } => {
                self.webhook_endpoints.insert(
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
            WebhookEndpointUpdated { id, .. }
            | WebhookEndpointDeleted { id }
            | WebhookSecretRotated { id, .. } => {
                self.webhook_endpoints
                    .get_mut(id)
                    .ok_or("unknown webhook endpoint")?
                    .evolve(event, at);
            }
            FileStored {
                id,
                organization_id,
                filename,
                content_type,
                size,
                sha256,
            } => {
                self.files.insert(
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
            FileDeleted { id } => {
                self.files.get_mut(id).ok_or("unknown file")?.deleted = true;
            }
        }
        Ok(())
    }

    fn create_invoice(&mut self, event: &Event, at: crate::time::Timestamp) {
        let Some(inv) = InvoiceState::created(event, at) else {
            return;
        };
        for f in inv.attachments() {
            self.file_invoices.entry(*f).or_default().insert(inv.id);
        }
        *self
            .invoices_by_seller
            .entry(inv.seller_organization_id)
            .or_default() += 1;
        self.invoices.insert(inv.id, inv);
    }

    fn evolve_invoice(&mut self, event: &Event, at: crate::time::Timestamp) -> Result<(), String> {
        let id = crate::ids::InvoiceId::from_uuid(event.stream().id);
        let inv = self
            .invoices
            .get_mut(&id)
            .ok_or("event for an unknown invoice")?;
        let before = inv.status;
        inv.evolve(event, at);
        let after = inv.status;
        if before != after && !before.can_become(after) {
            return Err(format!(
                "invoice {id} moved {} -> {}, not an edge of the state diagram",
                before.as_str(),
                after.as_str()
            ));
        }
        if let Event::InvoiceUpdated {
            attachments: Some(files),
            ..
        } = event
        {
            for f in files {
                self.file_invoices.entry(*f).or_default().insert(id);
            }
        }
        let buyer = inv.buyer_organization_id;
        let approved = self.approved_by_buyer.entry(buyer).or_default();
        if after.is_approved() {
            approved.insert(id);
        } else {
            approved.remove(&id);
        }
        Ok(())
    }

    fn evolve_balance(&mut self, event: &Event, at: crate::time::Timestamp) -> Result<(), String> {
        use Event::*;
        let balance_id = crate::ids::BalanceId::from_uuid(event.stream().id);
        let balance = self
            .balances
            .get_mut(&balance_id)
            .ok_or("event for an unknown balance")?;
        let before = balance.total;
        let currency = balance.currency;
        // Guard the negative space before applying: nothing may go below zero.
        match event {
            FundsReserved { amount, .. } if *amount > balance.available() => {
                return Err(format!(
                    "reservation of {amount} exceeds available on {balance_id}"
                ));
            }
            ReservationReleased { hold, amount, .. } if balance.holds.get(hold) != Some(amount) => {
                return Err(format!("release of {amount} does not match hold {hold:?}"));
            }
            SettlementDebited {
                invoice_id, amount, ..
            } if balance
                .holds
                .get(&crate::events::Hold::Invoice(*invoice_id))
                != Some(amount) =>
            {
                return Err(format!(
                    "settlement of {amount} does not match the reservation"
                ));
            }
            WithdrawalDebited {
                withdrawal_id,
                amount,
                ..
            } if balance
                .holds
                .get(&crate::events::Hold::Withdrawal(*withdrawal_id))
                != Some(amount) =>
            {
                return Err(format!("withdrawal of {amount} does not match its hold"));
            }
            RefundDebited { amount, .. } if *amount > balance.available() => {
                return Err(format!(
                    "refund of {amount} exceeds available on {balance_id}"
                ));
            }
            _ => {}
        }
        balance.evolve(event, at);
        balance.check_invariants()?;
        let after = balance.total;
        let supply = self.supply_mut(currency);
        let overflow = || "supply overflow".to_string();
        match event {
            FundsDeposited { amount, .. } => {
                supply.deposited = supply.deposited.checked_add(*amount).ok_or_else(overflow)?;
            }
            WithdrawalDebited { amount, .. } => {
                supply.withdrawn = supply.withdrawn.checked_add(*amount).ok_or_else(overflow)?;
            }
            SettlementDebited { amount, .. } | RefundDebited { amount, .. } => {
                supply.in_transit = supply
                    .in_transit
                    .checked_add(*amount)
                    .ok_or_else(overflow)?;
            }
            SettlementCredited { amount, .. } | RefundCredited { amount, .. } => {
                supply.in_transit = supply
                    .in_transit
                    .checked_sub(*amount)
                    .ok_or("credited more than was debited")?;
            }
            _ => {}
        }
        supply.balances_total = supply
            .balances_total
            .checked_sub(before)
            .and_then(|t| t.checked_add(after))
            .ok_or("balances total out of range")?;
        conserved(currency, supply)
    }

    /// Every transfer is complete: nothing is in transit in any currency.
    pub fn check_settled(&self) -> Result<(), String> {
        for (currency, s) in &self.supply {
            conserved(*currency, s)?;
            if !s.in_transit.is_zero() {
                return Err(format!("{currency}: {} left in transit", s.in_transit));
            }
        }
        Ok(())
    }
}

/// Money is conserved: all balances plus what is in transit equal what was
/// deposited minus what was withdrawn.
fn conserved(currency: Currency, s: &super::ledger::Supply) -> Result<(), String> {
    let expected = s
        .deposited
        .checked_sub(s.withdrawn)
        .ok_or_else(|| format!("{currency}: withdrawn more than deposited"))?;
    let held = s
        .balances_total
        .checked_add(s.in_transit)
        .ok_or("supply overflow")?;
    if held != expected {
        return Err(format!(
            "{currency}: balances {} + in transit {} ≠ deposits − withdrawals {}",
            s.balances_total, s.in_transit, expected
        ));
    }
    Ok(())
}
