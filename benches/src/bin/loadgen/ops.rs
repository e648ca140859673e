//! The operations loadgen sends, each as one HTTP request.

use crate::http::{request_id, Answer, Api, Auth, Creds};
use serde_json::{json, Value};

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

pub const CURRENCY: &str = "EUR";

/// A connected seller and buyer; the buyer is funded.
pub struct Pair {
    pub seller: Creds,
    pub buyer: Creds,
    pub connection: String,
}

/// A realistic invoice (three line items and a memo, like `replay-tool
/// generate`'s), submitted in the same call: the body a client would send.
fn invoice_body(pair: &Pair, n: u64) -> Value {
    json!({
        "requestId": request_id(),
        "connectionId": pair.connection,
        "currency": CURRENCY,
        "dueDate": "2030-06-30",
        "memo": "Services rendered under MSA 2024-117",
        "submit": true,
        "lineItems": [
            { "description": "Consulting services, senior engineer (hours)",
              "quantity": (1 + n % 40).to_string(), "unitPrice": "150.00", "taxRate": "19" },
            { "description": "Travel expenses, on-site visit",
              "quantity": "1", "unitPrice": "420.35", "taxRate": "0" },
            { "description": "Software licence, monthly seat",
              "quantity": (1 + n % 5).to_string(), "unitPrice": "99.99", "taxRate": "19" },
        ],
    })
}

/// `POST /invoices` with `"submit": true`, as the seller.
pub async fn create_submit(api: &Api, pair: &Pair, n: u64) -> anyhow::Result<Answer> {
    api.post("/invoices", Auth::Key(&pair.seller), &invoice_body(pair, n))
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
