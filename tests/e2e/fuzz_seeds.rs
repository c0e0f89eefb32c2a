//! The fuzz targets' checks (`fuzz/checks/`) on every seed committed in `fuzz/seeds/<target>/`,
//! as plain tests: what fuzzing found and was committed stays checked on every run, without
//! building libFuzzer. `bash .ci/fuzz` explores beyond the seeds.

#[path = "../../fuzz/checks/durations.rs"]
mod durations;
#[path = "../../fuzz/checks/rest_bodies.rs"]
mod rest_bodies;
#[path = "../../fuzz/checks/send_fields.rs"]
mod send_fields;
#[path = "../../fuzz/checks/ws_frame.rs"]
mod ws_frame;

use std::path::Path;

/// Runs `check` on each file of `fuzz/seeds/<target>/`; a failed check names the seed.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap();
        if let Err(payload) = std::panic::catch_unwind(|| check(&data)) {
            let message = crate::harness::panic_message(&*payload);
            panic!("{target}: seed {} fails: {message}", seed.display());
        }
    }
}

fn the_ws_frame_checks_hold_on_every_seed() {
    replay("ws_frame", ws_frame::check);
}

fn the_rest_bodies_checks_hold_on_every_seed() {
    replay("rest_bodies", rest_bodies::check);
}

fn the_durations_checks_hold_on_every_seed() {
    replay("durations", durations::check);
}

crate::trials! {
    both: [],
    tests: [],
    sync: [
        the_ws_frame_checks_hold_on_every_seed,
        the_rest_bodies_checks_hold_on_every_seed,
        the_durations_checks_hold_on_every_seed,
    ],
}
