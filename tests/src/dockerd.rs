//! placeholder
pub fn _placeholder() {}
