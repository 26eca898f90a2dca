//! An object read as a file: `Read + Seek` over ranged GETs of 4 MiB blocks, so the text and
//! record readers work on objects unchanged and a split fetches only its own bytes (plus the
//! rest of its last line).

use super::ObjectUrl;
use crate::core::error::TaskFailure;
use bytes::Bytes;
use std::io::{Read, Seek, SeekFrom};

const BLOCK: u64 = 4 << 20;

pub(crate) struct ObjectReader {
    object: ObjectUrl,
    size: u64,
    pos: u64,
    /// The block held, and where it starts.
    block: Bytes,
    block_start: u64,
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
            block: Bytes::new(),
            block_start: 0,
        })
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let held = self.block_start..self.block_start + self.block.len() as u64;
        if !held.contains(&self.pos) {
            let end = (self.pos + BLOCK).min(self.size);
            self.block = self
                .object
                .get_range(self.pos, end)
                .map_err(|f| std::io::Error::other(f.to_string()))?;
            self.block_start = self.pos;
            if self.block.is_empty() {
                return Ok(0);
            }
        }
        let at = (self.pos - self.block_start) as usize;
        let n = buf.len().min(self.block.len() - at);
        buf[..n].copy_from_slice(&self.block[at..at + n]);
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
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
