//! Every input the fuzzers kept (`fuzz/corpus/`) and every crash they found
//! (`fuzz/regressions/`, each fixed since), run through the fuzz targets' own code: CI
//! replays the fuzzing without nightly or libFuzzer.

use std::path::{Path, PathBuf};

// Its panic hook is libFuzzer's business only.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "{target}: a corpus to replay");
    inputs
}

fn replay(target: &str, run: fn(&[u8])) {
    for input in inputs(target) {
        let data = std::fs::read(&input).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{} fails again", input.display());
        }
    }
}

#[test]
fn wire_corpus() {
    replay("wire", targets::wire);
}

#[test]
fn sync_message_corpus() {
    replay("sync_message", targets::sync_message);
}

#[test]
fn record_corpus() {
    replay("record", targets::record);
}
