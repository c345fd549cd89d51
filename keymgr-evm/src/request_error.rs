//! [`RequestError`]: why a transaction or message request was refused.

/// Why a request was refused before anything was signed. Every variant names the JSON
/// field(s) involved ([`fields`](Self::fields)); messages never echo secrets (requests
/// hold none) and name each field once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The input is not a JSON object (syntax error, or another JSON value).
    #[error("not a JSON transaction request: {reason}")]
    NotJson {
        /// What the JSON parser said (line and column).
        reason: String,
    },
    /// The input is larger than the reader accepts.
    #[error("the request is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A field that is not part of the request format (often a typo).
    #[error("unknown field `{field}`{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownField {
        /// The field as given.
        field: String,
        /// The known field it most resembles.
        suggestion: Option<&'static str>,
    },
    /// A field given twice in the same object.
    #[error("field `{field}` is given more than once")]
    DuplicateField {
        /// The repeated field.
        field: String,
    },
    /// A field whose value does not parse or is not allowed.
    #[error("`{field}`: {reason}")]
    InvalidValue {
        /// The field.
        field: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// Fields that contradict each other (or an explicit `type`).
    #[error("{}: {reason}", quoted(fields))]
    Conflict {
        /// The fields involved (`type` first when the request has an explicit one).
        fields: Vec<&'static str>,
        /// Why they cannot go together.
        reason: String,
    },
    /// Fields the transaction type needs are missing.
    #[error("missing {}: {reason}", quoted(fields))]
    Missing {
        /// The transaction type (0–4).
        tx_type: u8,
        /// The missing fields.
        fields: Vec<&'static str>,
        /// Why they are needed.
        reason: String,
    },
    /// An explicit `type` keymgr does not sign (EIP-2718 types 0–4 are supported).
    #[error(
        "`type`: {tx_type:#x} is not a transaction type keymgr signs (0 legacy, 1 EIP-2930, 2 EIP-1559, 3 EIP-4844, 4 EIP-7702)"
    )]
    UnsupportedType {
        /// The type given.
        tx_type: u8,
    },
}

impl RequestError {
    /// The JSON fields the error is about (empty for [`NotJson`](Self::NotJson) and
    /// [`TooLarge`](Self::TooLarge)).
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Self::NotJson { .. } | Self::TooLarge { .. } => Vec::new(),
            Self::UnknownField { field, .. }
            | Self::DuplicateField { field }
            | Self::InvalidValue { field, .. } => vec![field.as_str()],
            Self::Conflict { fields, .. } | Self::Missing { fields, .. } => fields.clone(),
            Self::UnsupportedType { .. } => vec!["type"],
        }
    }
}

impl RequestError {
    /// What is wrong, without the field names (those are in [`fields`](Self::fields)).
    pub fn reason(&self) -> String {
        match self {
            Self::InvalidValue { reason, .. }
            | Self::Conflict { reason, .. }
            | Self::Missing { reason, .. } => reason.clone(),
            Self::UnknownField { suggestion, .. } => format!(
                "not a field of a transaction request{}",
                suggestion
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default()
            ),
            Self::DuplicateField { .. } => "given more than once".to_owned(),
            Self::UnsupportedType { tx_type } => {
                format!("{tx_type:#x} is not a transaction type keymgr signs (0 to 4)")
            }
            Self::NotJson { .. } | Self::TooLarge { .. } => self.to_string(),
        }
    }
}

fn quoted(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<RequestError> for keymgr_core::Error {
    fn from(e: RequestError) -> Self {
        let fields = e.fields().join(", ");
        let field = if fields.is_empty() {
            "transaction request".to_owned()
        } else {
            fields
        };
        keymgr_core::Error::invalid_input(field, e.reason())
    }
}
