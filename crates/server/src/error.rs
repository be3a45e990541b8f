//! The server's one error type: an [`ApiError`] from the model (or a store failure) answered
//! in the API's JSON shape. Handlers return `Result<Response, Error>` and use `?`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roost_model::{ApiError, ErrorKind};
use roost_store::StoreError;

use crate::http::json_response;

/// An error answered in the API's JSON shape, with a fresh `instance`.
#[derive(Debug, Clone)]
pub struct Error(pub ApiError);

impl Error {
    /// A store failure: logged with its cause (never echoed to the client), answered 503.
    pub fn store(e: &StoreError) -> Error {
        tracing::error!(error = %e, "store failure");
        Error(ApiError::service_unavailable())
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::store(&e)
    }
}

impl std::ops::Deref for Error {
    type Target = ApiError;
    fn deref(&self) -> &ApiError {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP status that answers each kind of error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Blocked => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let e = self.0;
        let instance = uuid::Uuid::new_v4().to_string();
        let mut resp = json_response(status_of(e.kind), &e.to_json(&instance));
        let h = resp.headers_mut();
        match e.kind {
            ErrorKind::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorKind::Blocked => {
                if let Some(v) = e.details.get("retry_after").and_then(|s| HeaderValue::from_str(s).ok()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            ErrorKind::MethodNotAllowed => {
                // Only the data API answers 405; these are its methods.
                h.insert(header::ALLOW, HeaderValue::from_static("GET, PUT, PATCH"));
            }
            _ => {}
        }
        resp
    }
}
