//! The one place where a test decides between skipping and failing when something it drives is missing.
//!
//! Run by hand, a test without its nginx, virtualenv or cluster notes what is missing and passes. Under
//! `make test` (which sets `KUBEINFER_REQUIRE_ALL=1`) nothing may pass by skipping: the same gap fails the
//! test with the same explanation of how to provide what is missing.

/// Whether the caller insists that every test really runs (`make test`, `.ci/run`).
pub fn required() -> bool {
    std::env::var_os("KUBEINFER_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports that `what` is missing: panics with `how` when everything is required, else prints a note
/// and lets the caller return early.
pub fn missing(what: &str, how: &str) {
    match verdict(required(), what, how) {
        Ok(note) => eprintln!("{note}"),
        Err(failure) => panic!("{failure}"),
    }
}

fn verdict(required: bool, what: &str, how: &str) -> Result<String, String> {
    if required {
        Err(format!("{what}: {how} (KUBEINFER_REQUIRE_ALL is set, so this test may not skip)"))
    } else {
        Ok(format!("skipped: {what}; {how}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_part_fails_the_run_when_everything_is_required() {
        assert_eq!(
            verdict(true, "no nginx", "run scripts/test-deps.sh"),
            Err("no nginx: run scripts/test-deps.sh (KUBEINFER_REQUIRE_ALL is set, so this test may not skip)"
                .to_string())
        );
    }

    #[test]
    fn a_missing_part_is_a_noted_skip_when_run_by_hand() {
        assert_eq!(
            verdict(false, "no nginx", "run scripts/test-deps.sh"),
            Ok("skipped: no nginx; run scripts/test-deps.sh".to_string())
        );
    }
}
