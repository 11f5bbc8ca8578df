//! Policies of the payment context: whenever a paid transaction is undone, refund it.

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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::shared::Krw;

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
