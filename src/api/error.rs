//! An error as the client sees it: user errors are 400 with a message
//! naming the parameter; internal ones are 500 and logged.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ops;

/// An error as the client sees it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn bad(param: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("parameter {param}: {why}"),
        }
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api: internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error (logged)".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(ops::RETRY_AFTER_S),
            );
        }
        r
    }
}
