//! File sources and the text sink. Splits follow Hadoop's TextInputFormat: a split reads every
//! line that starts inside it (or at its end) and skips the partial first line, so lines are
//! neither lost nor duplicated at split boundaries. Compressed files are read whole.

use crate::core::error::{EngineError, TaskFailure};
use crate::core::plan::FileSplit;
use crate::exec::lent::{lent, Lend, LentSource};
use crate::exec::objects::{self, ObjectReader};
use crate::exec::stream::{typed, Records};
use crate::exec::task_context::TaskContext;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SPLIT_SLOP: f64 = 1.1;

/// The input files under `path`: itself, or the visible files of a directory, sorted by name.
pub(crate) fn list_inputs(path: &Path) -> Result<Vec<(PathBuf, u64)>, EngineError> {
    if objects::is_object_url(path) {
        let listed = objects::list_inputs(&path.to_string_lossy())?;
        return Ok(listed
            .into_iter()
            .map(|(u, n)| (PathBuf::from(u), n))
            .collect());
    }
    let unreadable = |p: &Path, e| EngineError::InputUnreadable {
        path: p.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::InputNotFound(path.to_path_buf()),
        _ => unreadable(path, e),
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| unreadable(path, e))? {
            let entry = entry.map_err(|e| unreadable(path, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let m = entry
                .metadata()
                .map_err(|e| EngineError::io(entry.path(), e))?;
            if m.is_file() {
                files.push((entry.path(), m.len()));
            }
        }
        files.sort();
    } else {
        // Opening now turns an unreadable file into an input error instead of a task failure.
        File::open(path).map_err(|e| unreadable(path, e))?;
        files.push((path.to_path_buf(), meta.len()));
    }
    Ok(files)
}

fn is_gzip(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// Byte-range splits, `align` bytes apart at most (1 for text, the record length for records).
fn plan_splits(files: &[(PathBuf, u64)], min_partitions: usize, align: u64) -> Vec<FileSplit> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let goal = (total / min_partitions.max(1) as u64).max(1);
    let size = (goal.div_ceil(align) * align).max(align);
    let mut splits = Vec::new();
    for (path, len) in files {
        let path_s = path.to_string_lossy().to_string();
        if is_gzip(path) {
            splits.push(FileSplit {
                path: path_s,
                start: 0,
                len: *len,
                gzip: true,
            });
            continue;
        }
        let mut start = 0;
        let mut rest = *len;
        while rest as f64 / size as f64 > SPLIT_SLOP {
            splits.push(FileSplit {
                path: path_s.clone(),
                start,
                len: size,
                gzip: false,
            });
            start += size;
            rest -= size;
        }
        if rest > 0 || *len == 0 {
            splits.push(FileSplit {
                path: path_s.clone(),
                start,
                len: rest,
                gzip: false,
            });
        }
    }
    splits
}

pub(crate) fn text_splits(
    path: &Path,
    min_partitions: usize,
) -> Result<Vec<FileSplit>, EngineError> {
    Ok(plan_splits(&list_inputs(path)?, min_partitions, 1))
}

pub(crate) fn binary_splits(
    path: &Path,
    record_len: usize,
    min_partitions: usize,
) -> Result<Vec<FileSplit>, EngineError> {
    if record_len == 0 {
        return Err(EngineError::InvalidArgument(
            "record length must be positive".into(),
        ));
    }
    let files = list_inputs(path)?;
    for (p, len) in &files {
        if is_gzip(p) {
            return Err(EngineError::BadInput(format!(
                "{}: compressed files are not supported for fixed-length records",
                p.display()
            )));
        }
        if len % record_len as u64 != 0 {
            return Err(EngineError::BadInput(format!(
                "{}: size {len} is not a multiple of the record length {record_len}; \
                 the last record, at offset {}, is truncated",
                p.display(),
                len - len % record_len as u64
            )));
        }
    }
    Ok(plan_splits(&files, min_partitions, record_len as u64))
}

/// A split's lines, lent from the read buffer: a line is copied only by a consumer that keeps it.
struct LineSource {
    reader: Box<dyn BufRead + Send>,
    pos: u64,
    end: u64,
    path: String,
    tc: Arc<TaskContext>,
    buf: Vec<u8>,
    /// A decoding error of a gzip stream is bad input, not a failure to retry.
    gzip: bool,
}

impl LentSource<String> for LineSource {
    fn step(&mut self, f: &mut Lend<'_, String>) -> bool {
        if self.pos > self.end {
            return false;
        }
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pos += n as u64;
                let mut line = &self.buf[..];
                if line.ends_with(b"\n") {
                    line = &line[..line.len() - 1];
                    if line.ends_with(b"\r") {
                        line = &line[..line.len() - 1];
                    }
                }
                // Like Spark's textFile: invalid UTF-8 becomes U+FFFD rather than an error.
                f(&String::from_utf8_lossy(line));
                true
            }
            Err(e) => {
                use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
                let at = format!("{} at offset {}", self.path, self.pos);
                self.tc.fail(
                    if self.gzip && matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof) {
                        TaskFailure::BadInput {
                            message: format!("{at} (uncompressed): not a valid gzip stream: {e}"),
                        }
                    } else {
                        TaskFailure::io(at, e)
                    },
                );
                false
            }
        }
    }
}

/// A split's file or object, to read from its start.
trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

fn open(path: &str) -> Result<Box<dyn Source>, TaskFailure> {
    if path.starts_with("s3://") {
        return Ok(Box::new(ObjectReader::open(path)?));
    }
    Ok(Box::new(
        File::open(path).map_err(|e| TaskFailure::io(path, e))?,
    ))
}

pub(crate) fn read_text(split: &FileSplit, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
    let file = open(&split.path)?;
    if split.gzip {
        let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
        return Ok(lent(LineSource {
            reader: Box::new(reader),
            pos: 0,
            end: u64::MAX,
            path: split.path.clone(),
            tc: tc.clone(),
            buf: Vec::new(),
            gzip: true,
        }));
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut pos = split.start;
    if split.start > 0 {
        // The line that crosses (or starts at) our start belongs to the previous split.
        reader
            .seek(SeekFrom::Start(split.start))
            .map_err(|e| TaskFailure::io(&split.path, e))?;
        let mut skipped = Vec::new();
        pos += reader
            .read_until(b'\n', &mut skipped)
            .map_err(|e| TaskFailure::io(&split.path, e))? as u64;
    }
    let end = split.start + split.len;
    // An empty split (an empty file) has no lines; a split whose first line started before it
    // and ran past its end has none of its own either.
    if split.len == 0 || (split.start > 0 && pos > end) {
        return Ok(typed(std::iter::empty::<String>()));
    }
    Ok(lent(LineSource {
        reader: Box::new(reader),
        pos,
        end,
        path: split.path.clone(),
        tc: tc.clone(),
        buf: Vec::new(),
        gzip: false,
    }))
}

pub(crate) fn read_records(
    split: &FileSplit,
    record_len: usize,
    tc: &Arc<TaskContext>,
) -> Result<Records, TaskFailure> {
    let mut file = open(&split.path)?;
    file.seek(SeekFrom::Start(split.start))
        .map_err(|e| TaskFailure::io(&split.path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file.take(split.len));
    let path = split.path.clone();
    let start = split.start;
    let tc = tc.clone();
    let mut offset = 0u64;
    let count = split.len / record_len as u64;
    Ok(typed((0..count).map_while(move |_| {
        let mut rec = vec![0u8; record_len];
        match reader.read_exact(&mut rec) {
            Ok(()) => {
                offset += record_len as u64;
                Some(rec)
            }
            Err(e) => {
                tc.fail(TaskFailure::BadInput {
                    message: format!(
                        "{path}: cannot read the record at offset {}: {e}",
                        start + offset
                    ),
                });
                None
            }
        }
    })))
}

/// Writes one partition as `part-NNNNN` in `dir`: first to a per-attempt file, then renamed,
/// so a failed or duplicate attempt never leaves a half-written part.
pub(crate) fn write_text_part(
    dir: &str,
    partition: usize,
    attempt: u32,
    lines: impl Iterator<Item = String>,
    tc: &TaskContext,
) -> Result<u64, TaskFailure> {
    if dir.starts_with("s3://") {
        // A PUT is all or nothing: a failed attempt leaves no part, a duplicate rewrites it.
        let mut body = Vec::new();
        let mut n = 0u64;
        for line in lines {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
            n += 1;
        }
        tc.check()?;
        let url = format!("{}/part-{partition:05}", dir.trim_end_matches('/'));
        objects::ObjectUrl::parse(&url)
            .map_err(|e| TaskFailure::io(&url, std::io::Error::other(e.to_string())))?
            .put(body)?;
        return Ok(n);
    }
    let dir = Path::new(dir);
    let tmp = dir.join(format!(".part-{partition:05}.attempt-{attempt}"));
    let fin = dir.join(format!("part-{partition:05}"));
    let file = File::create(&tmp).map_err(|e| TaskFailure::io(tmp.display(), e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut n = 0u64;
    for line in lines {
        w.write_all(line.as_bytes())
            .map_err(|e| TaskFailure::io(tmp.display(), e))?;
        w.write_all(b"\n")
            .map_err(|e| TaskFailure::io(tmp.display(), e))?;
        n += 1;
    }
    w.flush().map_err(|e| TaskFailure::io(tmp.display(), e))?;
    drop(w);
    if let Err(f) = tc.check() {
        let _ = std::fs::remove_file(&tmp);
        return Err(f);
    }
    std::fs::rename(&tmp, &fin).map_err(|e| TaskFailure::io(fin.display(), e))?;
    Ok(n)
}
