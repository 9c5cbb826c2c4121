//! Placeholder replaced by the TLS tests.
