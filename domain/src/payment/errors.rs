//! Why a payment does not go through.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment was declined: {reason}")]
    Declined { reason: String },
    #[error("the payment provider is unavailable: {detail}")]
    ProviderUnavailable { detail: String, retry_after: Option<std::time::Duration> },
    #[error("there is no approved payment to refund")]
    NothingToRefund,
    #[error("this payment id already pays for another reference")]
    PaymentIdReused,
}

impl PaymentError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Declined { .. } => "payment-declined",
            Self::ProviderUnavailable { .. } => "payment-unavailable",
            Self::NothingToRefund => "payment-not-found",
            Self::PaymentIdReused => "payment-id-reused",
        }
    }
}
