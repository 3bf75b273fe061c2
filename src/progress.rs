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
