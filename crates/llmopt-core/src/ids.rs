//! Identifiers. Newtypes over strings so that a model id cannot be passed where a tenant is meant.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(value: impl Into<String>) -> $name {
                $name(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> $name {
                $name(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> $name {
                $name(value)
            }
        }
    };
}

string_id!(
    /// A configured provider, e.g. `openai`, `anthropic`, `sim`.
    ProviderId
);
string_id!(
    /// A model id as the provider names it, e.g. `gpt-4o-mini`, `claude-sonnet-4-5-20250929`.
    ModelId
);
string_id!(
    /// The tenant a call is accounted to (mapped from a gateway API key).
    TenantId
);
string_id!(
    /// A request id: the gateway makes UUIDv7 strings; ingested records may bring their own.
    RequestId
);
