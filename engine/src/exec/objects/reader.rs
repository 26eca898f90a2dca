//! An object read as a file: `Read + Seek` over one streaming GET from the position to the
//! object's end (Hadoop S3A's sequential policy), restarted only by a seek. So the text and
//! record readers work on objects unchanged, a split's reader issues one request, and it stops
//! reading (dropping the stream) once its last line is done.

use super::{block_on, ObjectUrl};
use crate::core::error::TaskFailure;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use object_store::{GetOptions, ObjectStore};
use std::io::{Read, Seek, SeekFrom};

pub(crate) struct ObjectReader {
    object: ObjectUrl,
    size: u64,
    pos: u64,
    /// The open GET's body from `pos` on, and what is left of its last chunk.
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
}

impl ObjectReader {
    /// Opens `url` (one HEAD for its size).
    pub fn open(url: &str) -> Result<ObjectReader, TaskFailure> {
        let io =
            |e: &dyn std::fmt::Display| TaskFailure::io(url, std::io::Error::other(e.to_string()));
        let object = ObjectUrl::parse(url).map_err(|e| io(&e))?;
        let size = object.size().map_err(|e| io(&e))?.ok_or_else(|| {
            TaskFailure::io(url, std::io::Error::from(std::io::ErrorKind::NotFound))
        })?;
        Ok(ObjectReader {
            object,
            size,
            pos: 0,
            stream: None,
            chunk: Bytes::new(),
        })
    }

    fn start_stream(&mut self) -> std::io::Result<()> {
        let options = GetOptions::new().with_range(Some(self.pos..self.size));
        let got = block_on(self.object.store.get_opts(&self.object.key, options))
            .map_err(std::io::Error::other)?;
        self.stream = Some(got.into_stream());
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            if self.stream.is_none() {
                self.start_stream()?;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(0);
            };
            match block_on(stream.try_next()).map_err(std::io::Error::other)? {
                Some(bytes) => self.chunk = bytes,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: ended at byte {} of {}",
                            self.object.url, self.pos, self.size
                        ),
                    ))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
        }
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        if pos != self.pos {
            // A new request from there, when the next read comes.
            self.stream = None;
            self.chunk = Bytes::new();
            self.pos = pos;
        }
        Ok(self.pos)
    }
}
