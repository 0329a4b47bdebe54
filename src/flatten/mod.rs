//! (in progress)
/// Placeholder error until the flattening lands.
#[derive(Debug, thiserror::Error)]
#[error("flatten")]
pub struct FlattenError;
