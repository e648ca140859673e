//! Typed identifiers. Every entity has its own id type so an invoice id can never
//! be passed where a payment id is expected. All are UUID v7 (time-ordered, which
//! keeps sled keys and list orders close to creation order).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
    pub input: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const KIND: &'static str = $kind;

            /// A fresh, time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
            pub fn parse(input: &str) -> Result<Self, IdError> {
                let raw = input.strip_prefix($prefix).unwrap_or(if $prefix.is_empty() { input } else { "" });
                Uuid::try_parse(raw).map(Self).map_err(|_| IdError { kind: $kind, input: input.chars().take(64).collect() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if $prefix.is_empty() {
                    fmt::Display::fmt(&self.0.hyphenated(), f)
                } else {
                    write!(f, "{}{}", $prefix, self.0.simple())
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

typed_id!(OrganizationId, "organization", "");
typed_id!(
    /// Shown to clients with an `ek_` prefix so a leaked key id is recognisable in logs and secret scanners.
    ApiKeyId, "API key", "ek_");
typed_id!(ConnectionId, "connection", "");
typed_id!(InvoiceId, "invoice", "");
typed_id!(LineItemId, "line item", "");
typed_id!(PaymentId, "payment", "");
typed_id!(BalanceId, "balance", "");
typed_id!(TransactionId, "transaction", "");
typed_id!(WithdrawalId, "withdrawal", "");
typed_id!(RefundId, "refund", "");
typed_id!(WebhookEndpointId, "webhook endpoint", "");
typed_id!(FileId, "file", "");
typed_id!(
    /// Client-chosen idempotency key (`requestId` or `Idempotency-Key`).
    RequestId, "request", "");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_round_trip_through_display() {
        let id = InvoiceId::new();
        assert_eq!(InvoiceId::parse(&id.to_string()), Ok(id));
        assert_eq!(id.to_string().len(), 36);
    }

    #[test]
    fn api_key_ids_carry_a_prefix_and_require_it() {
        let id = ApiKeyId::new();
        let shown = id.to_string();
        assert!(shown.starts_with("ek_"));
        assert_eq!(ApiKeyId::parse(&shown), Ok(id));
        assert!(ApiKeyId::parse(&id.as_uuid().to_string()).is_err());
    }

    #[test]
    fn garbage_is_refused_with_the_kind_named() {
        let err = PaymentId::parse("not-a-uuid").unwrap_err();
        assert_eq!(err.kind, "payment");
        assert!(err.to_string().contains("payment"));
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = OrganizationId::new();
        let b = OrganizationId::new();
        assert!(a < b);
    }
}
