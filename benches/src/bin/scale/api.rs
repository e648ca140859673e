//! scale's side of the public API: its pair, its invoices and the write
//! commands of a lifecycle; the client itself is `expereon_benches::client`.

use anyhow::bail;
use expereon_benches::client::{
    invoice_body, request_id, Answer, Api, Auth, Checks, Pair, PairSpec, CURRENCY, DEPOSIT,
};
use serde_json::json;

/// Only 200 is success: every call scale makes answers 200 when it works.
pub const CHECKS: Checks = Checks {
    any_2xx: false,
    quote_chars: 300,
    rate_limit_hint: None,
};

/// The benchmark's own seller and buyer.
pub const PAIR: PairSpec<'static> = PairSpec {
    seller_name: "Scale bench seller",
    buyer_name: "Scale bench buyer",
    currency: CURRENCY,
    deposit: DEPOSIT,
    reference: "scale bench",
};

/// Due dates spread over three years, so `sort=dueDate` has something to
/// sort.
fn due_date(n: u64) -> String {
    chrono::NaiveDate::from_ymd_opt(2030, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(n % 1096)))
        .map(|d| d.to_string())
        .unwrap_or_else(|| "2031-06-30".into())
}

/// The three write commands of a lifecycle, as the API takes them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Write {
    CreateSubmit,
    Approve,
    Settle,
}

impl Write {
    pub fn label(self) -> &'static str {
        match self {
            Write::CreateSubmit => "`POST /invoices` (create + submit)",
            Write::Approve => "`POST /invoices/{id}/approve`",
            Write::Settle => "`POST /payments/settle`",
        }
    }

    /// The invoice status the command leaves behind.
    pub fn status(self) -> &'static str {
        match self {
            Write::CreateSubmit => "SUBMITTED",
            Write::Approve => "APPROVED",
            Write::Settle => "SETTLED",
        }
    }

    pub async fn send(
        self,
        api: &Api,
        pair: &Pair,
        invoice: Option<&str>,
        n: u64,
    ) -> anyhow::Result<Answer> {
        match (self, invoice) {
            (Write::CreateSubmit, _) => {
                api.post(
                    "/invoices",
                    Auth::Key(&pair.seller),
                    &invoice_body(pair, n, &due_date(n)),
                )
                .await
            }
            (Write::Approve, Some(id)) => {
                api.post(
                    &format!("/invoices/{id}/approve"),
                    Auth::Key(&pair.buyer),
                    &json!({ "requestId": request_id() }),
                )
                .await
            }
            (Write::Settle, Some(id)) => {
                api.post(
                    "/payments/settle",
                    Auth::Key(&pair.buyer),
                    &json!({ "requestId": request_id(), "invoiceId": id }),
                )
                .await
            }
            (_, None) => bail!("{self:?} needs an invoice id"),
        }
    }
}

/// Rank of an invoice status along the lifecycle, to check after a crash
/// that no acknowledged step was lost (a later state is fine: a command in
/// flight at the kill may have committed without its answer arriving).
pub fn status_rank(status: &str) -> u8 {
    match status {
        "SUBMITTED" => 1,
        "APPROVED" => 2,
        "SETTLED" => 3,
        _ => 0,
    }
}
