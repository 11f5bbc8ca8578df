//! payment (generic): `AuthorizePayment → Payment → PaymentApproved`, `RefundPayment →
//! PaymentRefunded → payments, rental_status, my_page`.
//!
//! A core context calls the payment context synchronously through the [`Payments`] port while it
//! handles its own command; the payment context calls the external provider through
//! [`PaymentProvider`]. Refunds are issued by policies.

pub mod aggregate;
pub mod commands;
pub mod errors;
pub mod events;
pub mod external;
pub mod policies;

pub use aggregate::{Payment, PaymentServices};
pub use commands::PaymentCommand;
pub use errors::PaymentError;
pub use events::{PaymentEvent, PaymentReference};
pub use external::{
    Authorization, AuthorizationRequest, PaymentApproval, PaymentFailure, PaymentProvider, PaymentRequest, Payments,
    ProviderFailure, RefundConfirmation, RefundRequest,
};
