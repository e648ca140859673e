//! The operations loadgen sends, each as one HTTP request.

use expereon_benches::client::{invoice_body, request_id, Answer, Api, Auth, Creds, Pair};
use serde_json::json;

/// Every operation, in report order. Its index is its slot in the statistics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    CreateSubmit,
    Approve,
    Settle,
    GetInvoice,
    ListInvoices,
    ListBalances,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::CreateSubmit,
        Op::Approve,
        Op::Settle,
        Op::GetInvoice,
        Op::ListInvoices,
        Op::ListBalances,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Short, stable: a key of the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateSubmit => "create+submit",
            Op::Approve => "approve",
            Op::Settle => "settle",
            Op::GetInvoice => "get-invoice",
            Op::ListInvoices => "list-invoices",
            Op::ListBalances => "list-balances",
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Op::CreateSubmit => "POST /invoices",
            Op::Approve => "POST /invoices/{id}/approve",
            Op::Settle => "POST /payments/settle",
            Op::GetInvoice => "GET /invoices/{id}",
            Op::ListInvoices => "GET /invoices?limit=50",
            Op::ListBalances => "GET /treasury/me/balances",
        }
    }
}

/// One due date for every invoice: loadgen measures throughput, not sorting.
const DUE_DATE: &str = "2030-06-30";

/// `POST /invoices` with `"submit": true`, as the seller.
pub async fn create_submit(api: &Api, pair: &Pair, n: u64) -> anyhow::Result<Answer> {
    api.post(
        "/invoices",
        Auth::Key(&pair.seller),
        &invoice_body(pair, n, DUE_DATE),
    )
    .await
}

/// `POST /invoices/{id}/approve`, as the buyer.
pub async fn approve(api: &Api, pair: &Pair, invoice: &str) -> anyhow::Result<Answer> {
    api.post(
        &format!("/invoices/{invoice}/approve"),
        Auth::Key(&pair.buyer),
        &json!({ "requestId": request_id() }),
    )
    .await
}

/// `POST /payments/settle`, as the buyer.
pub async fn settle(api: &Api, pair: &Pair, invoice: &str) -> anyhow::Result<Answer> {
    api.post(
        "/payments/settle",
        Auth::Key(&pair.buyer),
        &json!({ "requestId": request_id(), "invoiceId": invoice }),
    )
    .await
}

pub async fn get_invoice(api: &Api, creds: &Creds, invoice: &str) -> anyhow::Result<Answer> {
    api.get(&format!("/invoices/{invoice}"), Auth::Key(creds))
        .await
}

pub async fn list_invoices(api: &Api, creds: &Creds) -> anyhow::Result<Answer> {
    api.get("/invoices?limit=50", Auth::Key(creds)).await
}

pub async fn list_balances(api: &Api, creds: &Creds) -> anyhow::Result<Answer> {
    api.get("/treasury/me/balances", Auth::Key(creds)).await
}

/// The `id` of a created invoice.
pub fn invoice_id(answer: &Answer) -> Option<String> {
    answer.json().ok()?.get("id")?.as_str().map(str::to_string)
}
