//! Payment adapters: the providers behind the `PaymentProvider` port (`simulated`, `http`), the
//! circuit breaker and timeout in front of them, and the `Payments` port that core contexts call,
//! implemented by running the `Payment` aggregate through the command bus.

pub mod breaker;
pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use storming_domain::payment::{
    Authorization, AuthorizationRequest, Payment, PaymentApproval, PaymentCommand, PaymentError, PaymentFailure,
    PaymentProvider, PaymentRequest, Payments, ProviderFailure, RefundConfirmation, RefundRequest,
};
use uuid::Uuid;

use crate::commands::{CommandError, Executor};

/// The `simulated` provider: approves every charge and refund at once, and, like a real provider,
/// answers a repeated idempotency key with its first answer. For dev starts and tests; it moves no
/// money.
#[derive(Debug, Default)]
pub struct SimulatedProvider {
    answered: Mutex<HashMap<String, String>>,
}

impl SimulatedProvider {
    fn answer_once(&self, idempotency_key: &str, prefix: &str) -> String {
        let mut answered = self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        answered.entry(idempotency_key.to_string()).or_insert_with(|| format!("{prefix}-{}", Uuid::now_v7())).clone()
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn authorize(&self, request: &AuthorizationRequest) -> Result<Authorization, ProviderFailure> {
        Ok(Authorization::Approved { authorization_id: self.answer_once(&request.idempotency_key, "sim-auth") })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundConfirmation, ProviderFailure> {
        Ok(RefundConfirmation { refund_id: self.answer_once(&request.idempotency_key, "sim-refund") })
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
