//! Adapter for the ecr ports.
