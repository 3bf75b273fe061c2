#![no_main]
// A checkpoint's state.json (what `train --resume` reads): parsed and checked as resume does,
// then, where the importance history passes its check, used as training would use it: its
// distribution over t must be a finite one that sums to 1, and drawing from it and updating it
// must not panic.
use diffuse_core::discrete::importance::ImportanceSampler;
use diffuse_train::checkpoint::read_state;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("state.json", data);
    let Ok(state) = read_state(&path) else {
        return;
    };
    let _ = state.rng.restore();
    // DDPM's state: its importance history.
    let Some(Ok(mut sampler)) = state.objective.map(serde_json::from_value::<ImportanceSampler>)
    else {
        return;
    };
    let t = sampler.probabilities().len();
    if t == 0 || t > 100_000 || sampler.check(t).is_err() {
        return;
    }
    let p = sampler.probabilities();
    let total: f64 = p.iter().sum();
    assert!(
        p.iter().all(|v| v.is_finite() && *v >= 0.0) && (total - 1.0).abs() < 1e-6,
        "a checked history gives p_t that are not a distribution (sum {total})"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (ts, weights) = sampler.sample(&mut rng, 8);
    assert!(ts.iter().all(|&i| i < t) && weights.iter().all(|w| w.is_finite()));
    sampler.update(&ts, &[1.0; 8]);
});
