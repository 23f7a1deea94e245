//! The trainer's `records` mode — what `make dev` runs — against a records file written by the
//! collector's real file sink: every complete line applied once, a line still being written
//! left for the next round, a restart resuming at the saved byte offset, a batch written twice
//! counted once, a truncated file read again from its start.

use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::event::EventKind;
use edgerec::records::from_batch;
use edgerec_collector::sink::FileSink;
use edgerec_trainer::model::ModelConfig;
use edgerec_trainer::run::Trainer;
use edgerec_trainer::state::StateDir;
use std::io::Write;
use std::path::Path;

fn batch(id: &str, views: &[(&str, u64)], transitions: &[(&str, &str)]) -> AggregateBatch {
    let mut d = AggregateDelta::default();
    for &(item, n) in views {
        for _ in 0..n {
            d.count_event(item, EventKind::View);
        }
    }
    for &(a, b) in transitions {
        d.count_transition(a, b);
    }
    AggregateBatch::new(id, "edge", 1_764_201_600_000, d)
}

/// Appends a batch's records as the collector does (the same sink code, fsynced).
fn collect(file: &Path, b: &AggregateBatch) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = FileSink::open(file).await.unwrap();
        let recs = from_batch(b, "edgerec");
        sink.write(&recs).await.unwrap();
        recs.len()
    })
}

fn open(state: &Path, out: &Path) -> Trainer {
    Trainer::open(
        ModelConfig::default(),
        "edgerec",
        StateDir::new(state, "t1"),
        None,
        out,
        None,
    )
    .unwrap()
}

#[test]
fn records_mode_reads_each_line_once_across_partial_lines_restarts_copies_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (file, state, out) = (
        dir.path().join("records.jsonl"),
        dir.path().join("state"),
        dir.path().join("out"),
    );
    std::fs::create_dir_all(&state).unwrap();
    let b1 = batch("b1", &[("a", 3), ("b", 1)], &[("a", "b")]);
    // a: views 3, b: views 1, a→b: 1 → three records.
    assert_eq!(collect(&file, &b1), 3);
    let mut t = open(&state, &out);
    assert_eq!(t.read_records_file(&file).unwrap(), 3);
    assert_eq!(t.stats.applied, 3);
    assert_eq!(t.stats.totals["views"], 4);
    assert_eq!(t.stats.totals["transitions"], 1);
    // A line the collector is still writing (no newline yet) waits for the next round.
    let len_before = std::fs::metadata(&file).unwrap().len();
    let tail = {
        let rt_file = dir.path().join("tail.jsonl");
        collect(&rt_file, &batch("b2", &[("c", 2)], &[]));
        std::fs::read(&rt_file).unwrap()
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&tail[..tail.len() - 1]).unwrap();
    f.flush().unwrap();
    assert_eq!(
        t.read_records_file(&file).unwrap(),
        0,
        "half a line is not read"
    );
    assert_eq!(t.position(&format!("file:{}", file.display())), len_before);
    f.write_all(b"\n").unwrap();
    assert_eq!(t.read_records_file(&file).unwrap(), 1);
    assert_eq!(t.stats.totals["views"], 6);
    t.publish().unwrap();
    // A restart (new process, same state directory) resumes at the saved offset.
    let mut t = open(&state, &out);
    assert_eq!(t.read_records_file(&file).unwrap(), 0, "nothing new");
    assert_eq!(t.stats.applied, 0);
    // The same batch written again (two collectors after a lost answer): counted once.
    collect(&file, &b1);
    collect(&file, &batch("b3", &[("a", 1)], &[]));
    assert_eq!(t.read_records_file(&file).unwrap(), 4);
    assert_eq!((t.stats.copies, t.stats.applied), (3, 1));
    assert_eq!(t.stats.totals["views"], 1);
    t.publish().unwrap();
    // The file replaced by a shorter one (rotated): read from its beginning.
    std::fs::remove_file(&file).unwrap();
    collect(&file, &batch("b4", &[("d", 5)], &[]));
    let mut t = open(&state, &out);
    assert_eq!(t.read_records_file(&file).unwrap(), 1);
    assert_eq!((t.stats.applied, t.stats.totals["views"]), (1, 5));
}
