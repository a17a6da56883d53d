//! Port traits for secrets; see the area module for how they are used.
