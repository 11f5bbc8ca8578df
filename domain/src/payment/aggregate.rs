//! The `Payment` aggregate: one per charge, keyed by the payment id, carrying the reference back to
//! what was paid for.

use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Authorization, AuthorizationRequest, PaymentCommand, PaymentError, PaymentEvent, PaymentProvider, PaymentReference,
    RefundRequest,
};
use crate::shared::Krw;

/// The ports a payment needs while it decides.
#[derive(Clone)]
pub struct PaymentServices {
    pub provider: Arc<dyn PaymentProvider>,
}

/// What was charged; kept once approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub payment_id: Uuid,
    pub reference: PaymentReference,
    pub customer_id: String,
    pub amount: Krw,
    pub authorization_id: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payment {
    #[default]
    NotAuthorized,
    Approved(Charge),
    Refunded {
        charge: Charge,
        refund_id: String,
    },
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment.payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = PaymentServices;

    async fn handle(
        &mut self,
        command: PaymentCommand,
        services: &PaymentServices,
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        match command {
            PaymentCommand::AuthorizePayment { payment_id, reference, customer_id, amount } => {
                self.authorize(payment_id, reference, customer_id, amount, services, sink).await
            }
            PaymentCommand::RefundPayment { reason } => self.refund(reason, services, sink).await,
        }
    }

    fn apply(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::PaymentApproved { payment_id, reference, customer_id, amount, authorization_id } => {
                *self = Self::Approved(Charge { payment_id, reference, customer_id, amount, authorization_id });
            }
            PaymentEvent::PaymentRefunded { refund_id, .. } => {
                if let Self::Approved(charge) = std::mem::take(self) {
                    *self = Self::Refunded { charge, refund_id };
                }
            }
        }
    }
}

impl Payment {
    async fn authorize(
        &mut self,
        payment_id: Uuid,
        reference: PaymentReference,
        customer_id: String,
        amount: Krw,
        services: &PaymentServices,
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        if let Self::Approved(charge) | Self::Refunded { charge, .. } = self {
            // Authorizing the same reference again (a retried command) charges nothing more.
            return if charge.reference == reference { Ok(()) } else { Err(PaymentError::PaymentIdReused) };
        }
        let request = AuthorizationRequest {
            idempotency_key: payment_id.to_string(),
            amount,
            reference: reference.as_provider_reference(),
        };
        let answer = services.provider.authorize(&request).await.map_err(|failure| {
            PaymentError::ProviderUnavailable { detail: failure.detail, retry_after: failure.retry_after }
        })?;
        match answer {
            Authorization::Approved { authorization_id } => {
                let approved =
                    PaymentEvent::PaymentApproved { payment_id, reference, customer_id, amount, authorization_id };
                sink.write(approved, self).await;
                Ok(())
            }
            Authorization::Declined { reason } => Err(PaymentError::Declined { reason }),
        }
    }

    async fn refund(
        &mut self,
        reason: String,
        services: &PaymentServices,
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        let charge = match self {
            Self::NotAuthorized => return Err(PaymentError::NothingToRefund),
            Self::Refunded { .. } => return Ok(()),
            Self::Approved(charge) => charge.clone(),
        };
        let request = RefundRequest {
            authorization_id: charge.authorization_id.clone(),
            idempotency_key: format!("refund-{}", charge.payment_id),
            amount: charge.amount,
        };
        let confirmation = services.provider.refund(&request).await.map_err(|failure| {
            PaymentError::ProviderUnavailable { detail: failure.detail, retry_after: failure.retry_after }
        })?;
        let refunded = PaymentEvent::PaymentRefunded {
            payment_id: charge.payment_id,
            reference: charge.reference,
            customer_id: charge.customer_id,
            amount: charge.amount,
            refund_id: confirmation.refund_id,
            reason,
        };
        sink.write(refunded, self).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::payment::{ProviderFailure, RefundConfirmation};

    /// A scripted provider: answers every call the same way and counts the calls.
    struct ScriptedProvider {
        authorization: Result<Authorization, ProviderFailure>,
        refund: Result<RefundConfirmation, ProviderFailure>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl PaymentProvider for ScriptedProvider {
        async fn authorize(&self, _: &AuthorizationRequest) -> Result<Authorization, ProviderFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.authorization.clone()
        }

        async fn refund(&self, _: &RefundRequest) -> Result<RefundConfirmation, ProviderFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.refund.clone()
        }
    }

    fn services(authorization: Result<Authorization, ProviderFailure>) -> PaymentServices {
        PaymentServices {
            provider: Arc::new(ScriptedProvider {
                authorization,
                refund: Ok(RefundConfirmation { refund_id: "rf-1".into() }),
                calls: AtomicUsize::new(0),
            }),
        }
    }

    fn approving() -> PaymentServices {
        services(Ok(Authorization::Approved { authorization_id: "au-1".into() }))
    }

    fn reference() -> PaymentReference {
        PaymentReference { flow: "book-rental".into(), kind: "rental".into(), id: Uuid::from_u128(1) }
    }

    fn fee() -> Krw {
        Krw::positive("amount", 1500).unwrap()
    }

    fn authorize() -> PaymentCommand {
        PaymentCommand::AuthorizePayment {
            payment_id: Uuid::from_u128(5),
            reference: reference(),
            customer_id: "c-1".into(),
            amount: fee(),
        }
    }

    fn approved() -> PaymentEvent {
        PaymentEvent::PaymentApproved {
            payment_id: Uuid::from_u128(5),
            reference: reference(),
            customer_id: "c-1".into(),
            amount: fee(),
            authorization_id: "au-1".into(),
        }
    }

    fn refunded() -> PaymentEvent {
        PaymentEvent::PaymentRefunded {
            payment_id: Uuid::from_u128(5),
            reference: reference(),
            customer_id: "c-1".into(),
            amount: fee(),
            refund_id: "rf-1".into(),
            reason: "rental cancelled".into(),
        }
    }

    #[tokio::test]
    async fn it_should_record_an_approved_payment() {
        TestFramework::<Payment>::with(approving())
            .given_no_previous_events()
            .when_async(authorize())
            .await
            .then_expect_events(vec![approved()]);
    }

    #[tokio::test]
    async fn it_should_record_nothing_when_the_provider_declines() {
        TestFramework::<Payment>::with(services(Ok(Authorization::Declined { reason: "insufficient funds".into() })))
            .given_no_previous_events()
            .when_async(authorize())
            .await
            .then_expect_error(PaymentError::Declined { reason: "insufficient funds".into() });
    }

    #[tokio::test]
    async fn it_should_record_nothing_when_the_provider_is_unavailable() {
        TestFramework::<Payment>::with(services(Err(ProviderFailure::new("connection refused"))))
            .given_no_previous_events()
            .when_async(authorize())
            .await
            .then_expect_error(PaymentError::ProviderUnavailable {
                detail: "connection refused".into(),
                retry_after: None,
            });
    }

    #[tokio::test]
    async fn it_should_not_charge_twice_when_the_same_reference_is_authorized_again() {
        let provider = Arc::new(ScriptedProvider {
            authorization: Ok(Authorization::Approved { authorization_id: "au-2".into() }),
            refund: Ok(RefundConfirmation { refund_id: "rf-1".into() }),
            calls: AtomicUsize::new(0),
        });
        TestFramework::<Payment>::with(PaymentServices { provider: provider.clone() })
            .given(vec![approved()])
            .when_async(authorize())
            .await
            .then_expect_events(vec![]);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 0, "the provider must not be asked again");
    }

    #[tokio::test]
    async fn it_should_refuse_to_reuse_a_payment_id_for_another_reference() {
        let other = PaymentCommand::AuthorizePayment {
            payment_id: Uuid::from_u128(5),
            reference: PaymentReference { flow: "book-rental".into(), kind: "rental".into(), id: Uuid::from_u128(99) },
            customer_id: "c-1".into(),
            amount: fee(),
        };
        TestFramework::<Payment>::with(approving())
            .given(vec![approved()])
            .when_async(other)
            .await
            .then_expect_error(PaymentError::PaymentIdReused);
    }

    #[tokio::test]
    async fn it_should_refund_an_approved_payment() {
        TestFramework::<Payment>::with(approving())
            .given(vec![approved()])
            .when_async(PaymentCommand::RefundPayment { reason: "rental cancelled".into() })
            .await
            .then_expect_events(vec![refunded()]);
    }

    #[tokio::test]
    async fn it_should_refund_only_once() {
        TestFramework::<Payment>::with(approving())
            .given(vec![approved(), refunded()])
            .when_async(PaymentCommand::RefundPayment { reason: "rental cancelled".into() })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn it_should_not_refund_a_payment_that_was_never_approved() {
        TestFramework::<Payment>::with(approving())
            .given_no_previous_events()
            .when_async(PaymentCommand::RefundPayment { reason: "rental cancelled".into() })
            .await
            .then_expect_error(PaymentError::NothingToRefund);
    }

    #[tokio::test]
    async fn it_should_record_no_refund_while_the_provider_fails_it() {
        let failing = PaymentServices {
            provider: Arc::new(ScriptedProvider {
                authorization: Ok(Authorization::Approved { authorization_id: "au-1".into() }),
                refund: Err(ProviderFailure::new("timeout")),
                calls: AtomicUsize::new(0),
            }),
        };
        TestFramework::<Payment>::with(failing)
            .given(vec![approved()])
            .when_async(PaymentCommand::RefundPayment { reason: "rental cancelled".into() })
            .await
            .then_expect_error(PaymentError::ProviderUnavailable { detail: "timeout".into(), retry_after: None });
    }
}
