//! Body and query extractors whose rejection waits for the handler.
//!
//! A handler checks the caller's permission ([`super::auth::Caller::require`]) before it looks
//! at what the caller sent, so a caller without the permission is answered 403 (and the
//! refusal recorded) even when the body or query is also malformed, never 400 about a request
//! they may not make. axum rejects a request before the handler runs when an extractor fails;
//! [`ApiJson`] and [`ApiQuery`] never fail, they hold the parsed value or the rejection
//! already mapped to an [`ApiError`] (by `error.rs`), and the handler unpacks them with
//! [`ApiJson::parsed`] / [`ApiQuery::parsed`] after `require`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body, or why it could not be read (unpacked after the permission check).
#[derive(Debug)]
pub struct ApiJson<T>(Result<T, ApiError>);

impl<T> ApiJson<T> {
    /// The body.
    ///
    /// # Errors
    /// axum's JSON rejection in our shape: 400 naming the bad field, 413, 415.
    pub fn parsed(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Json::<T>::from_request(req, state).await;
        Ok(Self(body.map(|Json(t)| t).map_err(ApiError::from)))
    }
}

/// A query string, or why it could not be read (unpacked after the permission check).
#[derive(Debug)]
pub struct ApiQuery<T>(Result<T, ApiError>);

impl<T> ApiQuery<T> {
    /// The query.
    ///
    /// # Errors
    /// axum's query rejection in our shape: 400 naming the bad parameter.
    pub fn parsed(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = Query::<T>::from_request_parts(parts, state).await;
        Ok(Self(query.map(|Query(t)| t).map_err(ApiError::from)))
    }
}
