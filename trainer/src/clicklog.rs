//! Click logs on disk: tab-separated, a header naming `SessionId`, `ItemId` and `Time` (Unix
//! seconds, fractional allowed), rows of one session together (as the RecSys/session-rec
//! files are). Streams: one session in memory at a time, whatever the file size.
//!
//! A malformed row is skipped and counted with its line number and field; the good rows
//! around it are kept.

use std::io::BufRead;

/// Why a click log could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ClickLogError {
    /// Reading failed.
    #[error("reading click log: {0}")]
    Io(#[from] std::io::Error),
    /// The header lacks a column.
    #[error("click log header must name SessionId, ItemId and Time (tab-separated); missing {0}")]
    Header(&'static str),
}

/// One skipped row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number.
    pub line: u64,
    /// The offending column.
    pub field: &'static str,
}

/// What a pass over a log saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Rows taken.
    pub rows: u64,
    /// Sessions handed on.
    pub sessions: u64,
    /// Rows skipped (count).
    pub bad_rows: u64,
    /// The first few skipped rows, for the report.
    pub first_bad: Vec<BadRow>,
}

/// A session: its id and its (item, time ms) clicks in time order.
pub struct Session {
    /// Session id as written.
    pub id: String,
    /// Clicks, time order (stable for equal times).
    pub clicks: Vec<(String, u64)>,
}

/// Reads a log, calling `each` once per session (rows grouped by consecutive session id).
pub fn read_sessions(
    input: impl BufRead,
    mut each: impl FnMut(Session),
) -> Result<LogStats, ClickLogError> {
    let mut lines = input.lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    let cols: Vec<&str> = header.trim_end_matches('\r').split('\t').collect();
    let col = |name: &'static str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or(ClickLogError::Header(name))
    };
    let (cs, ci, ct) = (col("SessionId")?, col("ItemId")?, col("Time")?);
    let mut stats = LogStats::default();
    let mut cur: Option<Session> = None;
    let mut flush = |s: Option<Session>, stats: &mut LogStats| {
        if let Some(mut s) = s {
            s.clicks.sort_by_key(|c| c.1);
            stats.sessions += 1;
            each(s);
        }
    };
    for (n, line) in lines.enumerate() {
        let line = line?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let lineno = n as u64 + 2;
        let bad = |field| BadRow {
            line: lineno,
            field,
        };
        let parsed = (|| {
            let sid = f
                .get(cs)
                .filter(|s| !s.is_empty())
                .ok_or(bad("SessionId"))?;
            let item = f
                .get(ci)
                .filter(|s| edgerec::event::check_id(s).is_ok())
                .ok_or(bad("ItemId"))?;
            let secs: f64 = f
                .get(ct)
                .and_then(|t| t.parse().ok())
                .filter(|t: &f64| t.is_finite() && *t >= 0.0 && *t < 1e11)
                .ok_or(bad("Time"))?;
            Ok::<_, BadRow>((*sid, *item, (secs * 1000.0).round() as u64))
        })();
        match parsed {
            Ok((sid, item, ms)) => {
                stats.rows += 1;
                if cur.as_ref().is_none_or(|s| s.id != sid) {
                    flush(cur.take(), &mut stats);
                    cur = Some(Session {
                        id: sid.to_string(),
                        clicks: Vec::new(),
                    });
                }
                if let Some(s) = cur.as_mut() {
                    s.clicks.push((item.to_string(), ms));
                }
            }
            Err(b) => {
                stats.bad_rows += 1;
                if stats.first_bad.len() < 10 {
                    stats.first_bad.push(b);
                }
            }
        }
    }
    flush(cur.take(), &mut stats);
    Ok(stats)
}

/// Trains a model on click logs, in order; each log's stats (for the caller to report).
pub fn train(
    cfg: &crate::model::ModelConfig,
    logs: &[std::path::PathBuf],
) -> Result<(crate::model::Model, Vec<LogStats>), ClickLogError> {
    let mut m = crate::model::Model::new();
    let mut stats = Vec::new();
    for log in logs {
        let file = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(log)?);
        stats.push(read_sessions(file, |s| m.observe_session(cfg, &s.clicks))?);
    }
    Ok((m, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sorts_and_counts_bad_rows() {
        let log = "SessionId\tItemId\tTime\n1\tb\t2.5\n1\ta\t1\n2\tc\tx\n2\t\t3\n2\td\t4\n";
        let mut got = Vec::new();
        let st = read_sessions(log.as_bytes(), |s| got.push((s.id, s.clicks))).unwrap();
        assert_eq!(
            got,
            vec![
                ("1".into(), vec![("a".into(), 1000), ("b".into(), 2500)]),
                ("2".into(), vec![("d".into(), 4000)])
            ]
        );
        assert_eq!((st.rows, st.sessions, st.bad_rows), (3, 2, 2));
        assert_eq!(
            st.first_bad[0],
            BadRow {
                line: 4,
                field: "Time"
            }
        );
        assert_eq!(
            st.first_bad[1],
            BadRow {
                line: 5,
                field: "ItemId"
            }
        );
    }

    #[test]
    fn header_must_name_columns() {
        let err = read_sessions("a\tb\n".as_bytes(), |_| {}).unwrap_err();
        assert!(err.to_string().contains("SessionId"));
    }
}
