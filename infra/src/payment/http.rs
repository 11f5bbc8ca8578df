//! The `http` payment provider: the provider contract of API.md over HTTP.
//!
//! `POST {base}/v1/authorizations` and `POST {base}/v1/authorizations/{id}/refunds`, each with an
//! idempotency key, so that a retried call never charges or refunds twice. Any answer but a 200
//! with the documented body is a provider failure.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use storming_domain::payment::{
    Authorization, AuthorizationRequest, PaymentProvider, ProviderFailure, RefundConfirmation, RefundRequest,
};

pub struct HttpProvider {
    client: reqwest::Client,
    base_url: String,
}

#[derive(Serialize)]
struct AuthorizationBody<'a> {
    idempotency_key: &'a str,
    amount: i64,
    currency: &'static str,
    reference: &'a str,
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum AuthorizationAnswer {
    Approved {
        authorization_id: String,
    },
    Declined {
        #[serde(default)]
        reason: String,
    },
}

#[derive(Serialize)]
struct RefundBody<'a> {
    idempotency_key: &'a str,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum RefundAnswer {
    Refunded { refund_id: String },
}

impl HttpProvider {
    /// A client for the provider at `base_url`; `timeout` bounds each call end to end.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()?;
        Ok(Self { client, base_url: base_url.trim_end_matches('/').to_string() })
    }

    async fn post<B: Serialize, A: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, ProviderFailure> {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(body)
            .send()
            .await
            .map_err(|error| ProviderFailure::new(format!("could not reach the provider: {error}")))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(ProviderFailure::new(format!("the provider answered {status}")));
        }
        response
            .json::<A>()
            .await
            .map_err(|error| ProviderFailure::new(format!("the provider's answer is not understood: {error}")))
    }
}

#[async_trait]
impl PaymentProvider for HttpProvider {
    async fn authorize(&self, request: &AuthorizationRequest) -> Result<Authorization, ProviderFailure> {
        let body = AuthorizationBody {
            idempotency_key: &request.idempotency_key,
            amount: request.amount.amount(),
            currency: "KRW",
            reference: &request.reference,
        };
        Ok(match self.post::<_, AuthorizationAnswer>("/v1/authorizations", &body).await? {
            AuthorizationAnswer::Approved { authorization_id } => Authorization::Approved { authorization_id },
            AuthorizationAnswer::Declined { reason } => Authorization::Declined { reason },
        })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundConfirmation, ProviderFailure> {
        let body = RefundBody { idempotency_key: &request.idempotency_key, amount: request.amount.amount() };
        let path = format!("/v1/authorizations/{}/refunds", request.authorization_id);
        let RefundAnswer::Refunded { refund_id } = self.post(&path, &body).await?;
        Ok(RefundConfirmation { refund_id })
    }
}
