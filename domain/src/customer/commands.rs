//! Commands of the customer context.

/// What a signed-in customer asks of the customer context.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    /// Give my-page a profile and notifications a phone number. Once per customer.
    RegisterCustomer { customer_id: String, name: String, phone: Option<String> },
}
