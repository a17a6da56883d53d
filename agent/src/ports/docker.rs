//! Port traits for docker; see the area module for how they are used.
