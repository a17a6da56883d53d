//! Adapter for the docker ports.
