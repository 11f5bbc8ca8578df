//! Commands of the library context.

use uuid::Uuid;

use crate::shared::Krw;

#[derive(Debug, Clone, PartialEq)]
pub enum LibraryCommand {
    /// A book manager adds an e-book to the library at a rental fee.
    RegisterBook { book_id: Uuid, title: String, author: Option<String>, rental_fee: Krw },
}
