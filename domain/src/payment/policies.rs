//! Policies of the payment context: whenever a paid transaction is undone — or was never
//! recorded at all — refund it.

use chrono::TimeDelta;
use uuid::Uuid;

use super::PaymentCommand;
use crate::rental::RentalEvent;

/// Whenever `RentalCancelled`, then `RefundPayment` on the rental's payment.
pub fn refund_cancelled_rental(event: &RentalEvent) -> Option<(Uuid, PaymentCommand)> {
    match event {
        RentalEvent::RentalCancelled { payment_id, .. } => {
            Some((*payment_id, PaymentCommand::RefundPayment { reason: "rental cancelled".into() }))
        }
        _ => None,
    }
}

/// Whenever `PaymentApproved`, then — if the paid transaction left no event of its own within
/// `grace` (the core command crashed between the charge and its own events) — `RefundPayment`.
///
/// `recorded` says whether any event outside the payment context carries the payment's reference
/// id as its correlation id; `age` is how long ago the approval was stored.
pub fn reconcile_approval(recorded: bool, age: TimeDelta, grace: TimeDelta) -> Reconciliation {
    if recorded {
        Reconciliation::Recorded
    } else if age < grace {
        Reconciliation::Wait(grace - age)
    } else {
        Reconciliation::Refund(PaymentCommand::RefundPayment {
            reason: "the paid transaction was never recorded".into(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reconciliation {
    /// The transaction was recorded: the charge stands.
    Recorded,
    /// Too early to tell: look again after this long.
    Wait(TimeDelta),
    Refund(PaymentCommand),
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::shared::Krw;

    #[test]
    fn it_should_keep_a_charge_whose_transaction_was_recorded() {
        assert_eq!(reconcile_approval(true, TimeDelta::hours(1), TimeDelta::minutes(1)), Reconciliation::Recorded);
    }

    #[test]
    fn it_should_wait_for_a_transaction_that_may_still_be_recorded() {
        let decision = reconcile_approval(false, TimeDelta::seconds(20), TimeDelta::minutes(1));
        assert_eq!(decision, Reconciliation::Wait(TimeDelta::seconds(40)));
    }

    #[test]
    fn it_should_refund_a_charge_whose_transaction_never_came() {
        let decision = reconcile_approval(false, TimeDelta::minutes(2), TimeDelta::minutes(1));
        assert!(matches!(decision, Reconciliation::Refund(PaymentCommand::RefundPayment { .. })));
    }

    #[test]
    fn it_should_refund_the_payment_of_a_cancelled_rental() {
        let payment_id = Uuid::from_u128(9);
        let event = RentalEvent::RentalCancelled {
            rental_id: Uuid::from_u128(1),
            book_id: Uuid::from_u128(2),
            customer_id: "c-1".into(),
            payment_id,
            fee: Krw::positive("fee", 1000).unwrap(),
            cancelled_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        };
        let (target, command) = refund_cancelled_rental(&event).unwrap();
        assert_eq!(target, payment_id);
        assert_eq!(command, PaymentCommand::RefundPayment { reason: "rental cancelled".into() });
    }
}
