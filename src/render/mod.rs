//! Rendering the routing state into proxy configuration: pure functions from a
//! [`crate::Snapshot`] to text.
