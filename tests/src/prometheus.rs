//! Reading the Prometheus text format in tests.

/// The value of `series` (its name and labels exactly as exported, e.g. `kubeinfer_requests_total{model="digits"}`)
/// in the Prometheus text `metrics`; `None` when the series is absent. A prefix of a longer series never
/// matches.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        // "name value" or "name{labels} value": what follows the series must be the separator.
        rest.starts_with(' ').then(|| rest.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\na_total_sum 7.5\n\
                        b{model=\"digits\"} 2\nb{model=\"digits2\"} 9\n";

    #[test]
    fn a_series_is_read_by_its_exact_name_and_labels() {
        assert_eq!(sample(TEXT, "a_total"), Some(3.0));
        assert_eq!(sample(TEXT, "a_total_sum"), Some(7.5));
        assert_eq!(sample(TEXT, "b{model=\"digits2\"}"), Some(9.0));
    }

    #[test]
    fn an_absent_series_or_a_prefix_of_one_is_none() {
        assert_eq!(sample(TEXT, "c_total"), None);
        assert_eq!(sample(TEXT, "a_tot"), None);
        assert_eq!(sample(TEXT, "b{model=\"digit"), None);
    }
}
