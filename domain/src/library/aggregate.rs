//! The `Book` aggregate of the library: one per registered e-book.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{LibraryCommand, LibraryError, LibraryEvent};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub enum Book {
    #[default]
    Unregistered,
    Registered {
        title: String,
    },
}

impl Aggregate for Book {
    const TYPE: &'static str = "library.book";
    type Command = LibraryCommand;
    type Event = LibraryEvent;
    type Error = LibraryError;
    type Services = ();

    async fn handle(&mut self, command: LibraryCommand, _: &(), sink: &EventSink<Self>) -> Result<(), LibraryError> {
        match command {
            LibraryCommand::RegisterBook { book_id, title, author, rental_fee } => {
                if let Self::Registered { .. } = self {
                    return Err(LibraryError::AlreadyRegistered);
                }
                sink.write(LibraryEvent::BookRegistered { book_id, title, author, rental_fee }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: LibraryEvent) {
        match event {
            LibraryEvent::BookRegistered { title, .. } => *self = Self::Registered { title },
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::shared::Krw;

    fn book_id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn registered() -> LibraryEvent {
        LibraryEvent::BookRegistered {
            book_id: book_id(),
            title: "Dune".into(),
            author: Some("Herbert".into()),
            rental_fee: Krw::positive("rental_fee", 1500).unwrap(),
        }
    }

    fn register() -> LibraryCommand {
        LibraryCommand::RegisterBook {
            book_id: book_id(),
            title: "Dune".into(),
            author: Some("Herbert".into()),
            rental_fee: Krw::positive("rental_fee", 1500).unwrap(),
        }
    }

    #[tokio::test]
    async fn it_should_register_a_book() {
        TestFramework::<Book>::with(())
            .given_no_previous_events()
            .when_async(register())
            .await
            .then_expect_events(vec![registered()]);
    }

    #[tokio::test]
    async fn it_should_not_register_the_same_book_twice() {
        TestFramework::<Book>::with(())
            .given(vec![registered()])
            .when_async(register())
            .await
            .then_expect_error(LibraryError::AlreadyRegistered);
    }

    #[test]
    fn it_should_refuse_a_fee_that_is_not_positive() {
        assert!(Krw::positive("rental_fee", 0).is_err());
        assert!(Krw::positive("rental_fee", -5).is_err());
    }
}
