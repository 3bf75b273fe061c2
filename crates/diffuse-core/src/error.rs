//! Errors of the core crate: invalid schedules and sampler configurations.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CoreError {
    #[error("num_train_timesteps must be at least 1, got 0")]
    ZeroTimesteps,
    #[error("num_train_timesteps must be at most {max}, got {value}")]
    TooManyTimesteps { value: usize, max: usize },
    #[error(
        "{name} must be in (0, 1), got {value} (a beta of 1 leaves no signal: alphas_cumprod \
         becomes 0 and the x_0 estimate infinite)"
    )]
    InvalidBetaParameter { name: &'static str, value: f64 },
    #[error("beta_start ({start}) must not exceed beta_end ({end})")]
    BetaStartAfterEnd { start: f64, end: f64 },
    #[error(
        "beta at t = {t} is {value}, outside (0, 1) (a beta of 1 leaves no signal: \
         alphas_cumprod becomes 0 and the x_0 estimate infinite)"
    )]
    InvalidBeta { t: usize, value: f64 },
    #[error(
        "alphas_cumprod at t = {t} is {value:e}, which is {rounds} in float32: the samplers \
         {needs}, so sampling would give NaN or inf. {advice}",
        rounds = if *value >= 0.5 { "1" } else { "0 or subnormal" },
        needs = if *value >= 0.5 {
            "take its complement as the noise level (here 0)"
        } else {
            "divide by it"
        },
        advice = if *value >= 0.5 {
            "Raise beta_start (to at least 1e-7)"
        } else {
            "Lower beta_end (or beta_start), or use fewer num_train_timesteps"
        }
    )]
    AlphasCumprodInFloat32 { t: usize, value: f64 },
    #[error(
        "{requested} sampling steps requested but the model was trained with {train_steps}; \
         use at most {train_steps}"
    )]
    TooManySteps {
        requested: usize,
        train_steps: usize,
    },
    #[error("the number of sampling steps must be at least 1")]
    ZeroSteps,
    #[error("eta must be in [0, 1], got {0}")]
    InvalidEta(f64),
    #[error("clip_sample_range must be positive and finite, got {0}")]
    InvalidClipRange(f64),
    #[error(
        "steps_offset {offset} with {steps} steps over T = {train_steps} visits timestep {t}, \
         past the last one ({last}); lower steps_offset"
    )]
    TimestepOutOfRange {
        offset: usize,
        steps: usize,
        train_steps: usize,
        t: usize,
        last: usize,
    },
    #[error(
        "a learned-variance model outputs twice the channels of x ({expected}), got {got}; \
         check the model's output channels"
    )]
    LearnedVarianceShape { expected: usize, got: usize },
    #[error("invalid training objective: {0}")]
    InvalidObjective(String),
    #[error("the initial noise x_T holds NaN or inf values")]
    NonFiniteInput,
    #[error(
        "sampling produced NaN or inf at step {step} (t = {t}); nothing was written. The \
         model's weights or its config (schedule, prediction type) are likely at fault; \
         clip_sample bounds the x_0 estimate"
    )]
    NonFiniteSample { step: usize, t: usize },
    #[error("timestep {t} is not one of this sampler's timesteps")]
    UnknownTimestep { t: usize },
    #[error(
        "mean prediction is defined on the chain's own timesteps only; timestep {0} lies \
         between them (use --sampler ddpm or ddim for this model)"
    )]
    MeanPredictionOffChain(f64),
    #[error(
        "sampling produced NaN or inf at step {step} (sigma = {sigma}); nothing was written. \
         The model's weights or its config (schedule, prediction type) are likely at fault"
    )]
    NonFiniteAtSigma { step: usize, sigma: f64 },
    #[error("invalid solver setting: {0}")]
    InvalidSolver(String),
    #[error(
        "the network reads its time input as {network}, but this caller gives it {given}; a \
         discrete chain's samplers and bound give timesteps, an SDE's solvers continuous time"
    )]
    TimeInputMismatch {
        network: crate::level::TimeInput,
        given: crate::level::TimeInput,
    },
    #[error(
        "the adaptive ODE solver took more than {max} steps (step size {h:e} at sigma \
         {sigma}); loosen --rtol/--atol"
    )]
    OdeStepLimit { max: usize, h: f64, sigma: f64 },
}
