//! Golden scenario transcripts (`sim/testdata/*.txt`, see `corral_sim::script`):
//! each file's commands run against a scripted world and must print exactly
//! the output recorded under them. `REWRITE=1 cargo test -p corral-sim --test
//! golden` records the current output instead (review the diff before
//! committing it).

use std::path::Path;

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("sim/testdata").map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|e| e == "txt")).collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    let mut failed = Vec::new();
    for file in files {
        let want = std::fs::read_to_string(&file).expect("readable transcript");
        let got = corral_sim::run_script(&want);
        if rewrite {
            std::fs::write(&file, &got).expect("writable transcript");
        } else if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .enumerate()
                .filter(|(_, (w, g))| w != g)
                .take(8)
                .map(|(n, (w, g))| format!("  line {}:\n    want: {w}\n    got:  {g}", n + 1))
                .collect();
            let lengths = if want.lines().count() != got.lines().count() { format!(" ({} lines expected, {} got)", want.lines().count(), got.lines().count()) } else { String::new() };
            failed.push(format!("{}{lengths}:\n{}", file.display(), diff.join("\n")));
        }
    }
    assert!(failed.is_empty(), "transcripts differ (REWRITE=1 to record the new output):\n{}", failed.join("\n"));
}
