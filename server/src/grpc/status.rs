//! The server's errors as gRPC statuses: the code follows from the HTTP status `Error::status` gives,
//! and the message is the one REST sends, so that a client sees the same words either way.

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::error::Error;

pub fn code(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let public = e.public();
        let message = match &public.request_id {
            Some(id) => format!("{} (request_id {id})", public.message),
            None => public.message,
        };
        let mut status = Status::new(code(e.status()), message);
        // gRPC has no Retry-After; clients that back off read this (seconds, as the HTTP header).
        if let Some(seconds) = public.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_gets_the_code_of_its_http_status_and_the_rest_message() {
        let status =
            Status::from(Error::BadRequest("input 'x': has 1 elements but its shape needs 3".into()));
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "input 'x': has 1 elements but its shape needs 3")
        );
        assert_eq!(Status::from(Error::ModelNotFound("nope".into())).message(), "unknown model 'nope'");
        assert_eq!(Status::from(Error::ModelNotFound("nope".into())).code(), Code::NotFound);
        assert_eq!(Status::from(Error::MissingApiKey).code(), Code::Unauthenticated);
        let busy = Status::from(Error::Loading);
        assert_eq!(
            (busy.code(), busy.metadata().get("retry-after").map(|v| v.to_str().unwrap())),
            (Code::Unavailable, Some("5"))
        );
    }
}
