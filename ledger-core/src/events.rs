//! Every fact the ledger records. This module and [`crate::codec`] are the whole
//! persisted format: the log stores nothing else as truth.
//!
//! Evolution rule (the log is append-only and must stay readable forever):
//! never reorder, remove or change the fields of a variant that has been
//! released; add new variants at the end of [`Event`], or a `...V2` variant, and
//! bump [`crate::codec::SCHEMA_VERSION`] only when the envelope itself changes.
//! The golden fixture test enforces this.

use crate::ids::*;
use crate::money::{Amount, Currency, Quantity, TaxRate};
use crate::time::Timestamp;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum Actor {
    /// The server itself (scheduled work: payment.due, auto-archive).
    System,
    /// The operator, through the admin token.
    Admin,
    ApiKey {
        organization_id: OrganizationId,
        api_key_id: ApiKeyId,
    },
}

impl Actor {
    pub fn organization(&self) -> Option<OrganizationId> {
        match self {
            Actor::ApiKey {
                organization_id, ..
            } => Some(*organization_id),
            _ => None,
        }
    }
    pub fn api_key(&self) -> Option<ApiKeyId> {
        match self {
            Actor::ApiKey { api_key_id, .. } => Some(*api_key_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    All,
    InvoicesRead,
    InvoicesWrite,
    InvoicesApprove,
    PaymentsRead,
    PaymentsWrite,
    TreasuryRead,
    TreasuryWrite,
    TreasuryApprove,
    SettingsRead,
    SettingsWrite,
    StorageRead,
    StorageWrite,
}

impl Permission {
    pub const NAMES: [(&'static str, Permission); 13] = [
        ("*", Permission::All),
        ("invoices:read", Permission::InvoicesRead),
        ("invoices:write", Permission::InvoicesWrite),
        ("invoices:approve", Permission::InvoicesApprove),
        ("payments:read", Permission::PaymentsRead),
        ("payments:write", Permission::PaymentsWrite),
        ("treasury:read", Permission::TreasuryRead),
        ("treasury:write", Permission::TreasuryWrite),
        ("treasury:approve", Permission::TreasuryApprove),
        ("settings:read", Permission::SettingsRead),
        ("settings:write", Permission::SettingsWrite),
        ("storage:read", Permission::StorageRead),
        ("storage:write", Permission::StorageWrite),
    ];

    pub fn parse(s: &str) -> Option<Permission> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p)
    }
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("*")
    }
}

/// The two sides of a connection or an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Party {
    Seller,
    Buyer,
}

impl Party {
    pub fn other(self) -> Party {
        match self {
            Party::Seller => Party::Buyer,
            Party::Buyer => Party::Seller,
        }
    }
}

/// What a reservation on a balance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Hold {
    Invoice(InvoiceId),
    Withdrawal(WithdrawalId),
}

/// One invoice line, with its figures computed once when it was written, so a
/// later change to rounding code can never rewrite history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub id: LineItemId,
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: Amount,
    pub tax_rate: TaxRate,
    pub amount: Amount,
    pub tax_amount: Amount,
}

/// Where a withdrawal goes: `iban` or `accountNumber` plus free-form bank fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub fields: Vec<(String, String)>,
}

// ---------------------------------------------------------------------------
// The event set, one struct per fact. Field order is part of the format.
// ---------------------------------------------------------------------------

// JSON field names are camelCase like the API's; postcard does not encode names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum Event {
    // organizations and access
    OrganizationCreated {
        id: OrganizationId,
        name: String,
    },
    ApiKeyCreated {
        id: ApiKeyId,
        organization_id: OrganizationId,
        name: String,
        permissions: Vec<Permission>,
        /// SHA-256 of the 32-byte random secret; the secret itself is never stored.
        secret_hash: [u8; 32],
        expires_at: Option<Timestamp>,
    },
    ApiKeyRevoked {
        id: ApiKeyId,
    },

    // connections
    ConnectionRequested {
        id: ConnectionId,
        seller_organization_id: OrganizationId,
        buyer_organization_id: OrganizationId,
        requested_by: OrganizationId,
    },
    ConnectionAccepted {
        id: ConnectionId,
    },
    /// Written before rejections carried a reason; new ones are
    /// [`Event::ConnectionRejectedBecause`].
    ConnectionRejected {
        id: ConnectionId,
    },

    // invoices
    InvoiceCreated {
        id: InvoiceId,
        connection_id: ConnectionId,
        seller_organization_id: OrganizationId,
        buyer_organization_id: OrganizationId,
        number: String,
        currency: Currency,
        issue_date: NaiveDate,
        due_date: NaiveDate,
        memo: Option<String>,
        line_items: Vec<LineItem>,
        attachments: Vec<FileId>,
    },
    /// A PATCH; `None` leaves a field as it was.
    InvoiceUpdated {
        id: InvoiceId,
        number: Option<String>,
        due_date: Option<NaiveDate>,
        memo: Option<Option<String>>,
        line_items: Option<Vec<LineItem>>,
        attachments: Option<Vec<FileId>>,
    },
    LineItemAdded {
        id: InvoiceId,
        item: LineItem,
    },
    LineItemUpdated {
        id: InvoiceId,
        item: LineItem,
    },
    LineItemRemoved {
        id: InvoiceId,
        line_item_id: LineItemId,
    },
    InvoiceSubmitted {
        id: InvoiceId,
    },
    InvoiceInfoRequested {
        id: InvoiceId,
        question: String,
    },
    InvoiceInfoProvided {
        id: InvoiceId,
        message: String,
    },
    /// APPROVED, or APPROVED_WITH_ADJUSTMENT when `adjustment_reason` is set.
    InvoiceApproved {
        id: InvoiceId,
        approved_amount: Amount,
        adjustment_reason: Option<String>,
    },
    InvoiceDisputed {
        id: InvoiceId,
        reason: String,
    },
    InvoiceCancelled {
        id: InvoiceId,
        by: Party,
        reason: Option<String>,
    },
    InvoiceCancellationRequested {
        id: InvoiceId,
        by: Party,
        reason: String,
    },
    InvoiceCancellationRejected {
        id: InvoiceId,
    },
    InvoiceSettled {
        id: InvoiceId,
        payment_id: PaymentId,
    },
    InvoiceArchived {
        id: InvoiceId,
    },
    InvoiceRestored {
        id: InvoiceId,
    },
    /// The due date of an approved invoice arrived (drives `payment.due`, once).
    InvoicePaymentDue {
        id: InvoiceId,
        due_date: NaiveDate,
    },

    // payments
    PaymentInitiated {
        id: PaymentId,
        invoice_id: InvoiceId,
        payer_organization_id: OrganizationId,
        payee_organization_id: OrganizationId,
        currency: Currency,
        amount: Amount,
    },
    PaymentCompleted {
        id: PaymentId,
        payer_transaction_id: TransactionId,
        payee_transaction_id: TransactionId,
    },
    PaymentFailed {
        id: PaymentId,
        reason: String,
    },

    // balances
    BalanceOpened {
        id: BalanceId,
        organization_id: OrganizationId,
        currency: Currency,
    },
    FundsDeposited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        amount: Amount,
        reference: String,
    },
    FundsReserved {
        balance_id: BalanceId,
        hold: Hold,
        amount: Amount,
    },
    ReservationReleased {
        balance_id: BalanceId,
        hold: Hold,
        amount: Amount,
    },
    /// SETTLEMENT_OUT: the payer's reservation for the invoice is spent.
    SettlementDebited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        payment_id: PaymentId,
        invoice_id: InvoiceId,
        counterparty_organization_id: OrganizationId,
        amount: Amount,
    },
    /// SETTLEMENT_IN.
    SettlementCredited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        payment_id: PaymentId,
        invoice_id: InvoiceId,
        counterparty_organization_id: OrganizationId,
        amount: Amount,
    },
    /// WITHDRAWAL: the hold for the withdrawal is spent.
    WithdrawalDebited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        withdrawal_id: WithdrawalId,
        amount: Amount,
    },
    /// REFUND_OUT: the original payee gives money back.
    RefundDebited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        refund_id: RefundId,
        counterparty_organization_id: OrganizationId,
        amount: Amount,
    },
    /// REFUND_IN.
    RefundCredited {
        balance_id: BalanceId,
        transaction_id: TransactionId,
        refund_id: RefundId,
        counterparty_organization_id: OrganizationId,
        amount: Amount,
    },
    CollateralSet {
        balance_id: BalanceId,
        amount: Amount,
    },
    BalanceFrozen {
        balance_id: BalanceId,
        reason: String,
    },
    BalanceUnfrozen {
        balance_id: BalanceId,
        reason: String,
    },

    // withdrawals
    WithdrawalSubmitted {
        id: WithdrawalId,
        organization_id: OrganizationId,
        balance_id: BalanceId,
        currency: Currency,
        amount: Amount,
        destination: Destination,
        submitted_by: ApiKeyId,
    },
    WithdrawalApproved {
        id: WithdrawalId,
        approved_by: ApiKeyId,
        transaction_id: TransactionId,
    },
    WithdrawalRejected {
        id: WithdrawalId,
        rejected_by: ApiKeyId,
        reason: String,
    },
    WithdrawalCancelled {
        id: WithdrawalId,
    },

    // refunds
    RefundCreated {
        id: RefundId,
        /// The settlement transaction (either side's) the refund is against.
        transaction_id: TransactionId,
        payment_id: PaymentId,
        invoice_id: InvoiceId,
        /// Received the settlement; pays the refund.
        payee_organization_id: OrganizationId,
        /// Made the settlement; receives the refund.
        payer_organization_id: OrganizationId,
        requested_by: OrganizationId,
        currency: Currency,
        amount: Amount,
        reason: String,
    },
    RefundApproved {
        id: RefundId,
        payee_transaction_id: TransactionId,
        payer_transaction_id: TransactionId,
    },
    RefundRejected {
        id: RefundId,
        reason: String,
    },

    // webhook endpoints
    WebhookEndpointCreated {
        id: WebhookEndpointId,
        organization_id: OrganizationId,
        url: String,
        events: Vec<String>,
        description: Option<String>,
        secret: String,
    },
    WebhookEndpointUpdated {
        id: WebhookEndpointId,
        url: Option<String>,
        events: Option<Vec<String>>,
        enabled: Option<bool>,
        description: Option<Option<String>>,
    },
    WebhookEndpointDeleted {
        id: WebhookEndpointId,
    },
    /// The previous secret keeps signing alongside the new one until `previous_valid_until`.
    WebhookSecretRotated {
        id: WebhookEndpointId,
        secret: String,
        previous_valid_until: Timestamp,
    },

    // stored files (the bytes live in object storage; the log keeps the facts)
    FileStored {
        id: FileId,
        organization_id: OrganizationId,
        filename: String,
        content_type: String,
        size: u64,
        sha256: [u8; 32],
    },
    FileDeleted {
        id: FileId,
    },
    // Appended here, not beside ConnectionRejected: postcard numbers
    // variants by position, so a new one goes last or old logs misread.
    /// A connection rejected, with the counterparty's reason if it gave one.
    ConnectionRejectedBecause {
        id: ConnectionId,
        reason: Option<String>,
    },
}

/// The aggregate an event belongs to. Derived from the event itself, so an
/// event can never be filed under the wrong stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub kind: StreamKind,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum StreamKind {
    Organization = 1,
    ApiKey = 2,
    Connection = 3,
    Invoice = 4,
    Payment = 5,
    Balance = 6,
    Withdrawal = 7,
    Refund = 8,
    WebhookEndpoint = 9,
    File = 10,
}

impl StreamId {
    /// 17 bytes: kind, then the UUID. Used as a sled key prefix.
    pub fn to_bytes(self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.kind as u8;
        out[1..].copy_from_slice(self.id.as_bytes());
        out
    }
}

impl Event {
    pub fn stream(&self) -> StreamId {
        use Event::*;
        let (kind, id) = match self {
            OrganizationCreated { id, .. } => (StreamKind::Organization, id.as_uuid()),
            ApiKeyCreated { id, .. } | ApiKeyRevoked { id } => (StreamKind::ApiKey, id.as_uuid()),
            ConnectionRequested { id, .. }
            | ConnectionAccepted { id }
            | ConnectionRejected { id }
            | ConnectionRejectedBecause { id, .. } => (StreamKind::Connection, id.as_uuid()),
            InvoiceCreated { id, .. }
            | InvoiceUpdated { id, .. }
            | LineItemAdded { id, .. }
            | LineItemUpdated { id, .. }
            | LineItemRemoved { id, .. }
            | InvoiceSubmitted { id }
            | InvoiceInfoRequested { id, .. }
            | InvoiceInfoProvided { id, .. }
            | InvoiceApproved { id, .. }
            | InvoiceDisputed { id, .. }
            | InvoiceCancelled { id, .. }
            | InvoiceCancellationRequested { id, .. }
            | InvoiceCancellationRejected { id }
            | InvoiceSettled { id, .. }
            | InvoiceArchived { id }
            | InvoiceRestored { id }
            | InvoicePaymentDue { id, .. } => (StreamKind::Invoice, id.as_uuid()),
            PaymentInitiated { id, .. }
            | PaymentCompleted { id, .. }
            | PaymentFailed { id, .. } => (StreamKind::Payment, id.as_uuid()),
            BalanceOpened { id, .. } => (StreamKind::Balance, id.as_uuid()),
            FundsDeposited { balance_id, .. }
            | FundsReserved { balance_id, .. }
            | ReservationReleased { balance_id, .. }
            | SettlementDebited { balance_id, .. }
            | SettlementCredited { balance_id, .. }
            | WithdrawalDebited { balance_id, .. }
            | RefundDebited { balance_id, .. }
            | RefundCredited { balance_id, .. }
            | CollateralSet { balance_id, .. }
            | BalanceFrozen { balance_id, .. }
            | BalanceUnfrozen { balance_id, .. } => (StreamKind::Balance, balance_id.as_uuid()),
            WithdrawalSubmitted { id, .. }
            | WithdrawalApproved { id, .. }
            | WithdrawalRejected { id, .. }
            | WithdrawalCancelled { id } => (StreamKind::Withdrawal, id.as_uuid()),
            RefundCreated { id, .. } | RefundApproved { id, .. } | RefundRejected { id, .. } => {
                (StreamKind::Refund, id.as_uuid())
            }
            WebhookEndpointCreated { id, .. }
            | WebhookEndpointUpdated { id, .. }
            | WebhookEndpointDeleted { id }
            | WebhookSecretRotated { id, .. } => (StreamKind::WebhookEndpoint, id.as_uuid()),
            FileStored { id, .. } | FileDeleted { id } => (StreamKind::File, id.as_uuid()),
        };
        StreamId { kind, id }
    }

    /// The variant's name, for logs, exports and `replay-tool stats`.
    pub fn type_name(&self) -> &'static str {
        use Event::*;
        match self {
            OrganizationCreated { .. } => "OrganizationCreated",
            ApiKeyCreated { .. } => "ApiKeyCreated",
            ApiKeyRevoked { .. } => "ApiKeyRevoked",
            ConnectionRequested { .. } => "ConnectionRequested",
            ConnectionAccepted { .. } => "ConnectionAccepted",
            ConnectionRejected { .. } | ConnectionRejectedBecause { .. } => "ConnectionRejected",
            InvoiceCreated { .. } => "InvoiceCreated",
            InvoiceUpdated { .. } => "InvoiceUpdated",
            LineItemAdded { .. } => "LineItemAdded",
            LineItemUpdated { .. } => "LineItemUpdated",
            LineItemRemoved { .. } => "LineItemRemoved",
            InvoiceSubmitted { .. } => "InvoiceSubmitted",
            InvoiceInfoRequested { .. } => "InvoiceInfoRequested",
            InvoiceInfoProvided { .. } => "InvoiceInfoProvided",
            InvoiceApproved { .. } => "InvoiceApproved",
            InvoiceDisputed { .. } => "InvoiceDisputed",
            InvoiceCancelled { .. } => "InvoiceCancelled",
            InvoiceCancellationRequested { .. } => "InvoiceCancellationRequested",
            InvoiceCancellationRejected { .. } => "InvoiceCancellationRejected",
            InvoiceSettled { .. } => "InvoiceSettled",
            InvoiceArchived { .. } => "InvoiceArchived",
            InvoiceRestored { .. } => "InvoiceRestored",
            InvoicePaymentDue { .. } => "InvoicePaymentDue",
            PaymentInitiated { .. } => "PaymentInitiated",
            PaymentCompleted { .. } => "PaymentCompleted",
            PaymentFailed { .. } => "PaymentFailed",
            BalanceOpened { .. } => "BalanceOpened",
            FundsDeposited { .. } => "FundsDeposited",
            FundsReserved { .. } => "FundsReserved",
            ReservationReleased { .. } => "ReservationReleased",
            SettlementDebited { .. } => "SettlementDebited",
            SettlementCredited { .. } => "SettlementCredited",
            WithdrawalDebited { .. } => "WithdrawalDebited",
            RefundDebited { .. } => "RefundDebited",
            RefundCredited { .. } => "RefundCredited",
            CollateralSet { .. } => "CollateralSet",
            BalanceFrozen { .. } => "BalanceFrozen",
            BalanceUnfrozen { .. } => "BalanceUnfrozen",
            WithdrawalSubmitted { .. } => "WithdrawalSubmitted",
            WithdrawalApproved { .. } => "WithdrawalApproved",
            WithdrawalRejected { .. } => "WithdrawalRejected",
            WithdrawalCancelled { .. } => "WithdrawalCancelled",
            RefundCreated { .. } => "RefundCreated",
            RefundApproved { .. } => "RefundApproved",
            RefundRejected { .. } => "RefundRejected",
            WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            WebhookEndpointUpdated { .. } => "WebhookEndpointUpdated",
            WebhookEndpointDeleted { .. } => "WebhookEndpointDeleted",
            WebhookSecretRotated { .. } => "WebhookSecretRotated",
            FileStored { .. } => "FileStored",
            FileDeleted { .. } => "FileDeleted",
        }
    }
}

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    /// Global position, dense from 1.
    pub seq: u64,
    /// Position within the event's stream, dense from 1.
    pub version: u64,
    pub at: Timestamp,
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub event: Event,
}

impl RecordedEvent {
    pub fn stream(&self) -> StreamId {
        self.event.stream()
    }
}
