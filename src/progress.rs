//! Progress bars (hidden automatically when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    let template = format!(
        "{what} {{bar:30}} {{pos}}/{{len}} {{msg}} [{{per_sec}}, {{elapsed_precise}} elapsed, ETA {{eta}}]"
    );
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    pb
}

/// Moves a training bar to `step`, showing the loss every `every` steps (and at step 1).
pub fn training_step(pb: &ProgressBar, step: usize, loss: f32, every: usize) {
    pb.set_position(step as u64);
    if step.is_multiple_of(every) || step == 1 {
        pb.set_message(format!("loss {loss:.4}"));
    }
}

/// A counter without a known end (an adaptive solver's network evaluations).
pub fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    let template = format!("{what} {{spinner}} {{pos}} [{{per_sec}}, {{elapsed_precise}} elapsed]");
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    pb
}
