//! Payment adapters: the providers behind the `PaymentProvider` port (`simulated`, `http`), the
//! circuit breaker and timeout in front of them, and the `Payments` port that core contexts call,
//! implemented by running the `Payment` aggregate through the command bus.

pub mod breaker;
pub mod http;

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use storming_domain::payment::{
    Authorization, AuthorizationRequest, Payment, PaymentApproval, PaymentCommand, PaymentError, PaymentFailure,
    PaymentProvider, PaymentRequest, Payments, ProviderFailure, RefundConfirmation, RefundRequest,
};
use uuid::Builder;

use crate::commands::{CommandError, Executor};

/// The `simulated` provider: approves every charge and refund at once, and, like a real provider,
/// answers a repeated idempotency key with its first answer. For dev starts and tests; it moves no
/// money.
///
/// The answer is derived from the key (a digest of it, as a UUID), so nothing is remembered: the
/// same key gets the same answer for as long as the process runs and after a restart too, and the
/// provider's memory does not grow with the payments it has seen. It used to keep every key it
/// had answered in a map, which grew by about 200 bytes per payment for the life of the process
/// (BENCHMARKS.md, twenty-sixth session).
#[derive(Debug, Default)]
pub struct SimulatedProvider;

impl SimulatedProvider {
    fn answer(&self, idempotency_key: &str, prefix: &str) -> String {
        let digest = Sha256::new().chain_update(prefix).chain_update([0]).chain_update(idempotency_key).finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        format!("{prefix}-{}", Builder::from_custom_bytes(bytes).into_uuid())
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn authorize(&self, request: &AuthorizationRequest) -> Result<Authorization, ProviderFailure> {
        Ok(Authorization::Approved { authorization_id: self.answer(&request.idempotency_key, "sim-auth") })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundConfirmation, ProviderFailure> {
        Ok(RefundConfirmation { refund_id: self.answer(&request.idempotency_key, "sim-refund") })
    }
}

/// The payment context as core contexts see it: `authorize` decides the `Payment` aggregate's
/// outcome, which is stored no later than the paying command's events: in their commit on
/// PostgreSQL, just before it on SQLite (ADR 18).
pub struct PaymentDesk {
    payments: Arc<Executor<Payment>>,
}

impl PaymentDesk {
    pub fn new(payments: Arc<Executor<Payment>>) -> Self {
        Self { payments }
    }
}

#[async_trait]
impl Payments for PaymentDesk {
    async fn authorize(&self, request: PaymentRequest) -> Result<PaymentApproval, PaymentFailure> {
        let command = PaymentCommand::AuthorizePayment {
            payment_id: request.payment_id,
            reference: request.reference,
            customer_id: request.customer_id,
            amount: request.amount,
        };
        // Stored with the command that pays (ADR 18).
        match self.payments.decide_inside(&request.payment_id.to_string(), command, &request.metadata).await {
            Ok(()) => Ok(PaymentApproval { payment_id: request.payment_id }),
            Err(CommandError::Rejected(PaymentError::Declined { reason })) => Err(PaymentFailure::Declined { reason }),
            Err(CommandError::Rejected(PaymentError::ProviderUnavailable { detail, retry_after })) => {
                Err(PaymentFailure::Unavailable { detail, retry_after })
            }
            Err(other) => Err(PaymentFailure::Unavailable { detail: other.to_string(), retry_after: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use storming_domain::shared::Krw;

    use super::*;

    async fn authorization_id(provider: &SimulatedProvider, idempotency_key: &str) -> String {
        let request = AuthorizationRequest {
            idempotency_key: idempotency_key.into(),
            amount: Krw::positive("amount", 1500).unwrap(),
            reference: "rental-1".into(),
        };
        match provider.authorize(&request).await {
            Ok(Authorization::Approved { authorization_id }) => authorization_id,
            other => panic!("the simulated provider approves every charge, got {other:?}"),
        }
    }

    async fn refund_id(provider: &SimulatedProvider, idempotency_key: &str) -> String {
        let request = RefundRequest {
            authorization_id: "sim-auth-1".into(),
            idempotency_key: idempotency_key.into(),
            amount: Krw::positive("amount", 1500).unwrap(),
        };
        provider.refund(&request).await.expect("the simulated provider confirms every refund").refund_id
    }

    #[tokio::test]
    async fn it_should_answer_a_repeated_key_with_its_first_answer_and_another_key_with_another() {
        let provider = SimulatedProvider;
        let first = authorization_id(&provider, "payment-1").await;
        assert!(first.starts_with("sim-auth-"), "{first}");
        assert_eq!(authorization_id(&provider, "payment-1").await, first);
        assert_ne!(authorization_id(&provider, "payment-2").await, first);
        let refund = refund_id(&provider, "refund-payment-1").await;
        assert!(refund.starts_with("sim-refund-"), "{refund}");
        assert_eq!(refund_id(&provider, "refund-payment-1").await, refund);
        assert_ne!(
            refund_id(&provider, "payment-1").await.trim_start_matches("sim-refund-"),
            first.trim_start_matches("sim-auth-")
        );
    }

    #[tokio::test]
    async fn it_should_remember_nothing_so_an_answer_survives_a_restart() {
        let before = authorization_id(&SimulatedProvider, "payment-1").await;
        assert_eq!(authorization_id(&SimulatedProvider, "payment-1").await, before);
        assert_eq!(std::mem::size_of::<SimulatedProvider>(), 0);
    }
}
