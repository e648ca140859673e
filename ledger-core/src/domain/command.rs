//! Commands: what callers ask for, already parsed at the edge into domain
//! types. Amounts whose currency lives in the ledger (line items, adjustments,
//! refunds) arrive as strings and are parsed against that currency in `decide`.

use crate::events::{Destination, Party, Permission};
use crate::ids::*;
use crate::money::{Amount, Currency, Quantity, TaxRate};
use crate::time::Timestamp;
use chrono::NaiveDate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItemInput {
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: String,
    pub tax_rate: TaxRate,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineItemPatch {
    pub description: Option<String>,
    pub quantity: Option<Quantity>,
    pub unit_price: Option<String>,
    pub tax_rate: Option<TaxRate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvoice {
    pub connection_id: ConnectionId,
    pub number: Option<String>,
    pub currency: Currency,
    pub issue_date: Option<NaiveDate>,
    pub due_date: NaiveDate,
    pub memo: Option<String>,
    pub line_items: Vec<LineItemInput>,
    pub attachments: Vec<FileId>,
    pub submit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvoicePatch {
    pub expected_version: Option<u64>,
    pub number: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub memo: Option<Option<String>>,
    pub line_items: Option<Vec<LineItemInput>>,
    pub attachments: Option<Vec<FileId>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceAction {
    Submit,
    RespondInfo {
        message: String,
    },
    Approve {
        adjusted_amount: Option<String>,
        reason: Option<String>,
    },
    Dispute {
        reason: String,
    },
    RequestInfo {
        question: String,
    },
    Cancel {
        reason: Option<String>,
    },
    RequestCancellation {
        reason: String,
    },
    AcceptCancellation,
    RejectCancellation,
    Archive,
    Restore,
}

impl InvoiceAction {
    pub fn name(&self) -> &'static str {
        match self {
            InvoiceAction::Submit => "submit",
            InvoiceAction::RespondInfo { .. } => "respond-info",
            InvoiceAction::Approve { .. } => "approve",
            InvoiceAction::Dispute { .. } => "dispute",
            InvoiceAction::RequestInfo { .. } => "request-info",
            InvoiceAction::Cancel { .. } => "cancel",
            InvoiceAction::RequestCancellation { .. } => "request-cancellation",
            InvoiceAction::AcceptCancellation => "accept-cancellation",
            InvoiceAction::RejectCancellation => "reject-cancellation",
            InvoiceAction::Archive => "archive",
            InvoiceAction::Restore => "restore",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    // operator
    CreateOrganization {
        name: String,
        api_key_secret_hash: [u8; 32],
    },
    Deposit {
        organization_id: OrganizationId,
        currency: Currency,
        amount: Amount,
        reference: String,
    },
    SetCollateral {
        organization_id: OrganizationId,
        currency: Currency,
        amount: Amount,
    },
    FreezeBalance {
        organization_id: OrganizationId,
        currency: Currency,
        reason: String,
    },
    UnfreezeBalance {
        organization_id: OrganizationId,
        currency: Currency,
        reason: String,
    },

    // settings
    CreateApiKey {
        name: String,
        permissions: Vec<Permission>,
        secret_hash: [u8; 32],
        expires_at: Option<Timestamp>,
    },
    RevokeApiKey {
        id: ApiKeyId,
    },
    CreateWebhookEndpoint {
        url: String,
        events: Vec<String>,
        description: Option<String>,
        secret: String,
    },
    UpdateWebhookEndpoint {
        id: WebhookEndpointId,
        url: Option<String>,
        events: Option<Vec<String>>,
        enabled: Option<bool>,
        description: Option<Option<String>>,
    },
    DeleteWebhookEndpoint {
        id: WebhookEndpointId,
    },
    RotateWebhookSecret {
        id: WebhookEndpointId,
        secret: String,
        previous_valid_until: Timestamp,
    },

    // connections
    RequestConnection {
        counterparty: OrganizationId,
        /// The caller's role in the pair.
        role: Party,
    },
    AcceptConnection {
        id: ConnectionId,
    },
    RejectConnection {
        id: ConnectionId,
        reason: Option<String>,
    },

    // invoices
    CreateInvoice(NewInvoice),
    UpdateInvoice {
        id: InvoiceId,
        patch: InvoicePatch,
    },
    AddLineItem {
        id: InvoiceId,
        item: LineItemInput,
    },
    UpdateLineItem {
        id: InvoiceId,
        line_item_id: LineItemId,
        patch: LineItemPatch,
    },
    RemoveLineItem {
        id: InvoiceId,
        line_item_id: LineItemId,
    },
    Invoice {
        id: InvoiceId,
        action: InvoiceAction,
    },

    // payments
    SettleInvoice {
        id: InvoiceId,
    },
    SettleAllDue {
        as_of: NaiveDate,
    },
    RetryPayment {
        id: PaymentId,
    },
    RetryFailedPayments {
        ids: Option<Vec<PaymentId>>,
    },

    // treasury
    SubmitWithdrawal {
        currency: Currency,
        amount: Amount,
        destination: Destination,
    },
    ApproveWithdrawal {
        id: WithdrawalId,
    },
    RejectWithdrawal {
        id: WithdrawalId,
        reason: String,
    },
    CancelWithdrawal {
        id: WithdrawalId,
    },
    CreateRefund {
        transaction_id: TransactionId,
        amount: String,
        reason: String,
    },
    ApproveRefund {
        id: RefundId,
    },
    RejectRefund {
        id: RefundId,
        reason: String,
    },

    // storage (the bytes are already stored under `id` when this arrives)
    StoreFile {
        id: FileId,
        filename: String,
        content_type: String,
        size: u64,
        sha256: [u8; 32],
    },
    DeleteFile {
        id: FileId,
    },

    // scheduled work (actor: System)
    MarkPaymentDue {
        id: InvoiceId,
        today: NaiveDate,
    },
    AutoArchive {
        id: InvoiceId,
    },

    /// Independent commands in one request: each succeeds or fails on its own.
    Bulk(Vec<Command>),
}

/// What a successful command produced; the caller renders the response from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Organization {
        id: OrganizationId,
        api_key_id: ApiKeyId,
    },
    ApiKey(ApiKeyId),
    WebhookEndpoint(WebhookEndpointId),
    Connection(ConnectionId),
    Invoice(InvoiceId),
    Payment(PaymentId),
    Transaction {
        id: TransactionId,
        balance_id: BalanceId,
    },
    Balance(BalanceId),
    Withdrawal(WithdrawalId),
    Refund(RefundId),
    File(FileId),
    /// Per command, in order, for bulk requests.
    Bulk(Vec<(Option<uuid::Uuid>, Result<Outcome, super::DomainError>)>),
    Nothing,
}
