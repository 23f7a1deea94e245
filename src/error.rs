//! The one shape every validation error takes: a JSON path and a message, so hosts can
//! answer `{"errors":[{"field":"events[3].ts","message":"..."}]}` whatever was wrong.

use serde::{Deserialize, Serialize};

/// One rejected field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Where, e.g. `events[3].ts` or `rules[2].when.count.window`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Builds one.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Formats a list of field errors for `Display`.
pub(crate) fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
