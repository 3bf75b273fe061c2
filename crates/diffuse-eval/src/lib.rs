//! diffuse-eval: sample-quality metrics and pictures.

pub mod error;
pub mod field;
pub mod frechet;
pub mod grid;
pub mod linalg;
pub mod metrics;
pub mod plots;
pub mod scores;

pub use error::EvalError;
pub use metrics::sliced_wasserstein;
