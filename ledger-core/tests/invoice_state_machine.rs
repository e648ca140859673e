//! The invoice state machine, driven through the pure `Ledger` (no log, no
//! engine). Every expectation here is written out by hand from API.md and the
//! overview's state diagram, never computed from `InvoiceStatus::can_become`.
//!
//! Who may act (API.md, Conventions): the wrong party for an action → 403
//! FORBIDDEN; the right party in the wrong state → 400 INVALID_STATE_TRANSITION
//! with the current state; an invoice the caller may not see (another
//! organization's, or one never submitted, to the buyer) → 404.

mod domain_support;

use domain_support::*;
use ledger_core::domain::command::{InvoiceAction, InvoicePatch, LineItemPatch};
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::{Command, Outcome};
use ledger_core::events::{Actor, Event, Hold, Party, StreamKind};
use ledger_core::ids::InvoiceId;
use ledger_core::money::Quantity;

use InvoiceStatus as St;

// ---------------------------------------------------------------------------
// Fixtures: an invoice brought into each state by real commands.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fx {
    Draft,
    Submitted,
    InfoRequested,
    Approved,
    /// Approved with an adjustment to 80.00 of 110.00.
    Adjusted,
    Disputed,
    /// The seller asked to cancel an APPROVED invoice.
    CancelRequestedBySeller,
    /// The buyer asked to cancel an APPROVED_WITH_ADJUSTMENT invoice.
    CancelRequestedByBuyer,
    /// Cancelled while a draft: the buyer never saw it.
    CancelledDraft,
    /// Cancelled by the seller after submission.
    CancelledSubmitted,
    Settled,
    ArchivedSettled,
    /// Archived after being cancelled as a draft: still invisible to the buyer.
    ArchivedCancelledDraft,
    ArchivedCancelledSubmitted,
}

impl Fx {
    const ALL: [Fx; 14] = [
        Fx::Draft,
        Fx::Submitted,
        Fx::InfoRequested,
        Fx::Approved,
        Fx::Adjusted,
        Fx::Disputed,
        Fx::CancelRequestedBySeller,
        Fx::CancelRequestedByBuyer,
        Fx::CancelledDraft,
        Fx::CancelledSubmitted,
        Fx::Settled,
        Fx::ArchivedSettled,
        Fx::ArchivedCancelledDraft,
        Fx::ArchivedCancelledSubmitted,
    ];

    fn status(self) -> InvoiceStatus {
        match self {
            Fx::Draft => St::Draft,
            Fx::Submitted => St::Submitted,
            Fx::InfoRequested => St::InfoRequested,
            Fx::Approved => St::Approved,
            Fx::Adjusted => St::ApprovedWithAdjustment,
            Fx::Disputed => St::Disputed,
            Fx::CancelRequestedBySeller | Fx::CancelRequestedByBuyer => St::CancellationRequested,
            Fx::CancelledDraft | Fx::CancelledSubmitted => St::Cancelled,
            Fx::Settled => St::Settled,
            Fx::ArchivedSettled | Fx::ArchivedCancelledDraft | Fx::ArchivedCancelledSubmitted => {
                St::Archived
            }
        }
    }
}

fn cancel() -> InvoiceAction {
    InvoiceAction::Cancel {
        reason: Some("no longer needed".into()),
    }
}

fn build(fx: Fx) -> (Scene, InvoiceId) {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = match fx {
        Fx::Draft => s.draft(),
        Fx::Submitted => s.submitted(),
        Fx::InfoRequested => {
            let id = s.submitted();
            s.w.act_ok(
                &buyer,
                id,
                InvoiceAction::RequestInfo {
                    question: "which PO?".into(),
                },
            );
            id
        }
        Fx::Approved => s.approved(),
        Fx::Adjusted => s.approved_adjusted("80.00"),
        Fx::Disputed => {
            let id = s.submitted();
            s.w.act_ok(
                &buyer,
                id,
                InvoiceAction::Dispute {
                    reason: "wrong rate".into(),
                },
            );
            id
        }
        Fx::CancelRequestedBySeller => {
            let id = s.approved();
            s.w.act_ok(&seller, id, request_cancellation());
            id
        }
        Fx::CancelRequestedByBuyer => {
            let id = s.approved_adjusted("80.00");
            s.w.act_ok(&buyer, id, request_cancellation());
            id
        }
        Fx::CancelledDraft => {
            let id = s.draft();
            s.w.act_ok(&seller, id, cancel());
            id
        }
        Fx::CancelledSubmitted => {
            let id = s.submitted();
            s.w.act_ok(&seller, id, cancel());
            id
        }
        Fx::Settled => s.settled().0,
        Fx::ArchivedSettled => {
            let id = s.settled().0;
            s.w.act_ok(&seller, id, InvoiceAction::Archive);
            id
        }
        Fx::ArchivedCancelledDraft => {
            let id = s.draft();
            s.w.act_ok(&seller, id, cancel());
            s.w.act_ok(&seller, id, InvoiceAction::Archive);
            id
        }
        Fx::ArchivedCancelledSubmitted => {
            let id = s.submitted();
            s.w.act_ok(&seller, id, cancel());
            s.w.act_ok(&buyer, id, InvoiceAction::Archive);
            id
        }
    };
    assert_eq!(s.w.status(id), fx.status(), "fixture {fx:?}");
    (s, id)
}

// ---------------------------------------------------------------------------
// Actions: every `InvoiceAction`, plus the other invoice commands.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Submit,
    RespondInfo,
    Approve,
    ApproveAdjusted,
    Dispute,
    RequestInfo,
    Cancel,
    RequestCancellation,
    AcceptCancellation,
    RejectCancellation,
    Archive,
    Restore,
    Settle,
    Update,
    AddLine,
    UpdateLine,
    RemoveLine,
}

impl Act {
    const ALL: [Act; 17] = [
        Act::Submit,
        Act::RespondInfo,
        Act::Approve,
        Act::ApproveAdjusted,
        Act::Dispute,
        Act::RequestInfo,
        Act::Cancel,
        Act::RequestCancellation,
        Act::AcceptCancellation,
        Act::RejectCancellation,
        Act::Archive,
        Act::Restore,
        Act::Settle,
        Act::Update,
        Act::AddLine,
        Act::UpdateLine,
        Act::RemoveLine,
    ];

    fn command(self, s: &Scene, id: InvoiceId) -> Command {
        let first_line = s.w.invoice(id).line_items[0].id;
        let action = |action| Command::Invoice { id, action };
        match self {
            Act::Submit => action(InvoiceAction::Submit),
            Act::RespondInfo => action(InvoiceAction::RespondInfo {
                message: "PO 4711".into(),
            }),
            Act::Approve => action(approve()),
            Act::ApproveAdjusted => action(approve_adjusted("100.00", "one unit missing")),
            Act::Dispute => action(InvoiceAction::Dispute {
                reason: "wrong rate".into(),
            }),
            Act::RequestInfo => action(InvoiceAction::RequestInfo {
                question: "which PO?".into(),
            }),
            Act::Cancel => action(cancel()),
            Act::RequestCancellation => action(request_cancellation()),
            Act::AcceptCancellation => action(InvoiceAction::AcceptCancellation),
            Act::RejectCancellation => action(InvoiceAction::RejectCancellation),
            Act::Archive => action(InvoiceAction::Archive),
            Act::Restore => action(InvoiceAction::Restore),
            Act::Settle => Command::SettleInvoice { id },
            Act::Update => Command::UpdateInvoice {
                id,
                patch: InvoicePatch {
                    memo: Some(Some("corrected memo".into())),
                    ..InvoicePatch::default()
                },
            },
            Act::AddLine => Command::AddLineItem {
                id,
                item: line("travel", "1", "5.00", "0"),
            },
            Act::UpdateLine => Command::UpdateLineItem {
                id,
                line_item_id: first_line,
                patch: LineItemPatch {
                    quantity: Some(Quantity::parse("2").unwrap()),
                    ..LineItemPatch::default()
                },
            },
            Act::RemoveLine => Command::RemoveLineItem {
                id,
                line_item_id: first_line,
            },
        }
    }
}

/// Compile-time guard: a new `InvoiceAction` variant must be added to `Act`.
fn act_for(action: &InvoiceAction) -> Vec<Act> {
    match action {
        InvoiceAction::Submit => vec![Act::Submit],
        InvoiceAction::RespondInfo { .. } => vec![Act::RespondInfo],
        InvoiceAction::Approve { .. } => vec![Act::Approve, Act::ApproveAdjusted],
        InvoiceAction::Dispute { .. } => vec![Act::Dispute],
        InvoiceAction::RequestInfo { .. } => vec![Act::RequestInfo],
        InvoiceAction::Cancel { .. } => vec![Act::Cancel],
        InvoiceAction::RequestCancellation { .. } => vec![Act::RequestCancellation],
        InvoiceAction::AcceptCancellation => vec![Act::AcceptCancellation],
        InvoiceAction::RejectCancellation => vec![Act::RejectCancellation],
        InvoiceAction::Archive => vec![Act::Archive],
        InvoiceAction::Restore => vec![Act::Restore],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Seller,
    Buyer,
    Stranger,
}

/// The expected answer to one (state, action, actor) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exp {
    /// Accepted; the invoice is then in this state.
    To(InvoiceStatus),
    /// 403: the wrong party for this action.
    Forbidden,
    /// 400 INVALID_STATE_TRANSITION, `current` = the fixture's state.
    WrongState,
    /// 404: the caller may not see the invoice.
    NotFound,
}

use Exp::{Forbidden, NotFound, To, WrongState};

/// One table per fixture: `(action, seller, buyer)`. A stranger organization
/// always gets 404, so it is not repeated in every row.
fn check(fx: Fx, table: &[(Act, Exp, Exp)]) {
    for act in Act::ALL {
        let rows = table.iter().filter(|r| r.0 == act).count();
        assert_eq!(rows, 1, "table for {fx:?} must list {act:?} exactly once");
    }
    for &(act, seller, buyer) in table {
        for (who, exp) in [
            (Who::Seller, seller),
            (Who::Buyer, buyer),
            (Who::Stranger, NotFound),
        ] {
            check_cell(fx, act, who, exp);
        }
    }
}

fn check_cell(fx: Fx, act: Act, who: Who, exp: Exp) {
    let (mut s, id) = build(fx);
    let org = match who {
        Who::Seller => s.seller,
        Who::Buyer => s.buyer,
        Who::Stranger => s.stranger,
    };
    let label = format!("{fx:?} × {act:?} by {who:?}");
    let command = act.command(&s, id);
    let before = s.w.invoice(id).clone();
    match exp {
        To(next) => {
            let result = s.w.run(&org.actor(), command);
            assert!(
                result.is_ok(),
                "{label}: expected → {}, got {result:?}",
                next.as_str()
            );
            let after = s.w.invoice(id);
            assert_eq!(after.status, next, "{label}");
            assert!(
                !s.w.last_events.is_empty(),
                "{label}: accepted without events"
            );
            if before.status != after.status {
                assert!(
                    before.status.can_become(after.status),
                    "{label}: {} → {} is not an edge of can_become",
                    before.status.as_str(),
                    after.status.as_str()
                );
            }
            // `version` increases by one with every event of the invoice.
            let own_events = s
                .w
                .last_events
                .iter()
                .filter(|e| e.stream().kind == StreamKind::Invoice && e.stream().id == id.as_uuid())
                .count() as u64;
            assert!(own_events >= 1, "{label}: no event on the invoice itself");
            assert_eq!(
                after.version,
                before.version + own_events,
                "{label}: version"
            );
            assert_eq!(
                after.version,
                s.w.invoice_stream_version(id),
                "{label}: stream version"
            );
        }
        Forbidden => {
            s.w.refused(&org.actor(), command, Refusal::Forbidden);
        }
        WrongState => {
            s.w.refused(
                &org.actor(),
                command,
                Refusal::Invalid("invoice", fx.status().as_str()),
            );
        }
        NotFound => {
            s.w.refused(&org.actor(), command, Refusal::NotFound);
        }
    }
    s.w.assert_conserved();
}

#[test]
fn fixtures_reach_every_status() {
    for status in InvoiceStatus::ALL {
        assert!(
            Fx::ALL.iter().any(|fx| fx.status() == status),
            "no fixture in {}",
            status.as_str()
        );
    }
    for fx in Fx::ALL {
        build(fx);
    }
}

#[test]
fn every_invoice_action_is_in_the_tables() {
    let samples = [
        InvoiceAction::Submit,
        InvoiceAction::RespondInfo {
            message: "m".into(),
        },
        approve(),
        InvoiceAction::Dispute { reason: "r".into() },
        InvoiceAction::RequestInfo {
            question: "q".into(),
        },
        cancel(),
        request_cancellation(),
        InvoiceAction::AcceptCancellation,
        InvoiceAction::RejectCancellation,
        InvoiceAction::Archive,
        InvoiceAction::Restore,
    ];
    let mut names: Vec<&str> = samples.iter().map(|a| a.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        samples.len(),
        "one sample per InvoiceAction variant"
    );
    for a in &samples {
        for act in act_for(a) {
            assert!(Act::ALL.contains(&act));
        }
    }
}

// The tables. Columns: action, seller, buyer.

#[test]
fn draft() {
    check(
        Fx::Draft,
        &[
            (Act::Submit, To(St::Submitted), NotFound),
            (Act::RespondInfo, WrongState, NotFound),
            (Act::Approve, Forbidden, NotFound),
            (Act::ApproveAdjusted, Forbidden, NotFound),
            (Act::Dispute, Forbidden, NotFound),
            (Act::RequestInfo, Forbidden, NotFound),
            (Act::Cancel, To(St::Cancelled), NotFound),
            (Act::RequestCancellation, WrongState, NotFound),
            (Act::AcceptCancellation, WrongState, NotFound),
            (Act::RejectCancellation, WrongState, NotFound),
            (Act::Archive, WrongState, NotFound),
            (Act::Restore, WrongState, NotFound),
            (Act::Settle, Forbidden, NotFound),
            (Act::Update, To(St::Draft), NotFound),
            (Act::AddLine, To(St::Draft), NotFound),
            (Act::UpdateLine, To(St::Draft), NotFound),
            (Act::RemoveLine, To(St::Draft), NotFound),
        ],
    );
}

#[test]
fn submitted() {
    check(
        Fx::Submitted,
        &[
            (Act::Submit, WrongState, Forbidden),
            (Act::RespondInfo, WrongState, Forbidden),
            (Act::Approve, Forbidden, To(St::Approved)),
            (
                Act::ApproveAdjusted,
                Forbidden,
                To(St::ApprovedWithAdjustment),
            ),
            (Act::Dispute, Forbidden, To(St::Disputed)),
            (Act::RequestInfo, Forbidden, To(St::InfoRequested)),
            // The buyer may cancel, but only a DISPUTED invoice.
            (Act::Cancel, To(St::Cancelled), WrongState),
            (Act::RequestCancellation, WrongState, WrongState),
            (Act::AcceptCancellation, WrongState, WrongState),
            (Act::RejectCancellation, WrongState, WrongState),
            (Act::Archive, WrongState, WrongState),
            (Act::Restore, WrongState, WrongState),
            (Act::Settle, Forbidden, WrongState),
            (Act::Update, WrongState, Forbidden),
            (Act::AddLine, WrongState, Forbidden),
            (Act::UpdateLine, WrongState, Forbidden),
            (Act::RemoveLine, WrongState, Forbidden),
        ],
    );
}

#[test]
fn info_requested() {
    check(
        Fx::InfoRequested,
        &[
            (Act::Submit, WrongState, Forbidden),
            (Act::RespondInfo, To(St::Submitted), Forbidden),
            (Act::Approve, Forbidden, WrongState),
            (Act::ApproveAdjusted, Forbidden, WrongState),
            (Act::Dispute, Forbidden, WrongState),
            (Act::RequestInfo, Forbidden, WrongState),
            // Not an edge of the diagram: INFO_REQUESTED → CANCELLED.
            (Act::Cancel, WrongState, WrongState),
            (Act::RequestCancellation, WrongState, WrongState),
            (Act::AcceptCancellation, WrongState, WrongState),
            (Act::RejectCancellation, WrongState, WrongState),
            (Act::Archive, WrongState, WrongState),
            (Act::Restore, WrongState, WrongState),
            (Act::Settle, Forbidden, WrongState),
            // PATCH is allowed in DRAFT, DISPUTED or INFO_REQUESTED …
            (Act::Update, To(St::InfoRequested), Forbidden),
            // … the line-item endpoints only in DRAFT.
            (Act::AddLine, WrongState, Forbidden),
            (Act::UpdateLine, WrongState, Forbidden),
            (Act::RemoveLine, WrongState, Forbidden),
        ],
    );
}

/// APPROVED and APPROVED_WITH_ADJUSTMENT answer alike.
fn approved_table() -> Vec<(Act, Exp, Exp)> {
    vec![
        (Act::Submit, WrongState, Forbidden),
        (Act::RespondInfo, WrongState, Forbidden),
        (Act::Approve, Forbidden, WrongState),
        (Act::ApproveAdjusted, Forbidden, WrongState),
        (Act::Dispute, Forbidden, WrongState),
        (Act::RequestInfo, Forbidden, WrongState),
        (Act::Cancel, WrongState, WrongState),
        (
            Act::RequestCancellation,
            To(St::CancellationRequested),
            To(St::CancellationRequested),
        ),
        (Act::AcceptCancellation, WrongState, WrongState),
        (Act::RejectCancellation, WrongState, WrongState),
        (Act::Archive, WrongState, WrongState),
        (Act::Restore, WrongState, WrongState),
        (Act::Settle, Forbidden, To(St::Settled)),
        (Act::Update, WrongState, Forbidden),
        (Act::AddLine, WrongState, Forbidden),
        (Act::UpdateLine, WrongState, Forbidden),
        (Act::RemoveLine, WrongState, Forbidden),
    ]
}

#[test]
fn approved() {
    check(Fx::Approved, &approved_table());
}

#[test]
fn approved_with_adjustment() {
    check(Fx::Adjusted, &approved_table());
}

#[test]
fn disputed() {
    check(
        Fx::Disputed,
        &[
            (Act::Submit, To(St::Submitted), Forbidden),
            (Act::RespondInfo, WrongState, Forbidden),
            (Act::Approve, Forbidden, WrongState),
            (Act::ApproveAdjusted, Forbidden, WrongState),
            (Act::Dispute, Forbidden, WrongState),
            (Act::RequestInfo, Forbidden, WrongState),
            (Act::Cancel, To(St::Cancelled), To(St::Cancelled)),
            (Act::RequestCancellation, WrongState, WrongState),
            (Act::AcceptCancellation, WrongState, WrongState),
            (Act::RejectCancellation, WrongState, WrongState),
            (Act::Archive, WrongState, WrongState),
            (Act::Restore, WrongState, WrongState),
            (Act::Settle, Forbidden, WrongState),
            (Act::Update, To(St::Disputed), Forbidden),
            (Act::AddLine, WrongState, Forbidden),
            (Act::UpdateLine, WrongState, Forbidden),
            (Act::RemoveLine, WrongState, Forbidden),
        ],
    );
}

/// CANCELLATION_REQUESTED; `accept`/`reject` are the (seller, buyer) answers.
fn cancellation_requested_table(accept: (Exp, Exp), reject: (Exp, Exp)) -> Vec<(Act, Exp, Exp)> {
    vec![
        (Act::Submit, WrongState, Forbidden),
        (Act::RespondInfo, WrongState, Forbidden),
        (Act::Approve, Forbidden, WrongState),
        (Act::ApproveAdjusted, Forbidden, WrongState),
        (Act::Dispute, Forbidden, WrongState),
        (Act::RequestInfo, Forbidden, WrongState),
        (Act::Cancel, WrongState, WrongState),
        (Act::RequestCancellation, WrongState, WrongState),
        (Act::AcceptCancellation, accept.0, accept.1),
        (Act::RejectCancellation, reject.0, reject.1),
        (Act::Archive, WrongState, WrongState),
        (Act::Restore, WrongState, WrongState),
        (Act::Settle, Forbidden, WrongState),
        (Act::Update, WrongState, Forbidden),
        (Act::AddLine, WrongState, Forbidden),
        (Act::UpdateLine, WrongState, Forbidden),
        (Act::RemoveLine, WrongState, Forbidden),
    ]
}

#[test]
fn cancellation_requested_by_seller() {
    // Only the counterparty of the requester (here: the buyer) may answer.
    check(
        Fx::CancelRequestedBySeller,
        &cancellation_requested_table(
            (Forbidden, To(St::Cancelled)),
            (Forbidden, To(St::Approved)),
        ),
    );
}

#[test]
fn cancellation_requested_by_buyer() {
    check(
        Fx::CancelRequestedByBuyer,
        &cancellation_requested_table(
            (To(St::Cancelled), Forbidden),
            (To(St::ApprovedWithAdjustment), Forbidden),
        ),
    );
}

/// SETTLED and CANCELLED seen by a party that may see the invoice.
fn closed_table() -> Vec<(Act, Exp, Exp)> {
    vec![
        (Act::Submit, WrongState, Forbidden),
        (Act::RespondInfo, WrongState, Forbidden),
        (Act::Approve, Forbidden, WrongState),
        (Act::ApproveAdjusted, Forbidden, WrongState),
        (Act::Dispute, Forbidden, WrongState),
        (Act::RequestInfo, Forbidden, WrongState),
        (Act::Cancel, WrongState, WrongState),
        (Act::RequestCancellation, WrongState, WrongState),
        (Act::AcceptCancellation, WrongState, WrongState),
        (Act::RejectCancellation, WrongState, WrongState),
        (Act::Archive, To(St::Archived), To(St::Archived)),
        (Act::Restore, WrongState, WrongState),
        (Act::Settle, Forbidden, WrongState),
        (Act::Update, WrongState, Forbidden),
        (Act::AddLine, WrongState, Forbidden),
        (Act::UpdateLine, WrongState, Forbidden),
        (Act::RemoveLine, WrongState, Forbidden),
    ]
}

/// Every row of `table` with the buyer column replaced by 404.
fn hidden_from_buyer(table: Vec<(Act, Exp, Exp)>) -> Vec<(Act, Exp, Exp)> {
    table
        .into_iter()
        .map(|(a, s, _)| (a, s, NotFound))
        .collect()
}

#[test]
fn cancelled_as_draft() {
    check(Fx::CancelledDraft, &hidden_from_buyer(closed_table()));
}

#[test]
fn cancelled_after_submission() {
    check(Fx::CancelledSubmitted, &closed_table());
}

#[test]
fn settled() {
    check(Fx::Settled, &closed_table());
}

fn archived_table(restores_to: InvoiceStatus) -> Vec<(Act, Exp, Exp)> {
    vec![
        (Act::Submit, WrongState, Forbidden),
        (Act::RespondInfo, WrongState, Forbidden),
        (Act::Approve, Forbidden, WrongState),
        (Act::ApproveAdjusted, Forbidden, WrongState),
        (Act::Dispute, Forbidden, WrongState),
        (Act::RequestInfo, Forbidden, WrongState),
        (Act::Cancel, WrongState, WrongState),
        (Act::RequestCancellation, WrongState, WrongState),
        (Act::AcceptCancellation, WrongState, WrongState),
        (Act::RejectCancellation, WrongState, WrongState),
        (Act::Archive, WrongState, WrongState),
        (Act::Restore, To(restores_to), To(restores_to)),
        (Act::Settle, Forbidden, WrongState),
        (Act::Update, WrongState, Forbidden),
        (Act::AddLine, WrongState, Forbidden),
        (Act::UpdateLine, WrongState, Forbidden),
        (Act::RemoveLine, WrongState, Forbidden),
    ]
}

#[test]
fn archived_from_settled() {
    check(Fx::ArchivedSettled, &archived_table(St::Settled));
}

#[test]
fn archived_from_cancelled_draft() {
    check(
        Fx::ArchivedCancelledDraft,
        &hidden_from_buyer(archived_table(St::Cancelled)),
    );
}

#[test]
fn archived_from_cancelled_after_submission() {
    check(
        Fx::ArchivedCancelledSubmitted,
        &archived_table(St::Cancelled),
    );
}

// ---------------------------------------------------------------------------
// Approval reserves exactly the approved amount.
// ---------------------------------------------------------------------------

/// `(buyer deposit, buyer collateral, adjustedAmount, reason)` → the approved
/// state with the buyer's `(reserved, available)` afterwards, or the refusal.
/// The invoice is the standard one: total 110.00 USD.
fn check_approve(
    deposit: &str,
    collateral: &str,
    adjusted: Option<&str>,
    reason: Option<&str>,
    expect: Result<(InvoiceStatus, &str, &str), Refusal>,
) {
    let mut s = Scene::new(deposit);
    let buyer = s.buyer;
    if !collateral.is_empty() {
        s.w.set_collateral(&buyer, "USD", collateral);
    }
    let id = s.submitted();
    let command = Command::Invoice {
        id,
        action: InvoiceAction::Approve {
            adjusted_amount: adjusted.map(Into::into),
            reason: reason.map(Into::into),
        },
    };
    let label = format!(
        "deposit {deposit:?} collateral {collateral:?} adjusted {adjusted:?} reason {reason:?}"
    );
    match expect {
        Ok((status, reserved, available)) => {
            s.w.ok(&buyer.actor(), command);
            let inv = s.w.invoice(id);
            assert_eq!(inv.status, status, "{label}");
            assert_eq!(
                inv.approved_amount.map(|a| fmt(a, "USD")).as_deref(),
                Some(reserved),
                "{label}"
            );
            if status == St::ApprovedWithAdjustment {
                assert_eq!(inv.adjustment_reason.as_deref(), reason, "{label}");
            } else {
                assert_eq!(inv.adjustment_reason, None, "{label}");
            }
            assert_eq!(
                s.w.event_names(),
                ["InvoiceApproved", "FundsReserved"],
                "{label}"
            );
            let b = s.w.balance(&buyer, "USD").unwrap();
            assert_eq!(
                b.holds
                    .get(&Hold::Invoice(id))
                    .map(|a| fmt(*a, "USD"))
                    .as_deref(),
                Some(reserved),
                "{label}"
            );
            assert_eq!(
                fmt(b.total, "USD"),
                deposit,
                "{label}: approval must not move money"
            );
            assert_eq!(fmt(b.reserved, "USD"), reserved, "{label}");
            assert_eq!(fmt(b.available(), "USD"), available, "{label}");
        }
        Err(refusal) => {
            s.w.refused(&buyer.actor(), command, refusal);
            assert_eq!(s.w.status(id), St::Submitted);
        }
    }
}

/// `(deposit, collateral, adjustedAmount, reason, expected)`.
type ApproveCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Result<(InvoiceStatus, &'static str, &'static str), Refusal>,
);

#[test]
fn approve_reserves_the_approved_amount() {
    use Refusal::{Insufficient, Validation};
    let r = Some("two units damaged");
    #[rustfmt::skip]
    let cases: &[ApproveCase] = &[
        // deposit    collateral adjusted         reason                 expected
        ("1000.00",  "",        None,            None,                  Ok((St::Approved, "110.00", "890.00"))),
        ("110.00",   "",        None,            None,                  Ok((St::Approved, "110.00", "0.00"))),
        ("109.99",   "",        None,            None,                  Err(Insufficient)),
        ("",         "",        None,            None,                  Err(Insufficient)),
        // a reason alone is no adjustment
        ("1000.00",  "",        None,            r,                     Ok((St::Approved, "110.00", "890.00"))),
        ("1000.00",  "",        Some("80.00"),   r,                     Ok((St::ApprovedWithAdjustment, "80.00", "920.00"))),
        ("1000.00",  "",        Some("109.99"),  r,                     Ok((St::ApprovedWithAdjustment, "109.99", "890.01"))),
        ("1000.00",  "",        Some("0.01"),    r,                     Ok((St::ApprovedWithAdjustment, "0.01", "999.99"))),
        ("80.00",    "",        Some("80.00"),   r,                     Ok((St::ApprovedWithAdjustment, "80.00", "0.00"))),
        ("79.99",    "",        Some("80.00"),   r,                     Err(Insufficient)),
        // the adjustment must be below the total, positive, valid USD, with a reason
        ("1000.00",  "",        Some("110.00"),  r,                     Err(Validation)),
        ("1000.00",  "",        Some("110.01"),  r,                     Err(Validation)),
        ("1000.00",  "",        Some("0.00"),    r,                     Err(Validation)),
        ("1000.00",  "",        Some("80.001"),  r,                     Err(Validation)),
        ("1000.00",  "",        Some("-5.00"),   r,                     Err(Validation)),
        ("1000.00",  "",        Some("eighty"),  r,                     Err(Validation)),
        ("1000.00",  "",        Some("80.00"),   None,                  Err(Validation)),
        ("1000.00",  "",        Some("80.00"),   Some("   "),           Err(Validation)),
        // collateral is not available for reservations
        ("200.00",   "90.00",   None,            None,                  Ok((St::Approved, "110.00", "0.00"))),
        ("200.00",   "90.01",   None,            None,                  Err(Insufficient)),
        ("200.00",   "120.00",  Some("80.00"),   r,                     Ok((St::ApprovedWithAdjustment, "80.00", "0.00"))),
        ("200.00",   "120.01",  Some("80.00"),   r,                     Err(Insufficient)),
    ];
    for (deposit, collateral, adjusted, reason, expect) in cases {
        check_approve(deposit, collateral, *adjusted, *reason, expect.clone());
    }
}

#[test]
fn insufficient_balance_names_what_was_needed_and_available() {
    let mut s = Scene::new("200.00");
    let buyer = s.buyer;
    let first = s.approved();
    let second = s.submitted();
    let err = s.w.refused(
        &buyer.actor(),
        Command::Invoice {
            id: second,
            action: approve(),
        },
        Refusal::Insufficient,
    );
    assert_eq!(
        err,
        ledger_core::domain::DomainError::InsufficientBalance {
            currency: cur("USD"),
            needed: "110.00".into(),
            available: "90.00".into(),
        }
    );
    // An adjusted approval that fits is still possible.
    s.w.act_ok(
        &buyer,
        second,
        approve_adjusted("90.00", "partial delivery"),
    );
    let b = s.w.balance(&buyer, "USD").unwrap();
    assert_eq!(fmt(b.reserved, "USD"), "200.00");
    assert_eq!(b.holds.len(), 2);
    assert_eq!(fmt(b.holds[&Hold::Invoice(first)], "USD"), "110.00");
    assert_eq!(fmt(b.available(), "USD"), "0.00");
}

// ---------------------------------------------------------------------------
// Cancellation after approval.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Answer {
    Accept,
    Reject,
}

/// Approved (with `adjusted` amount, or plainly), cancellation requested by
/// `requester`, answered by the counterparty → the invoice's state and the
/// buyer's reservation afterwards.
fn check_cancellation(
    adjusted: Option<&str>,
    requester: Party,
    answer: Answer,
    status: InvoiceStatus,
    reserved: &str,
) {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = match adjusted {
        Some(a) => s.approved_adjusted(a),
        None => s.approved(),
    };
    let approved_state = s.w.status(id);
    let approved_amount = s.w.invoice(id).approved_amount;
    let (asker, answerer) = match requester {
        Party::Seller => (seller, buyer),
        Party::Buyer => (buyer, seller),
    };
    let label = format!("{adjusted:?} requested by {requester:?}, {answer:?}");
    s.w.act_ok(&asker, id, request_cancellation());
    assert_eq!(s.w.status(id), St::CancellationRequested);
    // The reservation stays while the request is open.
    assert_eq!(
        s.w.balance(&buyer, "USD")
            .unwrap()
            .holds
            .get(&Hold::Invoice(id))
            .copied(),
        approved_amount,
        "{label}"
    );
    let action = match answer {
        Answer::Accept => InvoiceAction::AcceptCancellation,
        Answer::Reject => InvoiceAction::RejectCancellation,
    };
    s.w.act_ok(&answerer, id, action);
    assert_eq!(s.w.status(id), status, "{label}");
    let b = s.w.balance(&buyer, "USD").unwrap();
    assert_eq!(fmt(b.reserved, "USD"), reserved, "{label}");
    assert_eq!(fmt(b.total, "USD"), "1000.00", "{label}");
    match answer {
        Answer::Accept => {
            assert!(
                s.w.last_events.iter().any(|e| matches!(
                    &e.event,
                    Event::ReservationReleased { hold: Hold::Invoice(i), amount, .. }
                        if *i == id && Some(*amount) == approved_amount
                )),
                "{label}: no release of the reservation"
            );
            assert!(!b.holds.contains_key(&Hold::Invoice(id)));
            // A cancelled invoice is never settled.
            s.w.refused(
                &buyer.actor(),
                Command::SettleInvoice { id },
                Refusal::Invalid("invoice", "CANCELLED"),
            );
        }
        Answer::Reject => {
            assert_eq!(
                status, approved_state,
                "{label}: returns to where it came from"
            );
            assert_eq!(s.w.invoice(id).approved_amount, approved_amount);
            // Back in the approved state: settles for the approved amount.
            let payment = s.w.settle(&buyer, id);
            assert_eq!(
                Some(s.w.payment(payment).amount),
                approved_amount,
                "{label}"
            );
            assert_eq!(s.w.status(id), St::Settled);
        }
    }
}

#[test]
fn accepting_a_cancellation_releases_the_reservation_rejecting_returns_to_approved() {
    use Answer::{Accept, Reject};
    #[rustfmt::skip]
    let cases: &[(Option<&str>, Party, Answer, InvoiceStatus, &str)] = &[
        (None,          Party::Seller, Accept, St::Cancelled,              "0.00"),
        (None,          Party::Buyer,  Accept, St::Cancelled,              "0.00"),
        (Some("80.00"), Party::Seller, Accept, St::Cancelled,              "0.00"),
        (Some("80.00"), Party::Buyer,  Accept, St::Cancelled,              "0.00"),
        (None,          Party::Seller, Reject, St::Approved,               "110.00"),
        (None,          Party::Buyer,  Reject, St::Approved,               "110.00"),
        (Some("80.00"), Party::Seller, Reject, St::ApprovedWithAdjustment, "80.00"),
        (Some("80.00"), Party::Buyer,  Reject, St::ApprovedWithAdjustment, "80.00"),
    ];
    for (adjusted, requester, answer, status, reserved) in cases {
        check_cancellation(*adjusted, *requester, *answer, *status, reserved);
    }
}

#[test]
fn a_rejected_cancellation_can_be_requested_again() {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = s.approved_adjusted("50.00");
    s.w.act_ok(&buyer, id, request_cancellation());
    s.w.act_ok(&seller, id, InvoiceAction::RejectCancellation);
    // This time the seller asks; now the buyer answers.
    s.w.act_ok(&seller, id, request_cancellation());
    s.w.refused(
        &seller.actor(),
        Command::Invoice {
            id,
            action: InvoiceAction::AcceptCancellation,
        },
        Refusal::Forbidden,
    );
    s.w.act_ok(&buyer, id, InvoiceAction::RejectCancellation);
    assert_eq!(s.w.status(id), St::ApprovedWithAdjustment);
    assert_eq!(
        fmt(s.w.balance(&buyer, "USD").unwrap().reserved, "USD"),
        "50.00"
    );
}

// ---------------------------------------------------------------------------
// Archive and restore.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Closed {
    Settled,
    CancelledDraft,
    CancelledSubmitted,
    CancelledAfterApproval,
}

/// Archived by `archiver` (None: the system's auto-archive), restored by
/// `restorer`, twice over → back in `expect` each time.
fn check_archive(closed: Closed, archiver: Option<Party>, restorer: Party, expect: InvoiceStatus) {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = match closed {
        Closed::Settled => s.settled().0,
        Closed::CancelledDraft => {
            let id = s.draft();
            s.w.act_ok(&seller, id, cancel());
            id
        }
        Closed::CancelledSubmitted => {
            let id = s.submitted();
            s.w.act_ok(&seller, id, cancel());
            id
        }
        Closed::CancelledAfterApproval => {
            let id = s.approved();
            s.w.act_ok(&buyer, id, request_cancellation());
            s.w.act_ok(&seller, id, InvoiceAction::AcceptCancellation);
            id
        }
    };
    let org_of = |p: Party| if p == Party::Seller { seller } else { buyer };
    let label = format!("{closed:?} archived by {archiver:?} restored by {restorer:?}");
    for round in 0..2 {
        match archiver {
            Some(p) => s.w.act_ok(&org_of(p), id, InvoiceAction::Archive),
            None => {
                s.w.ok(&Actor::System, Command::AutoArchive { id });
            }
        }
        assert_eq!(s.w.status(id), St::Archived, "{label} round {round}");
        s.w.act_ok(&org_of(restorer), id, InvoiceAction::Restore);
        assert_eq!(s.w.status(id), expect, "{label} round {round}");
    }
}

#[test]
fn restore_returns_to_the_state_it_was_archived_from() {
    use Party::{Buyer, Seller};
    #[rustfmt::skip]
    let cases: &[(Closed, Option<Party>, Party, InvoiceStatus)] = &[
        (Closed::Settled,                Some(Seller), Seller, St::Settled),
        (Closed::Settled,                Some(Buyer),  Seller, St::Settled),
        (Closed::Settled,                Some(Seller), Buyer,  St::Settled),
        (Closed::Settled,                None,         Buyer,  St::Settled),
        (Closed::CancelledDraft,         Some(Seller), Seller, St::Cancelled),
        (Closed::CancelledDraft,         None,         Seller, St::Cancelled),
        (Closed::CancelledSubmitted,     Some(Buyer),  Seller, St::Cancelled),
        (Closed::CancelledSubmitted,     None,         Buyer,  St::Cancelled),
        (Closed::CancelledAfterApproval, Some(Buyer),  Buyer,  St::Cancelled),
        (Closed::CancelledAfterApproval, None,         Seller, St::Cancelled),
    ];
    for (closed, archiver, restorer, expect) in cases {
        check_archive(*closed, *archiver, *restorer, *expect);
    }
}

// ---------------------------------------------------------------------------
// Scheduled work (actor: System).
// ---------------------------------------------------------------------------

/// Auto-archive: archives SETTLED and CANCELLED invoices, leaves every other
/// state untouched (no events). `payment.due`: once, for approved invoices
/// whose due date has arrived.
fn check_scheduled(fx: Fx, archives: bool, payment_due: bool) {
    let (mut s, id) = build(fx);
    let before = s.w.invoice(id).clone();
    s.w.ok(&Actor::System, Command::AutoArchive { id });
    if archives {
        assert_eq!(s.w.event_names(), ["InvoiceArchived"], "{fx:?}");
        assert_eq!(s.w.status(id), St::Archived, "{fx:?}");
    } else {
        assert!(
            s.w.last_events.is_empty(),
            "{fx:?}: auto-archive emitted {:?}",
            s.w.event_names()
        );
        assert_eq!(s.w.invoice(id), &before, "{fx:?}");
    }

    let (mut s, id) = build(fx);
    let today = s.w.today();
    let yesterday = today.pred_opt().unwrap();
    // Not yet due: nothing.
    s.w.ok(
        &Actor::System,
        Command::MarkPaymentDue {
            id,
            today: yesterday,
        },
    );
    assert!(
        s.w.last_events.is_empty(),
        "{fx:?}: payment due before the due date"
    );
    s.w.ok(&Actor::System, Command::MarkPaymentDue { id, today });
    if payment_due {
        assert_eq!(s.w.event_names(), ["InvoicePaymentDue"], "{fx:?}");
        assert_eq!(
            s.w.status(id),
            fx.status(),
            "{fx:?}: payment.due changes no state"
        );
        // Once only.
        s.w.ok(&Actor::System, Command::MarkPaymentDue { id, today });
        assert!(s.w.last_events.is_empty(), "{fx:?}: payment due twice");
    } else {
        assert!(
            s.w.last_events.is_empty(),
            "{fx:?}: payment due emitted {:?}",
            s.w.event_names()
        );
    }
}

#[test]
fn scheduled_work_by_state() {
    #[rustfmt::skip]
    let cases: &[(Fx, bool, bool)] = &[
        // fixture                          auto-archives  payment.due
        (Fx::Draft,                          false,         false),
        (Fx::Submitted,                      false,         false),
        (Fx::InfoRequested,                  false,         false),
        (Fx::Approved,                       false,         true),
        (Fx::Adjusted,                       false,         true),
        (Fx::Disputed,                       false,         false),
        (Fx::CancelRequestedBySeller,        false,         false),
        (Fx::CancelRequestedByBuyer,         false,         false),
        (Fx::CancelledDraft,                 true,          false),
        (Fx::CancelledSubmitted,             true,          false),
        (Fx::Settled,                        true,          false),
        (Fx::ArchivedSettled,                false,         false),
        (Fx::ArchivedCancelledDraft,         false,         false),
        (Fx::ArchivedCancelledSubmitted,     false,         false),
    ];
    assert_eq!(cases.len(), Fx::ALL.len());
    for (fx, archives, due) in cases {
        check_scheduled(*fx, *archives, *due);
    }
}

#[test]
fn scheduled_commands_are_not_for_organizations() {
    let (mut s, id) = build(Fx::Settled);
    let seller = s.seller;
    s.w.refused(
        &seller.actor(),
        Command::AutoArchive { id },
        Refusal::Forbidden,
    );
    let today = s.w.today();
    s.w.refused(
        &seller.actor(),
        Command::MarkPaymentDue { id, today },
        Refusal::Forbidden,
    );
}

// ---------------------------------------------------------------------------
// Line-item arithmetic through the ledger.
// ---------------------------------------------------------------------------

/// One line `(currency, quantity, unitPrice, taxRate)` → `(amount, taxAmount)`
/// as formatted by the API, or a validation error. Checked on creation, on
/// AddLineItem and on UpdateLineItem (the figures must agree on every path).
fn check_line(
    code: &str,
    quantity: &str,
    unit_price: &str,
    tax_rate: &str,
    expect: Option<(&str, &str)>,
) {
    let mut s = Scene::new("");
    let seller = s.seller;
    let label = format!("{quantity} × {unit_price} {code} at {tax_rate}%");
    let input = line("item", quantity, unit_price, tax_rate);

    // 1. CreateInvoice with the line.
    let new =
        s.w.new_invoice(s.connection, code, vec![input.clone()], false);
    let created = s.w.run(&seller.actor(), Command::CreateInvoice(new));

    // 2. AddLineItem to an empty draft.
    let empty = s.w.new_invoice(s.connection, code, vec![], false);
    let draft = s.w.create_invoice(&seller, empty);
    let add = Command::AddLineItem {
        id: draft,
        item: input.clone(),
    };

    // 3. UpdateLineItem of a 1 × 1 line to these figures.
    let one =
        s.w.new_invoice(s.connection, code, vec![line("item", "1", "1", "0")], false);
    let patched = s.w.create_invoice(&seller, one);
    let line_item_id = s.w.invoice(patched).line_items[0].id;
    let update = Command::UpdateLineItem {
        id: patched,
        line_item_id,
        patch: LineItemPatch {
            quantity: Some(input.quantity),
            unit_price: Some(input.unit_price.clone()),
            tax_rate: Some(input.tax_rate),
            ..LineItemPatch::default()
        },
    };

    match expect {
        Some((amount, tax)) => {
            let id = match created {
                Ok(Outcome::Invoice(id)) => id,
                other => panic!("{label}: create gave {other:?}"),
            };
            s.w.ok(&seller.actor(), add);
            s.w.ok(&seller.actor(), update);
            for inv_id in [id, draft, patched] {
                let inv = s.w.invoice(inv_id);
                assert_eq!(inv.line_items.len(), 1, "{label}");
                let l = &inv.line_items[0];
                assert_eq!(fmt(l.amount, code), amount, "{label}: amount");
                assert_eq!(fmt(l.tax_amount, code), tax, "{label}: taxAmount");
                let t = inv.totals();
                assert_eq!(fmt(t.subtotal, code), amount, "{label}: subtotal");
                assert_eq!(fmt(t.tax_total, code), tax, "{label}: taxTotal");
                assert_eq!(
                    t.total,
                    l.amount.checked_add(l.tax_amount).unwrap(),
                    "{label}: total"
                );
            }
        }
        None => {
            assert!(
                matches!(created, Err(ref e) if refusal(e) == Refusal::Validation),
                "{label}: create gave {created:?}"
            );
            s.w.refused(&seller.actor(), add, Refusal::Validation);
            s.w.refused(&seller.actor(), update, Refusal::Validation);
        }
    }
}

/// `(currency, quantity, unitPrice, taxRate, Some((amount, taxAmount)) | None for 400)`.
type LineCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

#[test]
fn line_item_arithmetic() {
    #[rustfmt::skip]
    let cases: &[LineCase] = &[
        // the contract's own example: 1.485 → 1.49; 1.49 × 50 % = 0.745 → 0.75
        ("USD", "1.5",      "0.99",   "50",  Some(("1.49", "0.75"))),
        ("USD", "1.5",      "0.99",   "0",   Some(("1.49", "0.00"))),
        // tax is taken on the rounded amount: 1.005 → 1.01; 0.505 → 0.51 (not 0.5025 → 0.50)
        ("USD", "1.005",    "1.00",   "50",  Some(("1.01", "0.51"))),
        ("USD", "3",        "33.33",  "7.5", Some(("99.99", "7.50"))),
        ("USD", "0.333333", "0.01",   "100", Some(("0.00", "0.00"))),
        ("USD", "0.5",      "0.01",   "0",   Some(("0.01", "0.00"))),
        ("USD", "2",        "0.005",  "0",   None),
        // JPY has no minor units
        ("JPY", "3",        "333",    "10",  Some(("999", "100"))),
        ("JPY", "1.5",      "999",    "7.5", Some(("1499", "112"))),
        ("JPY", "0.5",      "1",      "0",   Some(("1", "0"))),
        ("JPY", "2.5",      "1",      "50",  Some(("3", "2"))),
        ("JPY", "1",        "1.5",    "0",   None),
        // KWD has three
        ("KWD", "1.5",      "0.333",  "5",   Some(("0.500", "0.025"))),
        ("KWD", "2.5",      "1.001",  "10",  Some(("2.503", "0.250"))),
        ("KWD", "7",        "0.143",  "15",  Some(("1.001", "0.150"))),
        ("KWD", "0.000001", "1.000",  "0",   Some(("0.000", "0.000"))),
        ("KWD", "1",        "0.0005", "0",   None),
    ];
    for (code, q, p, r, expect) in cases {
        check_line(code, q, p, r, *expect);
    }
}

#[test]
fn invoice_totals_are_sums_of_rounded_lines_and_approval_reserves_the_total() {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let lines = vec![
        line("a", "1.5", "0.99", "50"),
        line("b", "1.005", "1.00", "50"),
        line("c", "3", "33.33", "7.5"),
    ];
    let new = s.w.new_invoice(s.connection, "USD", lines, true);
    let id = s.w.create_invoice(&seller, new);
    let t = s.w.invoice(id).totals();
    assert_eq!(fmt(t.subtotal, "USD"), "102.49");
    assert_eq!(fmt(t.tax_total, "USD"), "8.76");
    assert_eq!(fmt(t.total, "USD"), "111.25");
    s.w.act_ok(&buyer, id, approve());
    assert_eq!(
        fmt(s.w.invoice(id).approved_amount.unwrap(), "USD"),
        "111.25"
    );
    assert_eq!(
        fmt(s.w.balance(&buyer, "USD").unwrap().reserved, "USD"),
        "111.25"
    );
}

#[test]
fn line_item_edits_recompute_the_figures() {
    let mut s = Scene::new("");
    let seller = s.seller;
    let new = s.w.new_invoice(
        s.connection,
        "USD",
        vec![line("a", "1.5", "0.99", "50")],
        false,
    );
    let id = s.w.create_invoice(&seller, new);
    let first = s.w.invoice(id).line_items[0].id;
    // Changing only the tax rate keeps quantity and price.
    s.w.ok(
        &seller.actor(),
        Command::UpdateLineItem {
            id,
            line_item_id: first,
            patch: LineItemPatch {
                tax_rate: Some(ledger_core::money::TaxRate::parse("10").unwrap()),
                ..LineItemPatch::default()
            },
        },
    );
    let l = &s.w.invoice(id).line_items[0];
    assert_eq!(
        (fmt(l.amount, "USD"), fmt(l.tax_amount, "USD")),
        ("1.49".into(), "0.15".into())
    );
    s.w.ok(
        &seller.actor(),
        Command::AddLineItem {
            id,
            item: line("b", "2", "0.50", "0"),
        },
    );
    assert_eq!(fmt(s.w.invoice(id).totals().total, "USD"), "2.64");
    s.w.ok(
        &seller.actor(),
        Command::RemoveLineItem {
            id,
            line_item_id: first,
        },
    );
    assert_eq!(fmt(s.w.invoice(id).totals().total, "USD"), "1.00");
    // Removing it again: the line item is gone.
    s.w.refused(
        &seller.actor(),
        Command::RemoveLineItem {
            id,
            line_item_id: first,
        },
        Refusal::NotFound,
    );
}

#[test]
fn submitting_needs_a_positive_total() {
    let mut s = Scene::new("");
    let seller = s.seller;
    let empty = s.w.new_invoice(s.connection, "USD", vec![], false);
    let id = s.w.create_invoice(&seller, empty);
    s.w.refused(
        &seller.actor(),
        Command::Invoice {
            id,
            action: InvoiceAction::Submit,
        },
        Refusal::Validation,
    );
    let with_submit = s.w.new_invoice(s.connection, "USD", vec![], true);
    s.w.refused(
        &seller.actor(),
        Command::CreateInvoice(with_submit),
        Refusal::Validation,
    );
    // Lines, but nothing to pay: refused too (lines alone are not enough).
    let free = s.w.new_invoice(
        s.connection,
        "USD",
        vec![line("Courtesy visit", "1", "0.00", "0")],
        false,
    );
    let id = s.w.create_invoice(&seller, free);
    s.w.refused(
        &seller.actor(),
        Command::Invoice {
            id,
            action: InvoiceAction::Submit,
        },
        Refusal::Validation,
    );
}

// ---------------------------------------------------------------------------
// PATCH with `expectedVersion`.
// ---------------------------------------------------------------------------

/// `(fixture, who, expectedVersion relative to the current one)` → result.
/// A stale version is 409 VERSION_CONFLICT for the party that may PATCH; the
/// wrong party is 403 and an invisible invoice 404 whatever version it sends
/// (the precondition cannot turn a 403/404 into a 409).
fn check_expected_version(fx: Fx, who: Who, offset: i64, expect: Result<(), Refusal>) {
    let (mut s, id) = build(fx);
    let org = match who {
        Who::Seller => s.seller,
        Who::Buyer => s.buyer,
        Who::Stranger => s.stranger,
    };
    let current = s.w.invoice(id).version;
    let expected = current.checked_add_signed(offset).unwrap();
    let command = Command::UpdateInvoice {
        id,
        patch: InvoicePatch {
            expected_version: Some(expected),
            memo: Some(None),
            ..InvoicePatch::default()
        },
    };
    let label = format!("{fx:?} by {who:?} expecting v{expected} (at v{current})");
    match expect {
        Ok(()) => {
            s.w.ok(&org.actor(), command);
            assert_eq!(s.w.invoice(id).version, current + 1, "{label}");
        }
        Err(refusal) => {
            let err = s.w.refused(&org.actor(), command, refusal.clone());
            if refusal == Refusal::VersionConflict {
                assert_eq!(
                    err,
                    ledger_core::domain::DomainError::VersionConflict { expected, current },
                    "{label}"
                );
            }
        }
    }
}

#[test]
fn patch_with_expected_version() {
    use Refusal::{Forbidden, NotFound, VersionConflict};
    #[rustfmt::skip]
    let cases: &[(Fx, Who, i64, Result<(), Refusal>)] = &[
        (Fx::Draft,         Who::Seller,   0,  Ok(())),
        (Fx::Draft,         Who::Seller,   -1, Err(VersionConflict)),
        (Fx::Draft,         Who::Seller,   1,  Err(VersionConflict)),
        (Fx::Disputed,      Who::Seller,   0,  Ok(())),
        (Fx::Disputed,      Who::Seller,   -1, Err(VersionConflict)),
        (Fx::InfoRequested, Who::Seller,   -2, Err(VersionConflict)),
        (Fx::Draft,         Who::Buyer,    -1, Err(NotFound)),
        (Fx::Draft,         Who::Stranger, -1, Err(NotFound)),
        (Fx::Disputed,      Who::Buyer,    0,  Err(Forbidden)),
        (Fx::Disputed,      Who::Buyer,    -1, Err(Forbidden)),
        (Fx::Submitted,     Who::Buyer,    -1, Err(Forbidden)),
        (Fx::Disputed,      Who::Stranger, -1, Err(NotFound)),
    ];
    for (fx, who, offset, expect) in cases {
        check_expected_version(*fx, *who, *offset, expect.clone());
    }
}

/// A draft's lines live in the write model while it is a draft: lines added
/// one by one all count when the buyer approves (the reservation is the
/// whole total), and none are kept once it is submitted.
#[test]
fn lines_added_to_a_draft_one_by_one_are_all_reserved_on_approval() {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = s.draft();
    s.w.ok(
        &seller.actor(),
        Command::AddLineItem {
            id,
            item: line("travel", "2", "20.00", "0"),
        },
    );
    s.w.ok(
        &seller.actor(),
        Command::AddLineItem {
            id,
            item: line("materials", "1", "5.00", "0"),
        },
    );
    s.w.act_ok(&seller, id, InvoiceAction::Submit);
    s.w.act_ok(&buyer, id, approve());
    let b = s.w.balance(&buyer, "USD").unwrap();
    // 110.00 (the standard line) + 40.00 + 5.00
    assert_eq!(fmt(b.holds[&Hold::Invoice(id)], "USD"), "155.00");
    assert_eq!(fmt(b.reserved, "USD"), "155.00");
    let state = &s.w.ledger.invoices[&id];
    assert_eq!(state.line_count, 3);
    assert!(
        state.lines().is_empty(),
        "a submitted invoice keeps no lines"
    );
}

/// The write model keeps an invoice's attachments: a file attached to an
/// invoice that is no longer a draft cannot be deleted, and deleting one a
/// draft lists takes it off the draft.
#[test]
fn attachments_outlive_the_draft_in_the_write_model() {
    let mut s = Scene::new("1000.00");
    let seller = s.seller;
    let store = |s: &mut Scene, name: &str| {
        let id = ledger_core::ids::FileId::new();
        s.w.ok(
            &seller.actor(),
            Command::StoreFile {
                id,
                filename: name.into(),
                content_type: "application/pdf".into(),
                size: 10,
                sha256: [7; 32],
            },
        );
        id
    };
    let (kept, dropped) = (store(&mut s, "contract.pdf"), store(&mut s, "draft.pdf"));
    let mut submitted =
        s.w.new_invoice(s.connection, "USD", Scene::std_lines(), true);
    submitted.attachments = vec![kept];
    let submitted = s.w.create_invoice(&seller, submitted);
    let mut draft =
        s.w.new_invoice(s.connection, "USD", Scene::std_lines(), false);
    draft.attachments = vec![dropped];
    let draft = s.w.create_invoice(&seller, draft);
    assert_eq!(s.w.ledger.invoices[&submitted].attachments(), [kept]);

    s.w.refused(
        &seller.actor(),
        Command::DeleteFile { id: kept },
        Refusal::Validation,
    );
    s.w.ok(&seller.actor(), Command::DeleteFile { id: dropped });
    assert!(s.w.invoice(draft).attachments.is_empty());
    assert!(s.w.ledger.invoices[&draft].attachments().is_empty());
}
