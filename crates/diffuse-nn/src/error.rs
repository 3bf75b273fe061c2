use thiserror::Error;

#[derive(Debug, Error)]
pub enum NnError {
    #[error("model config field `{field}` must be at least 1")]
    ZeroSize { field: &'static str },
}
