//! customer (supporting): `RegisterCustomer → Customer → CustomerRegistered → my_page profile`.

pub mod aggregate;
pub mod commands;
pub mod errors;
pub mod events;

pub use aggregate::Customer;
pub use commands::CustomerCommand;
pub use errors::CustomerError;
pub use events::CustomerEvent;
