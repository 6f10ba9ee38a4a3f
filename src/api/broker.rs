//! [`Broker`]: the broker as a handler reaches it, scoped to the request.
//!
//! Handlers take a `Broker` parameter (never the bare [`BrokerHandle`], which is not even
//! registered as app data): its calls carry the request's cause, and record the newest
//! change the request could have seen, which [`super::middleware::envelope`] waits to be
//! committed before the answer goes out. So no handler can answer from a change that
//! could still be lost, and none needs to remember to wait.

use std::future::{Ready, ready};
use std::ops::Deref;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::error::ApiError;
use crate::runtime::{BrokerHandle, RequestScope};

/// The service's broker handle, as registered app data. Only [`Broker`] and the
/// envelope read it.
pub struct Registered(pub(crate) BrokerHandle);

impl Registered {
    /// App data for `handle`, to register with `.app_data(..)`.
    pub fn data(handle: BrokerHandle) -> Data<Registered> {
        Data::new(Registered(handle))
    }
}

/// See the [module documentation](self).
pub struct Broker(BrokerHandle);

impl Deref for Broker {
    type Target = BrokerHandle;

    fn deref(&self) -> &BrokerHandle {
        &self.0
    }
}

impl FromRequest for Broker {
    type Error = ApiError;
    type Future = Ready<Result<Broker, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let registered = req.app_data::<Data<Registered>>();
        let scope = req.extensions().get::<Arc<RequestScope>>().cloned();
        ready(match (registered, scope) {
            (Some(registered), Some(scope)) => Ok(Broker(registered.0.scoped(scope))),
            // A route mounted outside the app's envelope: a programming error, refused
            // rather than answered unscoped (it would not wait for its commit).
            _ => Err(ApiError::Internal(
                "the request reached a handler without its scope".to_owned(),
            )),
        })
    }
}
