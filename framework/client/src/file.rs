//! File contents that may be large: kept in memory up to [`IN_MEMORY_MAX`], written to a
//! temporary file (deleted when the last copy is dropped) above it, so that bridging a 50 MiB
//! file costs a few buffers of memory, not 50 MiB.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// Files up to this many bytes stay in memory; larger ones go to a temporary file.
pub const IN_MEMORY_MAX: usize = 1024 * 1024;

/// A file's content, in memory or in a temporary file. Cloning shares it.
#[derive(Clone, Debug)]
pub struct FileData {
    content: Content,
    len: u64,
    sha256: [u8; 32],
}

#[derive(Clone, Debug)]
enum Content {
    Memory(Bytes),
    Disk(Arc<tempfile::TempPath>),
}

/// Two files are equal when their contents are (compared by length and SHA-256).
impl PartialEq for FileData {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.sha256 == other.sha256
    }
}

impl Eq for FileData {}

impl From<Bytes> for FileData {
    fn from(bytes: Bytes) -> Self {
        Self {
            len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            sha256: sha2::Sha256::digest(&bytes).into(),
            content: Content::Memory(bytes),
        }
    }
}

impl From<Vec<u8>> for FileData {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<&'static [u8]> for FileData {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

/// A file could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// It is larger than the limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Reading it, or writing the temporary file, failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FileData {
    /// Its size in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its SHA-256, as lower-case hex.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().fold(String::new(), |mut out, b| {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// The whole content in memory (for bridges whose network takes a file in one piece).
    ///
    /// # Errors
    /// When the temporary file cannot be read.
    pub async fn bytes(&self) -> std::io::Result<Bytes> {
        match &self.content {
            Content::Memory(bytes) => Ok(bytes.clone()),
            Content::Disk(path) => Ok(tokio::fs::read(path.as_ref() as &std::path::Path)
                .await?
                .into()),
        }
    }

    /// A reader of the content, from the start.
    ///
    /// # Errors
    /// When the temporary file cannot be opened.
    pub async fn reader(&self) -> std::io::Result<FileReader> {
        Ok(match &self.content {
            Content::Memory(bytes) => FileReader::Memory(std::io::Cursor::new(bytes.clone())),
            Content::Disk(path) => {
                FileReader::Disk(tokio::fs::File::open(path.as_ref() as &std::path::Path).await?)
            }
        })
    }

    /// Reads `reader` to its end, spilling to a temporary file above [`IN_MEMORY_MAX`];
    /// more than `limit` bytes is an error.
    ///
    /// # Errors
    /// [`CollectError::TooLarge`] above `limit`; I/O errors of `reader` or the temporary file.
    pub async fn collect(
        mut reader: impl AsyncRead + Unpin,
        limit: u64,
    ) -> Result<Self, CollectError> {
        let mut spill = Spill::new(limit);
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                return Ok(spill.finish().await?);
            }
            spill.put(&chunk[..n]).await?;
        }
    }
}

/// Reads a [`FileData`].
#[derive(Debug)]
pub enum FileReader {
    /// From memory.
    Memory(std::io::Cursor<Bytes>),
    /// From its temporary file.
    Disk(tokio::fs::File),
}

impl AsyncRead for FileReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FileReader::Memory(cursor) => Pin::new(cursor).poll_read(cx, buf),
            FileReader::Disk(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

/// Collects a file chunk by chunk: in memory until it passes [`IN_MEMORY_MAX`], then in a
/// temporary file.
pub(crate) struct Spill {
    memory: BytesMut,
    disk: Option<(tokio::fs::File, tempfile::TempPath)>,
    len: u64,
    limit: u64,
    hasher: sha2::Sha256,
}

impl Spill {
    /// An empty collection that refuses more than `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            memory: BytesMut::new(),
            disk: None,
            len: 0,
            limit,
            hasher: sha2::Sha256::new(),
        }
    }

    /// Adds `chunk`.
    pub(crate) async fn put(&mut self, chunk: &[u8]) -> Result<(), CollectError> {
        self.len += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        if self.len > self.limit {
            return Err(CollectError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        if self.disk.is_none() && self.memory.len() + chunk.len() <= IN_MEMORY_MAX {
            self.memory.extend_from_slice(chunk);
            return Ok(());
        }
        if self.disk.is_none() {
            let path = tempfile::Builder::new()
                .prefix("switchboard-file-")
                .tempfile()?
                .into_temp_path();
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path as &std::path::Path)
                .await?;
            file.write_all(&self.memory).await?;
            self.memory = BytesMut::new();
            self.disk = Some((file, path));
        }
        if let Some((file, _)) = &mut self.disk {
            file.write_all(chunk).await?;
        }
        Ok(())
    }

    /// The file collected.
    pub(crate) async fn finish(self) -> std::io::Result<FileData> {
        let sha256 = self.hasher.finalize().into();
        let content = match self.disk {
            None => Content::Memory(self.memory.freeze()),
            Some((mut file, path)) => {
                file.flush().await?;
                file.sync_data().await?;
                Content::Disk(Arc::new(path))
            }
        };
        Ok(FileData {
            content,
            len: self.len,
            sha256,
        })
    }

    /// What was collected so far, if it is still in memory (a small error answer).
    pub(crate) fn in_memory(&self) -> Option<&[u8]> {
        self.disk.is_none().then_some(&self.memory[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_files_stay_in_memory_large_ones_go_to_disk_and_read_back_whole() {
        let small = FileData::collect(&b"meow"[..], 10)
            .await
            .expect("collected");
        assert!(matches!(small.content, Content::Memory(_)));
        assert_eq!(small.bytes().await.expect("bytes"), &b"meow"[..]);

        let big: Vec<u8> = (0..=250u8).cycle().take(3 * IN_MEMORY_MAX).collect();
        let file = FileData::collect(&big[..], 10 * IN_MEMORY_MAX as u64)
            .await
            .expect("collected");
        let Content::Disk(path) = &file.content else {
            panic!("spilled to disk");
        };
        let path = path.to_path_buf();
        assert_eq!(file.len(), big.len() as u64);
        assert_eq!(file.bytes().await.expect("bytes"), big);
        let mut read = Vec::new();
        file.reader()
            .await
            .expect("reader")
            .read_to_end(&mut read)
            .await
            .expect("read");
        assert_eq!(read, big);
        assert_eq!(file.sha256_hex(), FileData::from(big).sha256_hex());
        drop(file);
        assert!(
            !path.exists(),
            "the temporary file is removed with the last copy"
        );
    }

    #[tokio::test]
    async fn more_than_the_limit_is_refused() {
        let outcome = FileData::collect(&[0u8; 100][..], 99).await;
        assert!(matches!(outcome, Err(CollectError::TooLarge { limit: 99 })));
    }
}
