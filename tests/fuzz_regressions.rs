//! Replays every input kept in fuzz/regressions/<target>/ (past fuzz findings and
//! interesting corpus entries) through the same entry point its cargo-fuzz target calls
//! (fuzz/src/entry.rs, included here by path), so CI on stable Rust keeps exercising
//! them without libFuzzer. An input that panics fails the test with its file name.

#[path = "../fuzz/src/entry.rs"]
mod entry;

use std::path::Path;

#[test]
fn fuzz_regressions_replay_through_their_entry_points() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let targets: [(&str, fn(&[u8])); 4] =
        [("packet", entry::packet), ("flow_key", entry::flow_key), ("manifest", entry::manifest), ("probes", entry::probes)];
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, run) in targets {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "fuzz regressions that panic again: {failures:?}");
    assert!(replayed > 0, "no regression inputs found under {}", root.display());
}
