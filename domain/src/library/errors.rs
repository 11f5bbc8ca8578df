//! Why the library refuses a command.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error("the book is already registered")]
    AlreadyRegistered,
}

impl LibraryError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyRegistered => "book-already-registered",
        }
    }
}
