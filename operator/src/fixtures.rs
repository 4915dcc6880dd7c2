//! Placeholder until the mock API server tests are written.
