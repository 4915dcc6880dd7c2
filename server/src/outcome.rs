//! How an inference request ended: the `outcome` label of kubeinfer_inference_requests_total and the
//! prediction log's `outcome` column, one name for both.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The caller's mistake: bad tensors, a body over the limit.
    Invalid,
    /// Turned away for load: queue full, too many requests, the memory budget, shutdown, loading.
    Rejected,
    /// Waited past its timeout (queue, body, handler).
    Timeout,
    /// Refused for the latency target: it could not have been answered in time.
    Shed,
    /// The caller went away, or the request was cut off, before it was answered.
    Cancelled,
    /// The server's or the model's failure.
    Error,
}

impl Outcome {
    /// Every outcome, in declaration order, so that `outcome as usize` indexes arrays built from it.
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::Invalid,
        Outcome::Rejected,
        Outcome::Timeout,
        Outcome::Shed,
        Outcome::Cancelled,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Invalid => "invalid",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Shed => "shed",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_the_outcomes_in_declaration_order_so_they_index_by_discriminant() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{}", outcome.as_str());
        }
    }
}
