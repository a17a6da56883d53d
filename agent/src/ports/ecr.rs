//! Port traits for ecr; see the area module for how they are used.
