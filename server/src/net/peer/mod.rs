//! The peer transport: TCP links between the members of an ensemble.

pub mod codec;
