//! The `Customer` aggregate: one per customer id (the JWT `sub`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{CustomerCommand, CustomerError, CustomerEvent};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub enum Customer {
    #[default]
    Unknown,
    Registered {
        customer_id: String,
        name: String,
        phone: Option<String>,
    },
}

impl Aggregate for Customer {
    const TYPE: &'static str = "customer.customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    type Services = ();

    async fn handle(&mut self, command: CustomerCommand, _: &(), sink: &EventSink<Self>) -> Result<(), CustomerError> {
        match command {
            CustomerCommand::RegisterCustomer { customer_id, name, phone } => {
                if let Self::Registered { .. } = self {
                    return Err(CustomerError::AlreadyRegistered);
                }
                sink.write(CustomerEvent::CustomerRegistered { customer_id, name, phone }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: CustomerEvent) {
        match event {
            CustomerEvent::CustomerRegistered { customer_id, name, phone } => {
                *self = Self::Registered { customer_id, name, phone };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn register() -> CustomerCommand {
        CustomerCommand::RegisterCustomer {
            customer_id: "c-1".into(),
            name: "Kim".into(),
            phone: Some("010-1234".into()),
        }
    }

    fn registered() -> CustomerEvent {
        CustomerEvent::CustomerRegistered {
            customer_id: "c-1".into(),
            name: "Kim".into(),
            phone: Some("010-1234".into()),
        }
    }

    #[tokio::test]
    async fn it_should_register_a_new_customer() {
        TestFramework::<Customer>::with(())
            .given_no_previous_events()
            .when_async(register())
            .await
            .then_expect_events(vec![registered()]);
    }

    #[tokio::test]
    async fn it_should_not_register_a_customer_twice() {
        TestFramework::<Customer>::with(())
            .given(vec![registered()])
            .when_async(register())
            .await
            .then_expect_error(CustomerError::AlreadyRegistered);
    }
}
