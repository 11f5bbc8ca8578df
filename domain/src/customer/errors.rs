//! Why the customer context refuses a command.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("the customer is already registered")]
    AlreadyRegistered,
}

impl CustomerError {
    /// The stable machine code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyRegistered => "customer-already-registered",
        }
    }
}
