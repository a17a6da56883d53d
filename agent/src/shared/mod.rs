//! Values and helpers shared by several areas, below the ports and the cores:
//! nothing here knows about a command, a port or an adapter.

pub mod atomic_file;
pub mod reference;
