//! Adapter for the secrets ports.
