//! How the API's response types describe themselves: the JSON Schema of
//! each view (`views.rs`) is derived from its Rust type, so the OpenAPI
//! document's schema for a resource cannot differ from what is served.
//!
//! Fields hold the text the API writes (ids, money, times); the markers here
//! say what that text is, as references to the document's shared component
//! schemas (`Money`, `Timestamp`, …) or as a format.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};
use std::borrow::Cow;

macro_rules! component {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "$ref": concat!("#/components/schemas/", stringify!($name)) })
            }
        }
    };
}

component!(
    /// A decimal amount as text, in its currency's minor units.
    Money
);
component!(
    /// An RFC 3339 time in UTC.
    Timestamp
);
component!(
    /// An ISO 4217 code.
    Currency
);
component!(
    /// `ek_` and 32 hex digits.
    ApiKeyId
);
component!(
    /// A calendar date, `YYYY-MM-DD`.
    Date
);
component!(Quantity);
component!(
    /// The request's idempotency key.
    RequestId
);
component!(Instant);
component!(TaxRate);
component!(InvoiceStatus);
component!(Party);
component!(Permission);
component!(
    /// The server's error codes (`command-api`'s `ApiError`).
    ErrorCode
);
component!(ConnectionStatus);
component!(PaymentStatus);
component!(WithdrawalStatus);
component!(RefundStatus);
component!(TransactionType);
component!(BalanceChangeKind);
component!(BalanceChangeCauseType);
component!(WebhookEventFilter);
component!(WebhookEventType);
component!(WebhookPayload);
component!(DeliveryStatus);

/// A UUID as text.
pub struct Uuid;

impl JsonSchema for Uuid {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Uuid".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "uuid" })
    }
}

/// Every object the API answers has all its properties, always (null when
/// empty), unless the type skips one when empty (`skip_serializing_if`,
/// which schemars leaves out of `required`), and no others.
fn closed(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.contains_key("properties") {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
}

/// Collects the schemas of response types, named as the document names
/// them (`#[schemars(rename = …)]`), for its `components/schemas`.
pub struct Components {
    generator: SchemaGenerator,
}

impl Default for Components {
    fn default() -> Self {
        let mut settings = SchemaSettings::draft2020_12().for_serialize();
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
        settings
            .transforms
            .push(Box::new(RecursiveTransform(closed)));
        Components {
            generator: settings.into_generator(),
        }
    }
}

impl Components {
    /// For request bodies: what deserializing accepts, so a field that may
    /// be left out is not required (and `deny_unknown_fields` closes the
    /// object).
    pub fn requests() -> Self {
        let mut settings = SchemaSettings::draft2020_12().for_deserialize();
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
        Components {
            generator: settings.into_generator(),
        }
    }

    /// The name `T` has among the components (a `$ref` to it), added.
    pub fn name_of<T: JsonSchema>(&mut self) -> String {
        self.generator.subschema_for::<T>();
        T::schema_name().into_owned()
    }

    pub fn add<T: JsonSchema>(&mut self) -> &mut Self {
        self.generator.subschema_for::<T>();
        self
    }

    pub fn into_schemas(mut self) -> Map<String, Value> {
        self.generator.take_definitions(true)
    }
}
