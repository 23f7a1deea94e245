//! The embedded sink: an append-only file of JSON lines (one record per line: topic, key,
//! headers, value). A write returns only after the data is on disk (`fsync`), the file-mode
//! analogue of Kafka's acks=all.

use super::error::SinkError;
use edgerec::records::Record;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// A records file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<tokio::fs::File>,
}

impl FileSink {
    /// Opens (creating) the file for appending.
    pub async fn open(path: &Path) -> Result<FileSink, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| SinkError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| SinkError::Unavailable(format!("{}: {e}", path.display())))?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends records as JSON lines (see [`json_line`]), durably. All or nothing per call: one write of the whole
    /// block, then fsync.
    pub async fn write(&self, records: &[Record]) -> Result<(), SinkError> {
        let mut block = Vec::new();
        for r in records {
            let headers = r.headers.iter().map(|(k, v)| (*k, v.as_str()));
            block.extend_from_slice(json_line(&r.topic, &r.key, headers, &r.value).as_bytes());
            block.push(b'\n');
        }
        let mut f = self.file.lock().await;
        let io =
            |e: std::io::Error| SinkError::Unavailable(format!("{}: {e}", self.path.display()));
        f.write_all(&block).await.map_err(io)?;
        f.flush().await.map_err(io)?;
        f.sync_data().await.map_err(io)?;
        Ok(())
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One record as a line of the records file: `{"topic", "key", "headers", "value"}`, the value
/// decoded from MessagePack to JSON (what `dump` also prints for records read from Kafka).
pub fn json_line<'a>(
    topic: &str,
    key: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    value: &[u8],
) -> String {
    // Via rmpv: MessagePack bins (dead letters keep the raw body) have no JSON counterpart in
    // serde_json's own Value, and become arrays of bytes this way.
    let value = rmp_serde::from_slice::<rmpv::Value>(value)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({"topic": topic, "key": key, "headers": headers, "value": value}).to_string()
}
