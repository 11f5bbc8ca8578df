//! Ports of the payment context (pink stickies): the external provider it calls, and the
//! synchronous call core contexts make to it. Adapters live in `storming-infra`.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::PaymentReference;
use crate::shared::{EventMetadata, Krw};

/// The external payment provider (see the provider contract in API.md).
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    async fn authorize(&self, request: &AuthorizationRequest) -> Result<Authorization, ProviderFailure>;
    async fn refund(&self, request: &RefundRequest) -> Result<RefundConfirmation, ProviderFailure>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The provider charges once per key, however often it is asked.
    pub idempotency_key: String,
    pub amount: Krw,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Approved { authorization_id: String },
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub authorization_id: String,
    pub idempotency_key: String,
    pub amount: Krw,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundConfirmation {
    pub refund_id: String,
}

/// The provider could not be asked or did not answer properly (down, slow, garbled), or the
/// circuit breaker in front of it is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider failure: {detail}")]
pub struct ProviderFailure {
    pub detail: String,
    /// When it is worth asking again, if known (an open circuit breaker knows).
    pub retry_after: Option<Duration>,
}

impl ProviderFailure {
    pub fn new(detail: impl Into<String>) -> Self {
        Self { detail: detail.into(), retry_after: None }
    }
}

/// The synchronous call a core context makes to the payment context while handling its command.
#[async_trait]
pub trait Payments: Send + Sync {
    async fn authorize(&self, request: PaymentRequest) -> Result<PaymentApproval, PaymentFailure>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRequest {
    pub payment_id: Uuid,
    pub reference: PaymentReference,
    pub customer_id: String,
    pub amount: Krw,
    /// The metadata of the core command, so the payment's events join its business transaction.
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentApproval {
    pub payment_id: Uuid,
}

/// Why a core command could not be paid for; either way nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentFailure {
    #[error("payment declined: {reason}")]
    Declined { reason: String },
    #[error("payment unavailable: {detail}")]
    Unavailable { detail: String, retry_after: Option<Duration> },
}
