//! The `BookCopy` aggregate: the rental context's copy of one book, the consistency boundary for
//! availability. Two customers racing for it end with exactly one rental.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RentalCommand, RentalError, RentalEvent, RentalTerms, FLOW};
use crate::payment::{PaymentFailure, PaymentReference, PaymentRequest, Payments};
use crate::shared::{EventMetadata, Krw};

/// The ports the shelf needs while it decides.
#[derive(Clone)]
pub struct RentalServices {
    pub payments: Arc<dyn Payments>,
}

/// Where a rental stands, as customers and book managers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RentalStatus {
    Rented,
    Returned,
    Cancelled,
}

impl RentalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rented => "RENTED",
            Self::Returned => "RETURNED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShelvedBook {
    pub book_id: Uuid,
    pub title: String,
    pub rental_fee: Krw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveRental {
    pub rental_id: Uuid,
    pub customer_id: String,
    pub payment_id: Uuid,
    pub fee: Krw,
    pub rented_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

pub use super::closed::ClosedRentals;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub enum BookCopy {
    #[default]
    NotShelved,
    Available {
        book: ShelvedBook,
        closed: ClosedRentals,
    },
    Rented {
        book: ShelvedBook,
        rental: ActiveRental,
        closed: ClosedRentals,
    },
}

impl Aggregate for BookCopy {
    const TYPE: &'static str = "rental.book_copy";
    type Command = RentalCommand;
    type Event = RentalEvent;
    type Error = RentalError;
    type Services = RentalServices;

    async fn handle(
        &mut self,
        command: RentalCommand,
        services: &RentalServices,
        sink: &EventSink<Self>,
    ) -> Result<(), RentalError> {
        match command {
            RentalCommand::PutOnShelf { book_id, title, rental_fee } => {
                self.put_on_shelf(book_id, title, rental_fee, sink).await
            }
            RentalCommand::RentBook { rental_id, payment_id, customer_id, now, terms, metadata } => {
                self.rent(rental_id, payment_id, customer_id, now, terms, metadata, services, sink).await
            }
            RentalCommand::CancelRental { rental_id, customer_id, now, terms } => {
                self.cancel(rental_id, &customer_id, now, terms, sink).await
            }
            RentalCommand::ReturnBook { rental_id, customer_id, now } => {
                self.return_book(rental_id, &customer_id, now, sink).await
            }
        }
    }

    fn apply(&mut self, event: RentalEvent) {
        match event {
            RentalEvent::BookShelved { book_id, title, rental_fee } => {
                *self =
                    Self::Available { book: ShelvedBook { book_id, title, rental_fee }, closed: ClosedRentals::new() };
            }
            RentalEvent::BookRented { rental_id, customer_id, fee, payment_id, rented_at, due_at, .. } => {
                if let Self::Available { book, closed } = std::mem::take(self) {
                    let rental = ActiveRental { rental_id, customer_id, payment_id, fee, rented_at, due_at };
                    *self = Self::Rented { book, rental, closed };
                }
            }
            RentalEvent::RentalCancelled { rental_id, .. } => self.close(rental_id, RentalStatus::Cancelled),
            RentalEvent::BookReturned { rental_id, .. } => self.close(rental_id, RentalStatus::Returned),
        }
    }
}

impl BookCopy {
    async fn put_on_shelf(
        &mut self,
        book_id: Uuid,
        title: String,
        rental_fee: Krw,
        sink: &EventSink<Self>,
    ) -> Result<(), RentalError> {
        if !matches!(self, Self::NotShelved) {
            return Ok(()); // the policy heard the same BookRegistered again: already on the shelf
        }
        sink.write(RentalEvent::BookShelved { book_id, title, rental_fee }, self).await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn rent(
        &mut self,
        rental_id: Uuid,
        payment_id: Uuid,
        customer_id: String,
        now: DateTime<Utc>,
        terms: RentalTerms,
        metadata: EventMetadata,
        services: &RentalServices,
        sink: &EventSink<Self>,
    ) -> Result<(), RentalError> {
        let book = match self {
            Self::NotShelved => return Err(RentalError::BookNotFound),
            // The same rental asked again (a retried request): it is already done.
            Self::Rented { rental, .. } if rental.rental_id == rental_id => return Ok(()),
            Self::Rented { closed, .. } | Self::Available { closed, .. } if closed.contains_key(&rental_id) => {
                return Ok(())
            }
            Self::Rented { .. } => return Err(RentalError::BookNotAvailable),
            Self::Available { book, .. } => book.clone(),
        };
        let request = PaymentRequest {
            payment_id,
            reference: PaymentReference { flow: FLOW.into(), kind: "rental".into(), id: rental_id },
            customer_id: customer_id.clone(),
            amount: book.rental_fee,
            metadata,
        };
        services.payments.authorize(request).await.map_err(|failure| match failure {
            PaymentFailure::Declined { reason } => RentalError::PaymentDeclined { reason },
            PaymentFailure::Unavailable { detail, retry_after } => {
                RentalError::PaymentUnavailable { detail, retry_after }
            }
        })?;
        let rented = RentalEvent::BookRented {
            rental_id,
            book_id: book.book_id,
            title: book.title,
            customer_id,
            fee: book.rental_fee,
            payment_id,
            rented_at: now,
            due_at: now + terms.rental_period,
        };
        sink.write(rented, self).await;
        Ok(())
    }

    async fn cancel(
        &mut self,
        rental_id: Uuid,
        customer_id: &str,
        now: DateTime<Utc>,
        terms: RentalTerms,
        sink: &EventSink<Self>,
    ) -> Result<(), RentalError> {
        let (book, rental) = self.active_rental(rental_id, customer_id, RentalStatus::Cancelled)?;
        if now > rental.rented_at + terms.cancel_window {
            return Err(RentalError::CancelWindowClosed);
        }
        let cancelled = RentalEvent::RentalCancelled {
            rental_id,
            book_id: book.book_id,
            customer_id: rental.customer_id,
            payment_id: rental.payment_id,
            fee: rental.fee,
            cancelled_at: now,
        };
        sink.write(cancelled, self).await;
        Ok(())
    }

    async fn return_book(
        &mut self,
        rental_id: Uuid,
        customer_id: &str,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), RentalError> {
        let (book, rental) = self.active_rental(rental_id, customer_id, RentalStatus::Returned)?;
        let returned = RentalEvent::BookReturned {
            rental_id,
            book_id: book.book_id,
            customer_id: rental.customer_id,
            returned_at: now,
            overdue: now > rental.due_at,
        };
        sink.write(returned, self).await;
        Ok(())
    }

    /// The current rental if it is `rental_id` and `customer_id` rented it; otherwise why not.
    fn active_rental(
        &self,
        rental_id: Uuid,
        customer_id: &str,
        to: RentalStatus,
    ) -> Result<(ShelvedBook, ActiveRental), RentalError> {
        let closed = match self {
            Self::NotShelved => return Err(RentalError::RentalNotFound),
            Self::Rented { book, rental, .. } if rental.rental_id == rental_id => {
                if rental.customer_id != customer_id {
                    return Err(RentalError::NotRenter);
                }
                return Ok((book.clone(), rental.clone()));
            }
            Self::Rented { closed, .. } | Self::Available { closed, .. } => closed,
        };
        match closed.get(&rental_id) {
            Some(&from) => Err(RentalError::InvalidTransition { from, to }),
            None => Err(RentalError::RentalNotFound),
        }
    }

    fn close(&mut self, rental_id: Uuid, status: RentalStatus) {
        if let Self::Rented { book, mut closed, .. } = std::mem::take(self) {
            closed.insert(rental_id, status);
            *self = Self::Available { book, closed };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::{TimeDelta, TimeZone};
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::payment::PaymentApproval;

    /// Payments that answer as scripted and remember what they were asked.
    struct ScriptedPayments {
        answer: Result<(), PaymentFailure>,
        requests: Mutex<Vec<PaymentRequest>>,
    }

    #[async_trait]
    impl Payments for ScriptedPayments {
        async fn authorize(&self, request: PaymentRequest) -> Result<PaymentApproval, PaymentFailure> {
            let payment_id = request.payment_id;
            self.requests.lock().unwrap().push(request);
            self.answer.clone().map(|()| PaymentApproval { payment_id })
        }
    }

    fn payments(answer: Result<(), PaymentFailure>) -> Arc<ScriptedPayments> {
        Arc::new(ScriptedPayments { answer, requests: Mutex::new(vec![]) })
    }

    fn services(payments: Arc<ScriptedPayments>) -> RentalServices {
        RentalServices { payments }
    }

    fn approving() -> RentalServices {
        services(payments(Ok(())))
    }

    const BOOK: Uuid = Uuid::from_u128(10);
    const RENTAL: Uuid = Uuid::from_u128(20);
    const PAYMENT: Uuid = Uuid::from_u128(30);

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
    }

    fn fee() -> Krw {
        Krw::positive("rental_fee", 1500).unwrap()
    }

    fn shelved() -> RentalEvent {
        RentalEvent::BookShelved { book_id: BOOK, title: "Dune".into(), rental_fee: fee() }
    }

    fn rented() -> RentalEvent {
        RentalEvent::BookRented {
            rental_id: RENTAL,
            book_id: BOOK,
            title: "Dune".into(),
            customer_id: "kim".into(),
            fee: fee(),
            payment_id: PAYMENT,
            rented_at: t0(),
            due_at: t0() + TimeDelta::days(14),
        }
    }

    fn returned_at(at: DateTime<Utc>, overdue: bool) -> RentalEvent {
        RentalEvent::BookReturned {
            rental_id: RENTAL,
            book_id: BOOK,
            customer_id: "kim".into(),
            returned_at: at,
            overdue,
        }
    }

    fn rent(customer: &str) -> RentalCommand {
        RentalCommand::RentBook {
            rental_id: RENTAL,
            payment_id: PAYMENT,
            customer_id: customer.into(),
            now: t0(),
            terms: RentalTerms::default(),
            metadata: EventMetadata { correlation_id: RENTAL.to_string(), ..EventMetadata::default() },
        }
    }

    /// Another customer's attempt, with a rental id of its own.
    fn rent_another(customer: &str) -> RentalCommand {
        let mut command = rent(customer);
        if let RentalCommand::RentBook { rental_id, payment_id, .. } = &mut command {
            *rental_id = Uuid::from_u128(21);
            *payment_id = Uuid::from_u128(31);
        }
        command
    }

    fn cancel(customer: &str, at: DateTime<Utc>) -> RentalCommand {
        RentalCommand::CancelRental {
            rental_id: RENTAL,
            customer_id: customer.into(),
            now: at,
            terms: RentalTerms::default(),
        }
    }

    fn return_book(customer: &str, at: DateTime<Utc>) -> RentalCommand {
        RentalCommand::ReturnBook { rental_id: RENTAL, customer_id: customer.into(), now: at }
    }

    #[tokio::test]
    async fn it_should_shelve_a_registered_book() {
        TestFramework::<BookCopy>::with(approving())
            .given_no_previous_events()
            .when_async(RentalCommand::PutOnShelf { book_id: BOOK, title: "Dune".into(), rental_fee: fee() })
            .await
            .then_expect_events(vec![shelved()]);
    }

    #[tokio::test]
    async fn it_should_not_shelve_a_book_twice_when_the_policy_hears_the_event_again() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved()])
            .when_async(RentalCommand::PutOnShelf { book_id: BOOK, title: "Dune".into(), rental_fee: fee() })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn it_should_rent_an_available_book_after_charging_its_fee() {
        let payments = payments(Ok(()));
        TestFramework::<BookCopy>::with(services(payments.clone()))
            .given(vec![shelved()])
            .when_async(rent("kim"))
            .await
            .then_expect_events(vec![rented()]);
        let requests = payments.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].amount, fee());
        assert_eq!(
            requests[0].reference,
            PaymentReference { flow: "book-rental".into(), kind: "rental".into(), id: RENTAL }
        );
        assert_eq!(requests[0].metadata.correlation_id, RENTAL.to_string());
    }

    #[tokio::test]
    async fn it_should_not_rent_a_book_that_is_not_on_the_shelf() {
        TestFramework::<BookCopy>::with(approving())
            .given_no_previous_events()
            .when_async(rent("kim"))
            .await
            .then_expect_error(RentalError::BookNotFound);
    }

    #[tokio::test]
    async fn it_should_not_rent_a_book_that_is_already_rented_nor_charge_for_it() {
        let payments = payments(Ok(()));
        TestFramework::<BookCopy>::with(services(payments.clone()))
            .given(vec![shelved(), rented()])
            .when_async(rent_another("lee"))
            .await
            .then_expect_error(RentalError::BookNotAvailable);
        assert!(payments.requests.lock().unwrap().is_empty(), "no charge for a book that cannot be rented");
    }

    #[tokio::test]
    async fn it_should_not_rent_when_the_payment_is_declined() {
        TestFramework::<BookCopy>::with(services(payments(Err(PaymentFailure::Declined {
            reason: "card expired".into(),
        }))))
        .given(vec![shelved()])
        .when_async(rent("kim"))
        .await
        .then_expect_error(RentalError::PaymentDeclined { reason: "card expired".into() });
    }

    #[tokio::test]
    async fn it_should_not_rent_when_the_payment_is_unavailable() {
        let unavailable = PaymentFailure::Unavailable { detail: "breaker open".into(), retry_after: None };
        TestFramework::<BookCopy>::with(services(payments(Err(unavailable))))
            .given(vec![shelved()])
            .when_async(rent("kim"))
            .await
            .then_expect_error(RentalError::PaymentUnavailable { detail: "breaker open".into(), retry_after: None });
    }

    #[tokio::test]
    async fn it_should_do_nothing_more_when_the_same_rental_is_asked_again() {
        let payments = payments(Ok(()));
        TestFramework::<BookCopy>::with(services(payments.clone()))
            .given(vec![shelved(), rented()])
            .when_async(rent("kim"))
            .await
            .then_expect_events(vec![]);
        assert!(payments.requests.lock().unwrap().is_empty(), "no second charge");
    }

    #[tokio::test]
    async fn it_should_rent_a_returned_book_again() {
        let second = rent_another("lee");
        let events = TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented(), returned_at(t0() + TimeDelta::days(2), false)])
            .when_async(second)
            .await
            .inspect_result()
            .expect("the copy is available again");
        assert!(matches!(&events[..], [RentalEvent::BookRented { customer_id, .. }] if customer_id == "lee"));
    }

    #[tokio::test]
    async fn it_should_cancel_a_rental_within_the_window() {
        let at = t0() + TimeDelta::hours(23);
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(cancel("kim", at))
            .await
            .then_expect_events(vec![RentalEvent::RentalCancelled {
                rental_id: RENTAL,
                book_id: BOOK,
                customer_id: "kim".into(),
                payment_id: PAYMENT,
                fee: fee(),
                cancelled_at: at,
            }]);
    }

    #[tokio::test]
    async fn it_should_not_cancel_a_rental_after_the_window() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(cancel("kim", t0() + TimeDelta::hours(24) + TimeDelta::seconds(1)))
            .await
            .then_expect_error(RentalError::CancelWindowClosed);
    }

    #[tokio::test]
    async fn it_should_not_cancel_a_rental_that_was_returned() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented(), returned_at(t0() + TimeDelta::hours(1), false)])
            .when_async(cancel("kim", t0() + TimeDelta::hours(2)))
            .await
            .then_expect_error(RentalError::InvalidTransition {
                from: RentalStatus::Returned,
                to: RentalStatus::Cancelled,
            });
    }

    #[tokio::test]
    async fn it_should_not_let_someone_else_cancel_the_rental() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(cancel("lee", t0() + TimeDelta::hours(1)))
            .await
            .then_expect_error(RentalError::NotRenter);
    }

    #[tokio::test]
    async fn it_should_return_a_book_on_time() {
        let at = t0() + TimeDelta::days(3);
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(return_book("kim", at))
            .await
            .then_expect_events(vec![returned_at(at, false)]);
    }

    #[tokio::test]
    async fn it_should_mark_a_late_return_as_overdue() {
        let at = t0() + TimeDelta::days(15);
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(return_book("kim", at))
            .await
            .then_expect_events(vec![returned_at(at, true)]);
    }

    #[tokio::test]
    async fn it_should_not_return_a_book_twice() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented(), returned_at(t0() + TimeDelta::days(1), false)])
            .when_async(return_book("kim", t0() + TimeDelta::days(2)))
            .await
            .then_expect_error(RentalError::InvalidTransition {
                from: RentalStatus::Returned,
                to: RentalStatus::Returned,
            });
    }

    #[tokio::test]
    async fn it_should_not_let_someone_else_return_the_book() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved(), rented()])
            .when_async(return_book("lee", t0() + TimeDelta::days(1)))
            .await
            .then_expect_error(RentalError::NotRenter);
    }

    #[tokio::test]
    async fn it_should_not_return_an_unknown_rental() {
        TestFramework::<BookCopy>::with(approving())
            .given(vec![shelved()])
            .when_async(return_book("kim", t0()))
            .await
            .then_expect_error(RentalError::RentalNotFound);
    }
}
