//! Query strings, typed at the edge. Each route that takes a query declares
//! one struct of what it accepts; [`Query`] parses it with serde, and a bad
//! value is `400 VALIDATION_ERROR` saying what was expected. Paging is one
//! shared type, [`Page`].
//!
//! Unknown parameters are ignored (proxies and caches add their own), and an
//! empty value is the same as leaving the parameter out (`?status=` from a
//! form whose select was left blank).

use crate::error::ApiError;
use crate::paging;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use chrono::NaiveDate;
use ledger_core::time::Timestamp;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use std::fmt::Display;
use std::str::FromStr;

/// The query string as `T`.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// `raw` (a query string without its `?`) as `T`.
pub fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw).map_err(|e| ApiError::Validation(e.to_string()))
}

/// For `#[serde(default, deserialize_with = "optional")]`: a parameter parsed
/// by `T`'s `FromStr`, absent when left out or empty.
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let raw = Option::<String>::deserialize(d)?;
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(D::Error::custom),
    }
}

/// `limit` and `cursor`, the same on every list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Page {
    #[serde(default, deserialize_with = "optional")]
    limit: Option<Limit>,
    #[serde(default, deserialize_with = "optional")]
    cursor: Option<Cursor>,
}

impl Page {
    pub fn limit(&self) -> usize {
        self.limit.map_or(paging::DEFAULT_LIMIT, |l| l.0)
    }

    /// The decoded cursor: the last item's sort key, as the list wrote it.
    pub fn cursor_bytes(&self) -> Option<&[u8]> {
        self.cursor.as_ref().map(|c| c.0.as_slice())
    }

    /// The decoded cursor of a list whose sort keys are text.
    pub fn cursor(&self) -> Result<Option<&str>, ApiError> {
        self.cursor_bytes()
            .map(|b| std::str::from_utf8(b).map_err(|_| invalid_cursor()))
            .transpose()
    }
}

/// `1..=200`, 50 when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(usize);

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=paging::MAX_LIMIT).contains(n))
            .map(Limit)
            .ok_or_else(|| {
                format!(
                    "limit must be an integer from 1 to {}, not `{s}`",
                    paging::MAX_LIMIT
                )
            })
    }
}

/// What a list answered as `nextCursor`: opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor(Vec<u8>);

impl FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map(Cursor)
            .map_err(|_| invalid_cursor().to_string())
    }
}

fn invalid_cursor() -> ApiError {
    ApiError::Validation("cursor is not valid: pass a nextCursor as it was answered".into())
}

/// A point in time: an RFC 3339 time, or a date meaning its midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub Timestamp);

impl FromStr for Instant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Timestamp::parse_rfc3339(s)
            .or_else(|| {
                Day::from_str(s)
                    .ok()
                    .and_then(|d| d.0.and_hms_opt(0, 0, 0))
                    .map(|t| Timestamp::from_datetime(t.and_utc()))
            })
            .map(Instant)
            .ok_or_else(|| format!("`{s}` is not an RFC 3339 time or a date YYYY-MM-DD"))
    }
}

/// `from` (inclusive) and `to` (exclusive), each optional.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Period {
    #[serde(default, deserialize_with = "optional")]
    from: Option<Instant>,
    #[serde(default, deserialize_with = "optional")]
    to: Option<Instant>,
}

impl Period {
    pub fn from(&self) -> Option<Timestamp> {
        self.from.map(|i| i.0)
    }

    pub fn to(&self) -> Option<Timestamp> {
        self.to.map(|i| i.0)
    }
}

/// A calendar date, exactly `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day(pub NaiveDate);

impl FromStr for Day {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::input::date("date", s)
            .map(Day)
            .map_err(|_| format!("`{s}` is not a date YYYY-MM-DD"))
    }
}

/// A value of one of the API's enumerations, by the name the API writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<T>(pub T);

/// An enumeration the API names its values of.
pub trait Names: Sized + Copy + 'static {
    /// What a value is, for the error (`status`, `type`).
    const WHAT: &'static str;
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

impl<T: Names> FromStr for Named<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        T::all()
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .map(Named)
            .ok_or_else(|| {
                let names: Vec<&str> = T::all().iter().map(|v| v.name()).collect();
                format!("unknown {} `{s}`: one of {}", T::WHAT, names.join(", "))
            })
    }
}

macro_rules! names {
    ($t:ty, $what:literal, $all:expr) => {
        impl Names for $t {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] {
                &$all
            }
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    };
}

use ledger_core::domain::connection::ConnectionStatus;
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::payment::PaymentStatus;
use ledger_core::domain::refund::RefundStatus;
use ledger_core::domain::withdrawal::WithdrawalStatus;
use projections::sql::outbox::DeliveryStatus;
use projections::sql::queries::treasury::Interval;
use projections::TransactionType;

names!(InvoiceStatus, "status", InvoiceStatus::ALL);
names!(TransactionType, "type", TransactionType::ALL);
names!(
    PaymentStatus,
    "status",
    [
        PaymentStatus::Pending,
        PaymentStatus::Completed,
        PaymentStatus::Failed
    ]
);
names!(
    ConnectionStatus,
    "status",
    [
        ConnectionStatus::Pending,
        ConnectionStatus::Active,
        ConnectionStatus::Rejected
    ]
);
names!(
    WithdrawalStatus,
    "status",
    [
        WithdrawalStatus::PendingApproval,
        WithdrawalStatus::Completed,
        WithdrawalStatus::Rejected,
        WithdrawalStatus::Cancelled
    ]
);
names!(
    RefundStatus,
    "status",
    [
        RefundStatus::Pending,
        RefundStatus::Approved,
        RefundStatus::Rejected
    ]
);
names!(
    DeliveryStatus,
    "status",
    [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed
    ]
);
names!(
    Interval,
    "interval",
    [Interval::Day, Interval::Week, Interval::Month]
);

/// `format=csv|jsonl` of an export, JSON lines when left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    #[default]
    Jsonl,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Listing {
        #[serde(flatten)]
        page: Page,
        #[serde(default, deserialize_with = "optional")]
        from: Option<Instant>,
        #[serde(default)]
        format: Format,
    }

    fn listing(q: &str) -> Result<Listing, String> {
        parse::<Listing>(q).map_err(|e| e.to_string())
    }

    #[test]
    fn left_out_and_empty_are_the_defaults() {
        for q in ["", "limit=&cursor=&from=", "unknown=1"] {
            let l = listing(q).unwrap();
            assert_eq!(l.page.limit(), paging::DEFAULT_LIMIT, "{q}");
            assert_eq!(l.page.cursor().unwrap(), None, "{q}");
            assert_eq!(l.from, None, "{q}");
            assert_eq!(l.format, Format::Jsonl, "{q}");
        }
    }

    #[test]
    fn values_parse_and_bad_ones_say_what_was_expected() {
        let cursor = paging::encode_cursor("2026-01-01|abc");
        let l = listing(&format!(
            "limit=200&cursor={cursor}&from=2026-03-01&format=csv"
        ))
        .unwrap();
        assert_eq!(l.page.limit(), 200);
        assert_eq!(l.page.cursor().unwrap(), Some("2026-01-01|abc"));
        assert_eq!(l.from.unwrap().0.rfc3339(), "2026-03-01T00:00:00.000000Z");
        assert_eq!(l.format, Format::Csv);
        assert_eq!(listing("limit=1").unwrap().page.limit(), 1);

        for (q, says) in [
            ("limit=0", "limit must be an integer from 1 to 200"),
            ("limit=201", "limit must be"),
            ("limit=ten", "limit must be"),
            ("cursor=***", "cursor is not valid"),
            ("from=yesterday", "`yesterday` is not an RFC 3339 time"),
            ("from=2026-2-1", "is not an RFC 3339 time"),
            ("format=xml", "xml"),
        ] {
            let e = listing(q).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
        // Valid base64 that is not text: refused where keys are text.
        let binary = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xff, 0xfe]);
        let l = listing(&format!("cursor={binary}")).unwrap();
        assert!(l.page.cursor().is_err());
        assert_eq!(l.page.cursor_bytes(), Some(&[0xff, 0xfe][..]));
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        Blue,
    }

    impl Names for Colour {
        const WHAT: &'static str = "colour";
        fn all() -> &'static [Self] {
            &[Colour::Red, Colour::Blue]
        }
        fn name(self) -> &'static str {
            match self {
                Colour::Red => "RED",
                Colour::Blue => "BLUE",
            }
        }
    }

    #[test]
    fn named_values_are_found_by_their_api_name_only() {
        assert_eq!("BLUE".parse::<Named<Colour>>(), Ok(Named(Colour::Blue)));
        let e = "blue".parse::<Named<Colour>>().unwrap_err();
        assert_eq!(e, "unknown colour `blue`: one of RED, BLUE");
    }
}
