//! Policies of the rental context: whenever the library registers a book, shelve it.

use crate::library::LibraryEvent;
use crate::rental::RentalCommand;

/// Whenever `BookRegistered`, then `PutOnShelf` on that book's copy.
pub fn shelve_registered_book(event: &LibraryEvent) -> RentalCommand {
    match event {
        LibraryEvent::BookRegistered { book_id, title, rental_fee, .. } => {
            RentalCommand::PutOnShelf { book_id: *book_id, title: title.clone(), rental_fee: *rental_fee }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::shared::Krw;

    #[test]
    fn it_should_shelve_every_registered_book_at_its_fee() {
        let fee = Krw::positive("rental_fee", 1200).unwrap();
        let registered = LibraryEvent::BookRegistered {
            book_id: Uuid::from_u128(3),
            title: "Dune".into(),
            author: None,
            rental_fee: fee,
        };
        assert_eq!(
            shelve_registered_book(&registered),
            RentalCommand::PutOnShelf { book_id: Uuid::from_u128(3), title: "Dune".into(), rental_fee: fee }
        );
    }
}
