//! CIFAR-10 input, binary version: files of 3,073-byte records (a label byte 0–9, then the red,
//! green and blue 32×32 planes), as a folder `cifar-10-batches-bin/`, as the official
//! `cifar-10-binary.tar.gz` (read streaming, never extracted), or as any record file.
//! Truncated or corrupt input is an error naming the file and the byte offset.

use discnn_engine::objects::Location;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Images as one contiguous buffer: `pixels[i * IMAGE_BYTES..]` is image i, channel-major (CHW).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Images {
    #[serde(with = "serde_bytes")]
    pub labels: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub pixels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// The first `n` images (all if fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * IMAGE_BYTES);
    }

    fn extend(&mut self, other: Images) {
        self.labels.extend(other.labels);
        self.pixels.extend(other.pixels);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    #[error("{file}: {size} bytes is not a whole number of {RECORD_BYTES}-byte records; the record at offset {offset} is truncated")]
    Truncated {
        file: String,
        size: u64,
        offset: u64,
    },
    #[error("{file}: label {label} at offset {offset} is not a CIFAR-10 class (0-9)")]
    BadLabel {
        file: String,
        offset: u64,
        label: u8,
    },
    #[error("{path}: no {name} (a CIFAR-10 folder holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin)")]
    MissingBatch { path: String, name: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a readable CIFAR-10 archive: {message}")]
    Archive { file: String, message: String },
    #[error("{file}: {size} bytes is more than a batch file may hold ({MAX_BATCH_BYTES} bytes; the official ones hold 30,730,000)")]
    TooLarge { file: String, size: u64 },
    #[error("{file}: the batch file holds no records")]
    Empty { file: String },
}

/// The largest batch file read, checked before anything is allocated for it: an official batch
/// holds 10,000 records (30,730,000 bytes), so this leaves room for larger home-made ones while
/// a header or file that claims more cannot make a process allocate it.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;

/// Which half of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// data_batch_1 .. data_batch_5 (50,000 images).
    Train,
    /// test_batch (10,000 images).
    Test,
}

impl Split {
    fn batch_names(self) -> Vec<String> {
        match self {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".to_string()],
        }
    }
}

/// Parses records from `bytes`, which start at byte `base` of `file` (for error messages).
pub fn parse_records(file: &str, bytes: &[u8], base: u64) -> Result<Images, CifarError> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(CifarError::Truncated {
            file: file.to_string(),
            size: base + bytes.len() as u64,
            offset: base + (bytes.len() - bytes.len() % RECORD_BYTES) as u64,
        });
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut out = Images {
        labels: Vec::with_capacity(n),
        pixels: Vec::with_capacity(n * IMAGE_BYTES),
    };
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[0] > 9 {
            return Err(CifarError::BadLabel {
                file: file.to_string(),
                offset: base + (i * RECORD_BYTES) as u64,
                label: rec[0],
            });
        }
        out.labels.push(rec[0]);
        out.pixels.extend_from_slice(&rec[1..]);
    }
    Ok(out)
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> CifarError + '_ {
    move |source| CifarError::Io {
        file: file.display().to_string(),
        source,
    }
}

/// Refuses a batch of `size` bytes that is empty or over [`MAX_BATCH_BYTES`].
fn check_size(file: &str, size: u64) -> Result<(), CifarError> {
    let file = file.to_string();
    match size {
        0 => Err(CifarError::Empty { file }),
        s if s > MAX_BATCH_BYTES => Err(CifarError::TooLarge { file, size }),
        _ => Ok(()),
    }
}

/// Reads one file of records.
pub fn read_record_file(path: &Path) -> Result<Images, CifarError> {
    read_records_at(&located(path)?)
}

fn read_records_at(file: &Location) -> Result<Images, CifarError> {
    let shown = file.display();
    let err = |source| CifarError::Io {
        file: shown.clone(),
        source,
    };
    check_size(&shown, file.size().map_err(err)?)?;
    // Bounded even if the file grows after the check.
    let mut bytes = Vec::new();
    file.open()
        .map_err(err)?
        .take(MAX_BATCH_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    check_size(&shown, bytes.len() as u64)?;
    parse_records(&shown, &bytes, 0)
}

/// `path` as a local path or an `s3://` object.
fn located(path: &Path) -> Result<Location, CifarError> {
    Location::new(path).map_err(io(path))
}

/// Loads a split from a `cifar-10-batches-bin/` folder, the official `.tar.gz`, or, for any
/// other file, the file itself as records (whatever the split). Each may be local or on S3.
pub fn load(path: &Path, split: Split) -> Result<Images, CifarError> {
    let at = located(path)?;
    if at.is_dir().map_err(io(path))? {
        let mut all = Images::default();
        for file in batch_files(&at, split)? {
            all.extend(read_records_at(&file)?);
        }
        return Ok(all);
    }
    let name = at.file_name();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return load_archive(&at, split);
    }
    read_records_at(&at)
}

/// A folder's batch files of `split`, in order; a missing one is an error.
fn batch_files(dir: &Location, split: Split) -> Result<Vec<Location>, CifarError> {
    split
        .batch_names()
        .into_iter()
        .map(|name| {
            let file = dir.join(&name);
            if file.is_file() {
                Ok(file)
            } else {
                Err(CifarError::MissingBatch {
                    path: dir.display(),
                    name,
                })
            }
        })
        .collect()
}

/// The number of images of a split. A local folder is checked record by record, as `load`
/// checks it, one batch file at a time (a driver validating the input never holds the whole
/// split); a folder on S3 by its objects' sizes only, so the driver downloads nothing (the
/// executors check the records they read).
pub fn count(path: &Path, split: Split) -> Result<usize, CifarError> {
    let at = located(path)?;
    if at.is_dir().map_err(io(path))? {
        let mut n = 0;
        for file in batch_files(&at, split)? {
            n += match &file {
                Location::Local(_) => read_records_at(&file)?.len(),
                Location::Object(_) => {
                    let shown = file.display();
                    let size = file.size().map_err(|source| CifarError::Io {
                        file: shown.clone(),
                        source,
                    })?;
                    check_size(&shown, size)?;
                    (size / RECORD_BYTES as u64) as usize
                }
            };
        }
        return Ok(n);
    }
    Ok(load(path, split)?.len())
}

/// Images `range` of a split, in the split's order. From a folder (local or on S3) only the
/// records needed are read — each executor reads its own shard; an archive or a single file is
/// read whole and sliced.
pub fn load_range(
    path: &Path,
    split: Split,
    range: std::ops::Range<usize>,
) -> Result<Images, CifarError> {
    let at = located(path)?;
    if !at.is_dir().map_err(io(path))? {
        let all = load(path, split)?;
        let end = range.end.min(all.len());
        let start = range.start.min(end);
        return Ok(Images {
            labels: all.labels[start..end].to_vec(),
            pixels: all.pixels[start * IMAGE_BYTES..end * IMAGE_BYTES].to_vec(),
        });
    }
    let mut out = Images::default();
    let mut first = 0usize;
    for file in batch_files(&at, split)? {
        if first >= range.end {
            break;
        }
        let shown = file.display();
        let err = |source| CifarError::Io {
            file: shown.clone(),
            source,
        };
        let size = file.size().map_err(err)?;
        check_size(&shown, size)?;
        let count = (size / RECORD_BYTES as u64) as usize;
        let (a, b) = (range.start.max(first), range.end.min(first + count));
        if a < b {
            let base = ((a - first) * RECORD_BYTES) as u64;
            let bytes = file
                .read_range(base, ((b - a) * RECORD_BYTES) as u64)
                .map_err(err)?;
            out.extend(parse_records(&shown, &bytes, base)?);
        }
        first += count;
    }
    Ok(out)
}

/// Streams the archive once, keeping the split's batches in the archive's order of names.
fn load_archive(at: &Location, split: Split) -> Result<Images, CifarError> {
    let shown = at.display();
    let file = at.open().map_err(|source| CifarError::Io {
        file: shown.clone(),
        source,
    })?;
    let archive_err = |message: String| CifarError::Archive {
        file: shown.clone(),
        message,
    };
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let wanted = split.batch_names();
    let mut found: Vec<Option<Images>> = vec![None; wanted.len()];
    let entries = archive.entries().map_err(|e| archive_err(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(e.to_string()))?;
        let entry_path = entry
            .path()
            .map_err(|e| archive_err(e.to_string()))?
            .to_path_buf();
        let Some(base) = entry_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
        else {
            continue;
        };
        let Some(slot) = wanted.iter().position(|w| *w == base) else {
            continue;
        };
        let inner = format!("{shown}:{}", entry_path.display());
        // The header's size is a claim: checked before anything is reserved for it, and the
        // read bounded whatever the stream holds.
        check_size(&inner, entry.size())?;
        let mut bytes = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        (&mut entry)
            .take(MAX_BATCH_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| archive_err(format!("{}: {e}", entry_path.display())))?;
        check_size(&inner, bytes.len() as u64)?;
        found[slot] = Some(parse_records(&inner, &bytes, 0)?);
    }
    let mut all = Images::default();
    for (name, images) in wanted.into_iter().zip(found) {
        match images {
            Some(i) => all.extend(i),
            None => return Err(CifarError::MissingBatch { path: shown, name }),
        }
    }
    Ok(all)
}

/// A gzipped tar whose one entry, `cifar-10-batches-bin/NAME`, claims `claimed` bytes in its
/// header and carries `data`: for tests of what the readers make of a header that lies.
pub fn archive_claiming(name: &str, claimed: u64, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut header = tar::Header::new_gnu();
    header.set_path(format!("cifar-10-batches-bin/{name}"))?;
    header.set_mode(0o644);
    header.set_size(claimed);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(data);
    raw.resize(raw.len().next_multiple_of(512) + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    gz.finish()
}

/// Writes a small CIFAR-10-shaped folder (five training batches of `per_batch` images and a
/// test batch of `test`), random pixels and labels from `seed`: for tests and demos that must
/// not depend on the real dataset. Nothing in it can be learnt.
pub fn write_synthetic_folder(
    dir: &Path,
    per_batch: usize,
    test: usize,
    seed: u64,
) -> std::io::Result<()> {
    use rand::Rng;
    write_folder(dir, per_batch, test, seed, |rng, _label, image| {
        image.iter_mut().for_each(|p| *p = rng.gen::<u8>());
    })
}

/// Like [`write_synthetic_folder`], but each class has a pattern of its own — per channel, a
/// stripe of random orientation, frequency and phase — under per-pixel noise twice its
/// amplitude: what a network learns from shows in test accuracy, and an untrained one stays
/// near chance.
pub fn write_patterned_folder(
    dir: &Path,
    per_batch: usize,
    test: usize,
    seed: u64,
) -> std::io::Result<()> {
    use rand::{Rng, SeedableRng};
    const AMPLITUDE: f32 = 40.0;
    const NOISE: f32 = 80.0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
    let patterns: Vec<Vec<f32>> = (0..CLASSES.len())
        .map(|_| {
            let mut plane = Vec::with_capacity(IMAGE_BYTES);
            for _channel in 0..3 {
                let fx = f32::from(rng.gen_range(0..4u8));
                let fy = f32::from(rng.gen_range(1..4u8));
                let phase = rng.gen_range(0.0..std::f32::consts::TAU);
                for y in 0..32 {
                    for x in 0..32 {
                        let t = std::f32::consts::TAU * (fx * x as f32 + fy * y as f32) / 32.0;
                        plane.push(AMPLITUDE * (t + phase).sin());
                    }
                }
            }
            plane
        })
        .collect();
    write_folder(dir, per_batch, test, seed, |rng, label, image| {
        for (p, t) in image.iter_mut().zip(&patterns[usize::from(label)]) {
            *p = (128.0 + t + rng.gen_range(-NOISE..NOISE)).clamp(0.0, 255.0) as u8;
        }
    })
}

fn write_folder(
    dir: &Path,
    per_batch: usize,
    test: usize,
    seed: u64,
    mut pixels: impl FnMut(&mut rand_chacha::ChaCha8Rng, u8, &mut [u8]),
) -> std::io::Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    std::fs::create_dir_all(dir)?;
    let mut write = |name: &str, n: usize| {
        let mut bytes = vec![0u8; n * RECORD_BYTES];
        for record in bytes.chunks_exact_mut(RECORD_BYTES) {
            let label = rng.gen_range(0..10u8);
            record[0] = label;
            pixels(&mut rng, label, &mut record[1..]);
        }
        std::fs::write(dir.join(name), bytes)
    };
    for i in 1..=5 {
        write(&format!("data_batch_{i}.bin"), per_batch)?;
    }
    write("test_batch.bin", test)
}

/// Per-channel sums of pixel values scaled to [0, 1] and of their squares: what mean and
/// standard deviation are made of, and what shards of a data set add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelSums {
    pub sum: [f64; 3],
    pub sum_sq: [f64; 3],
    /// Pixels per channel.
    pub count: u64,
}

impl ChannelSums {
    pub fn of(images: &Images) -> ChannelSums {
        let mut s = ChannelSums::default();
        for i in 0..images.len() {
            for (c, plane) in images.image(i).chunks_exact(1024).enumerate() {
                for &p in plane {
                    let v = f64::from(p) / 255.0;
                    s.sum[c] += v;
                    s.sum_sq[c] += v * v;
                }
            }
        }
        s.count = images.len() as u64 * 1024;
        s
    }

    pub fn merge(mut self, o: &ChannelSums) -> ChannelSums {
        for c in 0..3 {
            self.sum[c] += o.sum[c];
            self.sum_sq[c] += o.sum_sq[c];
        }
        self.count += o.count;
        self
    }

    /// Per-channel mean and standard deviation.
    pub fn mean_std(&self) -> ([f32; 3], [f32; 3]) {
        let n = self.count.max(1) as f64;
        let mut mean = [0f32; 3];
        let mut std = [0f32; 3];
        for c in 0..3 {
            let m = self.sum[c] / n;
            mean[c] = m as f32;
            std[c] = ((self.sum_sq[c] / n - m * m).max(1e-12)).sqrt() as f32;
        }
        (mean, std)
    }
}

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1].
pub fn channel_stats(images: &Images) -> ([f32; 3], [f32; 3]) {
    ChannelSums::of(images).mean_std()
}

/// Image `i` as normalized f32 CHW values: `(p / 255 - mean[c]) / std[c]`.
pub fn normalized(images: &Images, i: usize, mean: &[f32; 3], std: &[f32; 3], out: &mut [f32]) {
    for (c, plane) in images.image(i).chunks_exact(1024).enumerate() {
        for (o, &p) in out[c * 1024..(c + 1) * 1024].iter_mut().zip(plane) {
            *o = (f32::from(p) / 255.0 - mean[c]) / std[c];
        }
    }
}

/// Per-channel normalisation as a table of the 256 values each channel's bytes map to: the
/// same arithmetic as [`normalized`], bit for bit, done once per value instead of once per
/// pixel (two divisions each).
pub struct Normalizer {
    table: [[f32; 256]; 3],
}

impl Normalizer {
    pub fn new(mean: &[f32; 3], std: &[f32; 3]) -> Normalizer {
        let mut table = [[0f32; 256]; 3];
        for (c, t) in table.iter_mut().enumerate() {
            for (p, v) in t.iter_mut().enumerate() {
                *v = (f32::from(p as u8) / 255.0 - mean[c]) / std[c];
            }
        }
        Normalizer { table }
    }

    /// One image's pixels (channel planes of 1,024 bytes) into `out`.
    pub fn apply(&self, pixels: &[u8], out: &mut [f32]) {
        for ((plane, o), t) in pixels
            .chunks_exact(1024)
            .zip(out.chunks_exact_mut(1024))
            .zip(&self.table)
        {
            for (o, &p) in o.iter_mut().zip(plane) {
                *o = t[usize::from(p)];
            }
        }
    }
}

/// The paper's preprocessing (section 4.2): one image per line, `(one-hot label, pixel data)`,
/// written as `(0,0,1,0,0,0,0,0,0,0,p0,p1,...,p3071)` with pixels in record order.
pub fn to_text_line(images: &Images, i: usize) -> String {
    let mut s = String::with_capacity(12 + 4 * IMAGE_BYTES);
    s.push('(');
    for k in 0..10u8 {
        s.push(if k == images.labels[i] { '1' } else { '0' });
        s.push(',');
    }
    for (j, p) in images.image(i).iter().enumerate() {
        if j > 0 {
            s.push(',');
        }
        s.push_str(&p.to_string());
    }
    s.push(')');
    s
}

/// Parses a line written by [`to_text_line`]; `what` names the line in errors.
pub fn from_text_line(line: &str, what: &str) -> Result<(u8, Vec<u8>), String> {
    let inner = line
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| format!("{what}: expected `(one-hot label, pixels)`"))?;
    let fields: Vec<&str> = inner.split(',').collect();
    if fields.len() != 10 + IMAGE_BYTES {
        return Err(format!(
            "{what}: {} fields, expected {}",
            fields.len(),
            10 + IMAGE_BYTES
        ));
    }
    let hot: Vec<usize> = (0..10).filter(|&k| fields[k] == "1").collect();
    if hot.len() != 1 || fields[..10].iter().any(|f| *f != "0" && *f != "1") {
        return Err(format!("{what}: the label is not one-hot"));
    }
    let pixels = fields[10..]
        .iter()
        .enumerate()
        .map(|(j, f)| {
            f.parse::<u8>()
                .map_err(|_| format!("{what}: pixel {j} is `{f}`, not 0-255"))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    Ok((hot[0] as u8, pixels))
}

/// The dataset folder of this repository's development layout, if present.
pub fn shared_dataset() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar-10-batches-bin");
    p.is_dir().then_some(p)
}
