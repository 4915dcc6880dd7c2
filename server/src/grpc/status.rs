//! The server's errors as gRPC statuses: the code follows from the HTTP status `Error::status` gives,
//! and the message is the one REST sends, so that a client sees the same words either way. What REST
//! says in Retry-After goes as a `google.rpc.RetryInfo` detail (and as `retry-after` metadata).

use axum::http::StatusCode;
use prost::Message;
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
        let code = code(e.status());
        let Some(seconds) = public.retry_after else { return Status::new(code, message) };
        let mut status =
            Status::with_details(code, message.clone(), retry_details(code, message, seconds).into());
        // For clients that read metadata rather than details: seconds, as the HTTP header.
        if let Ok(value) = seconds.to_string().parse() {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

/// `grpc-status-details-bin`: a google.rpc.Status carrying one google.rpc.RetryInfo.
fn retry_details(code: Code, message: String, seconds: u32) -> Vec<u8> {
    let delay = RetryInfo { retry_delay: Some(ProtoDuration { seconds: i64::from(seconds), nanos: 0 }) };
    let any =
        Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: delay.encode_to_vec() };
    RpcStatus { code: code as i32, message, details: vec![any] }.encode_to_vec()
}

// The messages of google/rpc/status.proto, google/rpc/error_details.proto and protobuf's Any and
// Duration that a RetryInfo detail needs, by their field numbers.

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
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
        assert!(Status::from(Error::ModelNotFound("nope".into())).details().is_empty());
    }

    #[test]
    fn a_retry_after_goes_as_a_retry_info_detail_of_the_same_code_and_message() {
        let busy = Status::from(Error::Loading);
        let details = RpcStatus::decode(busy.details()).unwrap();
        assert_eq!(
            (details.code, details.message.as_str()),
            (14, "the models are still loading; retry shortly")
        );
        assert_eq!(details.details.len(), 1);
        assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay, Some(ProtoDuration { seconds: 5, nanos: 0 }));
    }
}
